"""`msaic ingest` reads the synthetic archive with its sites, devices, patients and labels (the
labels as the archive's reader stated them, which truth.parquet keeps as `mi_read` beside the
heart's own `mi_label`)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from flows.ingest import ingest
from flows.synth import synth
from tasks import store as st
from tasks.settings import Settings


def test_ingest_reads_the_synthetic_archive(tmp_path: Path, prefect_harness: None) -> None:
    archive, store = tmp_path / "archive", tmp_path / "store"
    synth(out=archive, records=60, sites=3, seed=7, workers=1)
    totals = ingest(archive, store, settings=Settings(workers=1))
    db = pd.read_csv(archive / "ptbxl_database.csv")
    truth = pd.read_parquet(archive / "truth.parquet")
    rec = st.read_table(store, "records").to_pandas()
    assert sum(totals.records.values()) + sum(totals.quarantined.values()) == 60
    rec["ecg_id"] = rec["source_path"].str.extract(r"/(\d+)_hr\.hea$")[0].astype(int)
    merged = rec.merge(db, on="ecg_id", suffixes=("", "_csv")).merge(
        truth[["ecg_id", "mi_read"]], on="ecg_id"
    )
    assert len(merged) == len(rec) == 60
    assert (merged["site"] == merged["site_csv"]).all() and (merged["device"] == merged["device_csv"]).all()
    assert (merged["strat_fold"] == merged["strat_fold_csv"]).all()
    # the table's "YYYY-MM-DD HH:MM:SS" recording date becomes recorded_at in ISO 8601
    assert (merged["recorded_at"] == merged["recording_date"].str.replace(" ", "T")).all()
    assert (merged["mi_label"] == merged["mi_read"]).all()
    assert merged["mi_label"].sum() > 0 and (merged["mi_label"] == 0).sum() > 0
    # one patient_key per patient_id, and distinct patients never share one
    per_patient = merged.groupby("patient_id")["patient_key"].nunique()
    assert (per_patient == 1).all()
    assert merged["patient_key"].nunique() == merged["patient_id"].nunique() < 60
