"""PTB-XL layout, zip and tar archives, re-ingest and changed files, through the Prefect flow."""

from __future__ import annotations

import shutil
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pytest
import wfdb

from flows.ingest import ingest
from tasks import store as st
from tasks.settings import Settings
from tests.helpers import ecg_like, write_record

ONE_WORKER = Settings(workers=1)


def build_ptbxl(root: Path) -> Path:
    """A small archive in the published PTB-XL layout: 6 ECGs of 4 patients at 100 and 500 Hz
    (ECG 6 only at 100 Hz), with ptbxl_database.csv and scp_statements.csv."""
    rows = []
    dated = {1: "1984-11-09 09:17:34", 3: "1990-02-28", 4: "not a date"}
    codes = [
        "{'IMI': 100.0, 'SR': 0.0}", "{'NORM': 100.0, 'SR': 0.0}", "{'ASMI': 50.0}",
        "{'SR': 0.0}", "{'LVH': 100.0}", "{'AMI': 100.0}",
    ]  # fmt: skip
    for i, code in enumerate(codes, start=1):
        lr, hr = f"records100/00000/{i:05d}_lr", f"records500/00000/{i:05d}_hr"
        for rel, fs in ((lr, 100), (hr, 500)):
            if fs == 500 and i == 6:
                continue
            write_record((root / rel).parent, Path(rel).name, fs=fs, seed=i)
        rows.append(
            {
                "ecg_id": i,
                "patient_id": 100.0 + (i + 1) // 2,
                "age": [56, 300, 40, 61, 70, 33][i - 1],
                "sex": i % 2,
                "site": float(i % 2),
                "device": "CS-12" if i < 4 else "AT-6",
                "scp_codes": code,
                "strat_fold": i + 4,
                "recording_date": dated.get(i),
                "filename_lr": lr,
                "filename_hr": hr,
            }
        )
    pd.DataFrame(rows).to_csv(root / "ptbxl_database.csv", index=False)
    statements = {
        "description": ["inferior MI", "normal", "anteroseptal MI", "sinus rhythm", "LVH", "anterior MI"],
        "diagnostic": [1.0, 1.0, 1.0, None, 1.0, 1.0],
        "diagnostic_class": ["MI", "NORM", "MI", None, "HYP", "MI"],
    }
    index = ["IMI", "NORM", "ASMI", "SR", "LVH", "AMI"]
    pd.DataFrame(statements, index=index).to_csv(root / "scp_statements.csv")
    return root


def _comparable(store: Path) -> pd.DataFrame:
    rec = st.read_table(store, "records").to_pandas().drop(columns=["ingested_at"])
    return rec.sort_values("record_id").reset_index(drop=True)


@pytest.fixture(scope="module")
def ptbxl_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_ptbxl(tmp_path_factory.mktemp("ptbxl") / "ptb-xl")


def test_ptbxl_layout(ptbxl_dir: Path, tmp_path: Path, prefect_harness: None) -> None:
    store = tmp_path / "store"
    ingest(ptbxl_dir, store, settings=ONE_WORKER)
    rec = _comparable(store).set_index("source_path")
    assert len(rec) == 6
    hr = rec.loc["records500/00000/00001_hr.hea"]
    assert (hr.mi_label, hr.mi_territory, hr.strat_fold, hr.device, hr.site) == (
        1,
        "inferior",
        5,
        "CS-12",
        "1",
    )
    recorded = rec["recorded_at"].sort_index().tolist()[-5:]  # 00001_hr ... 00005_hr
    assert recorded == ["1984-11-09T09:17:34", None, "1990-02-28", None, None]
    assert rec.loc["records500/00000/00002_hr.hea"].age == 90  # PTB-XL's 300 means "older than 89"
    # rhythm only: no diagnostic statement, so unknown rather than negative
    assert pd.isna(rec.loc["records500/00000/00004_hr.hea"].mi_label)
    assert rec.loc["records500/00000/00005_hr.hea"].mi_label == 0
    lr = rec.loc["records100/00000/00006_lr.hea"]  # only the 100 Hz file exists: resampled to 500
    assert (lr.source_fs, lr.fs, lr.mi_label) == (100, 500, 1)
    assert rec["sex"].tolist().count("F") == 3
    # ECGs 1 and 2 are one patient (seen at two sites), 3 and 4 another: patient_key groups them
    keys = rec.sort_values("strat_fold")["patient_key"].tolist()
    assert keys[0] == keys[1] != keys[2] == keys[3] and "101" not in keys[0]


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_archive_file_gives_the_same_store(
    ptbxl_dir: Path, tmp_path: Path, kind: str, prefect_harness: None
) -> None:
    packed = tmp_path / f"ptb-xl.{kind}"
    if kind == "zip":
        with zipfile.ZipFile(packed, "w") as zf:
            for p in sorted(ptbxl_dir.rglob("*")):
                zf.write(p, p.relative_to(ptbxl_dir.parent).as_posix())
    else:
        with tarfile.open(packed, "w:gz") as tf:
            tf.add(ptbxl_dir, arcname=ptbxl_dir.name)
    # the same pseudonym key and site rule: only the container differs
    a, b = tmp_path / "from_dir", tmp_path / "from_file"
    ingest(ptbxl_dir.parent, a, settings=ONE_WORKER)
    ingest(packed, b, settings=ONE_WORKER)
    pd.testing.assert_frame_equal(_comparable(a), _comparable(b))
    wa = st.read_table(a, "waveforms").sort_by("record_id")
    wb = st.read_table(b, "waveforms").sort_by("record_id")
    assert wa.select(["record_id", "signal"]).equals(wb.select(["record_id", "signal"]))


def test_changed_file_replaces_its_old_version(tmp_path: Path, prefect_harness: None) -> None:
    archive, store = tmp_path / "site_x", tmp_path / "store"
    write_record(archive, "r1", seed=1)
    write_record(archive, "r2", seed=2, seconds=20)
    ingest(archive, store, settings=ONE_WORKER)
    first = _comparable(store)
    assert len(first) == 3
    write_record(archive, "r2", seed=3, seconds=10)  # r2 re-exported: new content, one window
    totals = ingest(archive, store, settings=ONE_WORKER)
    assert (totals.replaced, totals.unchanged) == (1, 1)
    after = _comparable(store)
    assert len(after) == 2 and after["record_id"].is_unique
    r2 = after[after.source_path == "r2.hea"]
    assert r2.content_sha256.item() != first[first.source_path == "r2.hea"].content_sha256.iloc[0]
    waves = st.read_table(store, "waveforms")
    assert sorted(waves["record_id"].to_pylist()) == sorted(after["record_id"])
    mine = waves.filter(pc.equal(waves["record_id"], r2.record_id.item()))
    stored = np.asarray(mine["signal"].to_pylist()[0])
    src = wfdb.rdrecord(str(archive / "r2")).p_signal.T
    np.testing.assert_allclose(stored, src, atol=1e-5)
    assert np.abs(stored - ecg_like(500, 10, 2).T).max() > 0.01  # not the old r2


def test_archive_is_never_modified(ptbxl_dir: Path, tmp_path: Path, prefect_harness: None) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(ptbxl_dir, copy)
    before = {p: p.read_bytes() for p in copy.rglob("*") if p.is_file()}
    ingest(copy, tmp_path / "store", settings=ONE_WORKER)
    after = {p: p.read_bytes() for p in copy.rglob("*") if p.is_file()}
    assert before == after
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy", "store"]
