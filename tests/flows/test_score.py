"""`msaic score` on the synthetic archive with a real trained model: every record once, the
quality gate and the model's probabilities as the store would give them, the explanation, the
worklist, the quarantine of bad records, and the CLI's refusals."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pytest

from data_contracts.leads import CANONICAL_LEADS
from tasks import store as st


@pytest.fixture(scope="module")
def scored(
    prefect_harness: None, synth_archive: Path, model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    from flows.score import score_archive
    from tasks.settings import Settings

    out = tmp_path_factory.mktemp("score") / "out"
    score_archive(synth_archive, model_dir, out, Settings(workers=2, score_shard_size=32))
    return out


def _waveforms(store: Path, ids: list[str]) -> np.ndarray:
    table = st.read_table(store, "waveforms", filter=pc.field("record_id").isin(ids))
    order = {rid: i for i, rid in enumerate(table["record_id"].to_pylist())}
    return st.signals_of(table["signal"])[[order[i] for i in ids]]


def test_every_record_scored_once_as_the_store_sees_it(
    scored: Path, synth_store: Path, model_dir: Path
) -> None:
    from msaic_model.training.registry import load_model
    from tasks.quality.gate import assess, load_profile

    scores = st.read_table(scored, "scores").to_pandas()
    records = st.read_table(synth_store, "records", ["record_id", "site", "source_path"]).to_pandas()
    # the same pseudonym key gives the same ids as ingest: one score row per stored window
    assert scores["record_id"].is_unique
    assert set(scores["record_id"]) == set(records["record_id"])
    merged = scores.merge(records, on="record_id", suffixes=("", "_store"))
    assert (merged["site"] == merged["site_store"]).all()
    assert (merged["source_path"] == merged["source_path_store"]).all()

    model = load_model(model_dir)
    ids = scores["record_id"].tolist()
    signals = _waveforms(synth_store, ids)
    qc = assess(signals, load_profile())
    assert scores["verdict"].tolist() == qc.verdict
    assert {"pass", "limited", "reject"} <= set(qc.verdict), "the archive should exercise every verdict"

    rejected = scores["verdict"] == "reject"
    assert scores.loc[rejected, "probability"].isna().all()
    assert scores.loc[rejected, "unscored_reason"].str.startswith("quality reject: ").all()
    assert not scores.loc[rejected, "flagged"].any()
    assert scores.loc[~rejected, "unscored_reason"].isna().all()
    limited = scores["verdict"] == "limited"
    assert scores.loc[limited, "flagged_leads"].map(len).gt(0).all()
    assert scores.loc[scores["verdict"] == "pass", "flagged_leads"].map(len).eq(0).all()

    expected = model.predict_proba(signals[~rejected.to_numpy()])
    np.testing.assert_allclose(scores.loc[~rejected, "probability"], expected, rtol=1e-5, atol=1e-6)
    assert (
        scores.loc[~rejected, "flagged"] == (scores.loc[~rejected, "probability"] >= model.threshold)
    ).all()
    assert (scores["model_id"] == model.model_id).all()
    assert scores["model_version"].str.contains("msaic").all()

    # the log-odds (which rank calls whose probability reads 1.000) and the calibrated risk
    done = scores[scores["probability"].notna()]
    np.testing.assert_allclose(1 / (1 + np.exp(-done["logit"])), done["probability"], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(done["risk"], model.calibration.risk(done["logit"]), rtol=1e-6)
    assert done["risk_band"].tolist() == model.calibration.bands.of(done["risk"]).tolist()
    assert scores.loc[scores["probability"].isna(), ["logit", "risk", "risk_band"]].isna().all(axis=None)


def test_territory_is_the_group_whose_masking_lowers_the_probability_most(
    scored: Path, synth_store: Path, model_dir: Path
) -> None:
    from dataclasses import replace

    import torch

    from msaic_model.model.data import prepare
    from msaic_model.training.registry import load_model
    from tasks.scoring.score import explain, load_explainer

    scores = st.read_table(scored, "scores").to_pandas()
    assert scores["flagged"].sum() > 0
    assert scores.loc[~scores["flagged"], "territory"].isna().all()  # only positive calls are explained
    explained = scores[scores["territory"].notna()]
    assert (explained["explanation"].str.startswith("consistent with a")).all()

    # the occlusion on the real model, every window explained (no minimum drop), checked by
    # zeroing leads of the prepared input and scoring it directly (log-odds); the packaged input
    # kind, one median beat per lead, is a single crop (rhythm crops:
    # tests/msaic_model/model/test_occlusion.py)
    model = load_model(model_dir)
    explainer = replace(load_explainer(), min_drop=-1.0, top_leads=12)
    ids = scores.loc[scores["verdict"] != "reject", "record_id"].head(6).tolist()
    signals = _waveforms(synth_store, ids)
    assert model.model_config.data.input == "median_beat"

    def logit(x: torch.Tensor) -> float:
        with torch.inference_mode():
            return model.net(x).logits[0].item()

    got = explain(model.occlusion(signals), np.arange(len(signals)), explainer)
    for raw, (territory, leads) in zip(signals, got, strict=True):
        x = prepare(raw[None], model.model_config)
        base = logit(x)

        def drop(leads_removed: list[int], x: torch.Tensor = x, base: float = base) -> float:
            masked = x.clone()
            masked[:, leads_removed] = 0.0
            return base - logit(masked)  # in log-odds

        drops = {name: drop(list(group)) for name, group in explainer.territories.items()}
        assert territory == max(drops, key=drops.get)
        single = {CANONICAL_LEADS[lead]: drop([lead]) for lead in explainer.territories[territory]}
        assert leads == sorted(single, key=single.get, reverse=True)


def test_worklist_ranks_flagged_records(scored: Path) -> None:
    scores = st.read_table(scored, "scores").to_pandas()
    worklist = pd.read_csv(scored / "worklist.csv")
    flagged = scores[scores["flagged"]]
    assert len(worklist) == flagged.groupby(["site", "source_path"]).ngroups
    # ranked by the calibrated risk, which is monotone in the log-odds: calls whose probability
    # reads 1.000 keep their order
    assert worklist["risk"].is_monotonic_decreasing and worklist["logit"].is_monotonic_decreasing
    assert worklist["probability"].is_monotonic_decreasing
    assert worklist["rank"].tolist() == list(range(1, len(worklist) + 1))
    assert set(worklist["verdict"]) <= {"pass", "limited"}
    top = flagged.sort_values("logit", ascending=False).iloc[0]
    assert worklist.loc[0, "source_path"] == top["source_path"]
    assert worklist.loc[0, "site"] == top["site"]
    page = (scored / "worklist.html").read_text()
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", page)  # no asset from elsewhere
    for path in worklist["source_path"].head(20):
        assert path in page
    summary = json.loads((scored / "score_summary.json").read_text())
    assert summary["counts"]["windows"] == len(scores)
    assert summary["counts"]["flagged"] == int(scores["flagged"].sum())
    counts = summary["counts"]
    assert counts["scored"] == int(scores["probability"].notna().sum()) == counts["pass"] + counts["limited"]
    assert counts["rejected"] + counts["no_input"] == int(scores["unscored_reason"].notna().sum())
    assert counts["calibrated"] == counts["scored"] and summary["calibration"] == "platt"


def test_a_model_registered_before_calibration_scores_without_a_risk(
    synth_archive: Path, model_dir: Path, tmp_path: Path
) -> None:
    from tasks.scoring.run import score_archive_run
    from tasks.settings import Settings

    old = tmp_path / "models" / model_dir.name
    shutil.copytree(model_dir, old)
    thresholds = json.loads((old / "thresholds.json").read_text())
    del thresholds["calibration"]
    (old / "thresholds.json").write_text(json.dumps(thresholds))
    archive = tmp_path / "archive"
    archive.mkdir()
    for hea in sorted(synth_archive.glob("records*/*/*.hea"))[:3]:
        for path in (hea, hea.with_suffix(".dat")):
            shutil.copy(path, archive / path.name)
    totals = score_archive_run(archive, old, tmp_path / "out", Settings(workers=1))
    scores = st.read_table(tmp_path / "out", "scores").to_pandas()
    assert scores["logit"].notna().any() and scores["risk"].isna().all() and scores["risk_band"].isna().all()
    summary = json.loads((tmp_path / "out" / "score_summary.json").read_text())
    assert summary["calibration"] is None and "registered without a calibration" in summary["risk"]
    assert totals.counts["calibrated"] == 0 < totals.counts["scored"]


def test_bad_records_are_quarantined_and_the_run_goes_on(
    prefect_harness: None, synth_archive: Path, model_dir: Path, tmp_path: Path
) -> None:
    from flows.score import score_archive
    from tasks.settings import Settings

    archive = tmp_path / "archive"
    headers = sorted(synth_archive.glob("records*/*/*.hea"))[:4]
    for hea in headers:
        dest = archive / "ward" / hea.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(hea, dest)
        shutil.copy(hea.with_suffix(".dat"), dest.with_suffix(".dat"))
    truncated = archive / "ward" / headers[0].with_suffix(".dat").name
    truncated.write_bytes(truncated.read_bytes()[:1000])
    (archive / "ward" / "empty.hea").write_bytes(b"")
    out = tmp_path / "out"
    totals = score_archive(archive, model_dir, out, Settings(workers=1))
    quarantine = st.read_table(out, "quarantine").to_pandas()
    reasons = dict(zip(quarantine["source_path"], quarantine["reason"], strict=True))
    assert reasons == {f"ward/{headers[0].name}": "truncated_signal", "ward/empty.hea": "empty_file"}
    assert set(quarantine["stage"]) == {"read", "archive"}
    scores = st.read_table(out, "scores").to_pandas()
    assert sorted(scores["source_path"].unique()) == sorted(f"ward/{h.name}" for h in headers[1:])
    assert totals.counts["quarantined"] == 2


def test_cli_refuses_bad_usage(
    prefect_harness: None, model_dir: Path, synth_archive: Path, tmp_path: Path
) -> None:
    from flows.cli import main

    for argv in (  # a missing archive, a folder that is no model: usage errors, exit 2
        ["score", str(tmp_path / "nope"), "--model", str(model_dir), "--out", str(tmp_path / "o")],
        ["score", str(synth_archive), "--model", str(tmp_path), "--out", str(tmp_path / "o")],
    ):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
    with pytest.raises(SystemExit) as exit_info:
        main(["score", str(synth_archive), "--out", str(tmp_path / "o")])
    assert exit_info.value.code == 2


def test_recording_date_from_the_record_line() -> None:
    from tasks.ingest.wfdb_header import parse_header

    line = "rec.dat 16 200 16 0 0 0 0 I\n"
    assert parse_header(f"rec 1 500 5000 10:11:12 05/03/2021\n{line}").recorded_at == "2021-03-05T10:11:12"
    assert parse_header(f"rec 1 500 5000 9:01:02.5 05/03/2021\n{line}").recorded_at == "2021-03-05T09:01:02"
    assert parse_header(f"rec 1 500 5000\n{line}").recorded_at is None
    # no calendar date: none is stored (a month-first date, a zeroed one, a 29 February of no leap year)
    for date in ("12/25/2019", "00/00/0000", "29/02/2021"):
        assert parse_header(f"rec 1 500 5000 10:11:12 {date}\n{line}").recorded_at is None, date
    no_clock_time = parse_header(f"rec 1 500 5000 25:61:00 25/12/2019\n{line}")
    assert no_clock_time.recorded_at == "2019-12-25"


def test_refuses_to_resume_scores_of_another_scoring_version(
    model_dir: Path, synth_archive: Path, tmp_path: Path
) -> None:
    """An OUT written by score/1 (explanations from probability drops) is not continued by this
    version: its rows would mix two meanings of `territory` and `top_leads`."""
    from tasks.scoring.run import score_archive_run
    from tasks.settings import Settings

    model_id = json.loads((model_dir / "config.json").read_text())["model_id"]
    out = tmp_path / "out"
    out.mkdir()
    old = {"archive": str(synth_archive.resolve()), "model_id": model_id, "shard_size": 64}
    (out / "score_run.json").write_text(json.dumps(old))
    with pytest.raises(ValueError, match="score/1"):
        score_archive_run(synth_archive, model_dir, out, Settings(workers=1))
    assert not (out / "scores").exists()
