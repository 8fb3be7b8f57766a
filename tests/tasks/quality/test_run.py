"""A quality shard of real records (LUDB and the CinC sample, ingested): should the gate raise on one
window, that window alone is quarantined (stage `quality`, reason `quality_error`) and the others
get the rows they get without it. No known input makes the gate raise, so the failure is injected
through the gate the shard is given (`check_shard`'s `judge`), not by patching a library."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tasks import store as st
from tasks.quality.gate import QcProfile, QualityResult, assess, load_profile
from tasks.quality.run import Shard, ShardResult, check_shard
from tests.helpers import copy_store


@dataclass
class FailsOn:
    """The gate, raising whenever the batch it is given holds one given window."""

    bad: np.ndarray

    def __call__(self, signals: np.ndarray, profile: QcProfile) -> QualityResult:
        if any(np.array_equal(w, self.bad, equal_nan=True) for w in signals):
            raise ValueError("boom")
        return assess(signals, profile)


def test_a_window_the_gate_fails_on_is_quarantined_and_the_shard_goes_on(
    real_store: Path, tmp_path: Path
) -> None:
    store = copy_store(real_store, tmp_path / "store")
    part = sorted((store / "waveforms").rglob("*.parquet"))[0]
    table = pq.read_table(part, columns=["record_id", "signal"])
    ids = table.column("record_id").to_pylist()
    bad = st.signals_of(table.column("signal").slice(1, 1))[0]
    shard = Shard(part, st.site_of_part(part), None, len(ids))
    profile = load_profile()

    got = check_shard(shard, profile, store, batch_records=8, judge=FailsOn(bad))
    (row,) = got.problems
    where = str(part.relative_to(store))
    assert (row["source_path"], row["stage"], row["reason"], row["detail"]) == (
        f"{where}#{ids[1]}", "quality", "quality_error", "ValueError: boom"
    )  # fmt: skip
    assert len(ids) > 8 and got.rows == len(ids) - 1
    expected = check_shard(shard, profile, store, batch_records=8)
    assert not expected.problems and expected.rows == len(ids)
    rows = _rows(expected)
    del rows[ids[1]]
    assert _rows(got) == rows


def _rows(result: ShardResult) -> dict[str, dict]:
    """The quality rows a shard result staged, by record, without their time of checking."""
    rows = pa.concat_tables([pq.read_table(staged) for staged, _ in result.moves]).to_pylist()
    return {r["record_id"]: {k: v for k, v in r.items() if k != "checked_at"} for r in rows}
