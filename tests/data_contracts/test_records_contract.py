"""The Great Expectations contract on records/: real batches pass, broken ones fail loudly and
the store is left untouched."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from data_contracts.suites import ContractError, require_valid, validate
from tasks import store as st
from tasks.ingest.archive import open_archive
from tasks.ingest.records import IngestConfig, Ingestor, Task, process_shard
from tasks.ingest.run import ingest_archive
from tasks.settings import Settings
from tests.helpers import write_record


def test_real_batch_passes_and_broken_values_fail(tmp_path: Path) -> None:
    archive = tmp_path / "site_a"
    for i in range(3):
        write_record(archive, f"r{i}", comments=["Age: 64", "Sex: Female", "Dx: 164865005"], seed=i)
    ingest_archive(archive, tmp_path / "store", Settings(workers=1))
    frame = st.read_table(tmp_path / "store", "records").to_pandas()
    summary = validate("records", frame)
    assert summary.success and summary.evaluated > 20
    bad = frame.copy()
    bad.loc[0, "mi_label"] = 2
    bad.loc[1, "age"] = 500
    bad.loc[2, "record_id"] = bad.loc[0, "record_id"]
    with pytest.raises(ContractError) as err:
        require_valid("records", bad)
    for name in ("mi_label", "age", "record_id"):
        assert name in str(err.value)


def test_failing_batch_writes_nothing(tmp_path: Path) -> None:
    archive, store = tmp_path / "site_a", tmp_path / "store"
    write_record(archive, "r0", comments=["Age: 64"])
    unit = next(iter(open_archive(archive).units(lambda _: {})))
    cfg = IngestConfig(store, b"k", 8.0, 600.0)
    result = process_shard([Task(unit, "site_a", None)], cfg, st.staging_dir(store), "s0")
    rec_path = result.staged["site_a"][0]
    table = st.read_table_file(rec_path)
    broken = table.set_column(table.schema.get_field_index("age"), "age", pa.array([500.0], pa.float32()))
    st.write_parquet(broken, rec_path)
    ingestor = Ingestor(store)
    ingestor.add(result)
    with pytest.raises(ContractError, match="age"):
        ingestor.commit()
    assert st.dataset(store, "records") is None and st.dataset(store, "waveforms") is None
    assert not any(p.suffix == ".parquet" for p in st.staging_dir(store).iterdir())
    assert pc.max(table["age"]).as_py() == 64
