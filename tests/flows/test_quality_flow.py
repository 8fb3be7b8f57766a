"""`msaic qc` / the Prefect flow `quality` end to end on real stores (copies of the session's
synthetic and real stores): flags against the synthetic truth, the real quality failures of the
CinC sample, clean LUDB, incremental re-runs, a new profile version, a broken part file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from data_contracts import load_json
from data_contracts.leads import CANONICAL_LEADS
from data_contracts.schemas import FLAG_COLUMNS
from data_contracts.suites import validate
from flows.cli import main
from flows.quality import quality
from tasks import store as st
from tasks.quality.profile_file import PROFILE_FILE, profile_bytes
from tasks.settings import Settings
from tests.helpers import copy_store

FLAT_CHEST = {"JS45542": ["V1", "V2", "V3", "V4", "V5", "V6"], "JS45544": ["V2", "V3", "V4", "V5", "V6"]}
FLAT_CHEST["JS45551"] = ["V4", "V5", "V6"]


def _quality(store: Path) -> pd.DataFrame:
    q = st.read_table(store, "quality").to_pandas()
    rec = st.read_table(store, "records", ["record_id", "source_path", "window"]).to_pandas()
    return q.merge(rec, on="record_id", how="left", validate="one_to_one")


def _flags(frame: pd.DataFrame) -> np.ndarray:
    """(n, 12) array of flag sets."""
    return np.array([[set(c.split(",")) - {""} for c in row] for row in frame[FLAG_COLUMNS].to_numpy()])


def test_flow_on_the_synthetic_store_against_its_truth(
    synth_store: Path, synth_archive: Path, tmp_path: Path, prefect_harness: None
) -> None:
    store = copy_store(synth_store, tmp_path / "store")
    n = st.read_table(store, "records", ["record_id"]).num_rows
    totals = quality(store, Settings(workers=2, qc_windows_per_worker=64))  # a pool of 2 processes
    assert totals.checked == n and totals.up_to_date == 0 and not totals.quarantined
    frame = _quality(store)
    assert len(frame) == n and frame["record_id"].is_unique and frame["source_path"].notna().all()
    assert validate("quality", st.read_table(store, "quality").to_pandas()).success

    frame["ecg_id"] = frame["source_path"].str.extract(r"/(\d+)_hr\.hea$")[0].astype(int)
    flags = _flags(frame)
    row = {e: i for i, e in enumerate(frame["ecg_id"])}
    arts = pd.read_parquet(synth_archive / "truth_artifacts.parquet")
    lead = {x.upper(): j for j, x in enumerate(CANONICAL_LEADS)}
    touched = np.zeros(flags.shape, dtype=bool)
    hits = []
    for a in arts.itertuples():
        i, j = row[a.ecg_id], lead[a.lead]
        touched[i, j] = True
        if a.artifact in ("flat", "missing", "saturation"):  # unusable at every injected strength
            hits.append(a.artifact in flags[i, j])
    assert len(hits) >= 3 and all(hits)
    false_flags = np.mean([bool(f) for f in flags[~touched]])
    assert false_flags <= 0.02

    again = quality(store, Settings(workers=1))
    assert again.checked == 0 and again.up_to_date == n
    assert st.read_table(store, "quality").num_rows == n


def test_new_profile_version_rechecks_without_duplicates(
    synth_store: Path, tmp_path: Path, prefect_harness: None
) -> None:
    store = copy_store(synth_store, tmp_path / "store")
    quality(store, Settings(workers=1))
    shipped = load_json("qc_profile.json")
    new = f"qc/{int(shipped['version'].split('/')[1]) + 1}"  # the next version, whatever ships now
    raw = dict(shipped, version=new)
    raw["thresholds"] = dict(raw["thresholds"], baseline_mv=0.0001)  # every lead wanders a little
    path = tmp_path / "qc2.json"
    path.write_text(json.dumps(raw))
    totals = quality(store, Settings(workers=1, qc_profile=path))
    n = st.read_table(store, "records", ["record_id"]).num_rows
    assert totals.checked == n and totals.removed == n
    q = st.read_table(store, "quality").to_pandas()
    assert len(q) == n and set(q["qc_version"]) == {new}
    assert (q["verdict"] != "pass").all()


def test_unreadable_waveforms_are_quarantined_and_the_run_goes_on(
    synth_store: Path, tmp_path: Path, prefect_harness: None
) -> None:
    store = copy_store(synth_store, tmp_path / "store")
    parts = sorted((store / "waveforms").rglob("*.parquet"))
    broken = parts[0]
    lost = st.row_count(broken)
    broken.write_bytes(b"not parquet at all")
    totals = quality(store, Settings(workers=1))
    n = st.read_table(store, "records", ["record_id"]).num_rows
    assert totals.checked == n - lost and totals.quarantined == {"unreadable_waveforms": 1}
    q = st.read_table(store, "quarantine").to_pandas()
    assert (q["stage"] == "quality").sum() == 1
    assert q.loc[q["stage"] == "quality", "source_path"].item() == str(broken.relative_to(store))
    again = quality(store, Settings(workers=1))  # still broken: counted again, stored once
    assert again.checked == 0 and again.quarantined == {"unreadable_waveforms": 1}
    assert (st.read_table(store, "quarantine").to_pandas()["stage"] == "quality").sum() == 1


def test_msaic_qc_on_the_real_store(
    real_store: Path, tmp_path: Path, prefect_harness: None, capsys: pytest.CaptureFixture[str]
) -> None:
    store = copy_store(real_store, tmp_path / "store")
    assert main(["qc", "--store", str(store), "--workers", "2"]) == 0
    out = capsys.readouterr().out
    assert "msaic qc" in out and "windows checked (qc/8)" in out
    assert (store / PROFILE_FILE).read_bytes() == profile_bytes(None)  # kept beside its rows
    frame = _quality(store)
    flags = _flags(frame)
    name = frame["source_path"].map(lambda p: Path(p).stem)
    for record, leads in FLAT_CHEST.items():
        i = np.flatnonzero(name == record).item()
        for lead in leads:
            assert "flat" in flags[i, CANONICAL_LEADS.index(lead)], (record, lead, flags[i])
        assert frame.loc[i, "verdict"] in ("limited", "reject")
    ludb = (frame["site"] == "ludb").to_numpy()
    # the LUDB copy normalizes every lead to 1 mV peak-to-peak, which breaks Einthoven's law: the
    # gate reads wrong per-lead gains (`amplitude`) on its limb leads and nothing else on most leads
    clean = np.mean([not (f - {"amplitude"}) for f in flags[ludb].ravel()])
    assert ludb.sum() == 200 and clean >= 0.97
    amplitude = np.array([["amplitude" in f for f in row] for row in flags[ludb]])
    assert amplitude[:, :6].sum() > 4 * amplitude[:, 6:].sum()
