"""Screening a folder of hospital exports: every shared sample that holds an ECG is read by its
format, harmonized and scored by a real registered model, and the files without one land in
OUT's quarantine with their reason, as in ingest."""

from __future__ import annotations

from pathlib import Path

from tasks import store as st
from tests.flows.test_ingest_hospital import ECG_FILES, HOSPITAL, REFUSED


def test_every_hospital_export_is_scored(model_dir: Path, tmp_path: Path, prefect_harness: None) -> None:
    from flows.score import score_archive
    from tasks.settings import Settings

    out = tmp_path / "out"
    totals = score_archive(HOSPITAL, model_dir, out, Settings(workers=2, score_shard_size=4))
    scores = st.read_table(out, "scores").to_pandas()
    first = scores[scores["window"] == 0].set_index("source_path")
    assert set(first.index) == set(ECG_FILES)
    # scored, or kept with the quality gate's reason: never dropped
    has_score = first["probability"].notna()
    assert (has_score | first["unscored_reason"].notna()).all()
    assert has_score.sum() >= len(ECG_FILES) // 2, first[["verdict", "unscored_reason"]]
    assert first.loc["dicom/pydicom_waveform_ecg.dcm", "recorded_date"][:2] in {"19", "20"}
    # the device each export states reaches the scores (the worklist's device filter)
    assert first["device"].notna().sum() >= len(ECG_FILES) // 2 and first["device"].nunique() > 3
    quarantine = st.read_table(out, "quarantine").to_pandas()
    assert set(quarantine["source_path"]) == REFUSED
    assert dict(totals.skipped) == {"documentation": 1}
