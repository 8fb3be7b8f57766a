"""`msaic evaluate --store S --model M --all` end to end on real files: a tiny fused MSAIC-Net
with gradient boosting stacked on it (tests/flows/tiny_msaic.json with the fusion of the packaged
default `msaic_stacked`) trained on a store of LUDB records is evaluated on every labelled record
of another store, made from CinC 2021 records it never saw (two sources, so per-source and
per-device figures), and the registered model's card gains the external figures. The model's
scores from the stored features (evaluation) and from features measured on the signals (scoring)
agree, and its trees are the gbm baseline fitted on the same training rows."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from data_contracts import load_json
from data_contracts.feature_columns import FEATURE_COLUMNS
from flows.cli import main
from flows.features import features
from flows.ingest import ingest
from flows.quality import quality
from flows.train import TrainedModel, evaluate, train
from msaic_model.model.config import load_config, with_overrides
from msaic_model.model.feature_baselines import fit_feature_model
from msaic_model.training.eligible import eligible_records, feature_matrix
from msaic_model.training.registry import load_model
from msaic_model.training.run import signals_for
from msaic_model.training.splits import labelled_records
from tasks import store as st
from tasks.quality.gate import assess, load_profile
from tasks.settings import Settings
from tests.conftest import CINC, LUDB
from tests.flows.scoring_setup import TINY_CONFIG

LUDB_RECORDS = range(1, 41)  # 40 records, 9 of them MI-positive
EXTERNAL_SOURCES = ("PTB_PTBXL", "CPSC_CPSC-Extra")  # 40 CinC records, 13 MI-positive


def _store(store: Path, archive: Path, site: str | None) -> Path:
    settings = Settings(workers=2)
    ingest(archive, store, site=site, settings=settings)
    quality(store, settings)
    features(store, settings)
    return store


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory, prefect_harness: None) -> tuple[Path, Path]:
    """(the training store: LUDB records; the external store: CinC records of two sources)."""
    root = tmp_path_factory.mktemp("external")
    ludb = root / "ludb" / "data"
    ludb.mkdir(parents=True)
    for n in LUDB_RECORDS:
        for suffix in (".hea", ".dat"):
            shutil.copy(LUDB / f"{n}{suffix}", ludb)
    cinc = root / "cinc"
    for source in EXTERNAL_SOURCES:
        shutil.copytree(CINC / source, cinc / source)
    return _store(root / "ludb_store", ludb.parent, "ludb"), _store(root / "cinc_store", cinc, None)


@pytest.fixture(scope="module")
def evaluation_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    raw = copy.deepcopy(load_json("evaluation.json"))
    raw["metrics"]["bootstrap_resamples"] = 200
    raw["importance"] = {"repeats": 1, "max_records": 12}
    path = tmp_path_factory.mktemp("config") / "evaluation.json"
    path.write_text(json.dumps(raw))
    return path


@pytest.fixture(scope="module")
def tiny_stacked(tmp_path_factory: pytest.TempPathFactory) -> Path:
    fusion = load_config("msaic_stacked").net.fusion.model_dump()
    path = tmp_path_factory.mktemp("config") / "tiny_stacked.json"
    path.write_text(with_overrides(load_config(TINY_CONFIG), {"net.fusion": fusion}).model_dump_json())
    return path


@pytest.fixture(scope="module")
def trained(stores: tuple[Path, Path], evaluation_config: Path, tiny_stacked: Path) -> TrainedModel:
    """The tiny stacked MSAIC-Net trained on the LUDB store."""
    (model,) = train(
        stores[0], model="msaic", split="patient", config=tiny_stacked, evaluation_config=evaluation_config
    )
    return model


def _demographics(store: Path, record_ids: pd.Series) -> list[tuple[object, object]]:
    people = st.read_table(store, "records", ["record_id", "sex", "age"]).to_pandas().set_index("record_id")
    pairs = people.loc[record_ids].itertuples(index=False, name=None)
    return [(sex, None if pd.isna(age) else age) for sex, age in pairs]


def test_evaluate_all_on_a_store_the_model_never_saw(
    stores: tuple[Path, Path],
    evaluation_config: Path,
    trained: TrainedModel,
    capsys: pytest.CaptureFixture[str],
) -> None:
    own, other = stores
    card_before = (trained.path / "model_card.html").read_text()
    assert "External validation" not in card_before

    args = ["evaluate", "--store", str(other), "--model", str(trained.path), "--all"]
    assert main([*args, "--evaluation-config", str(evaluation_config)]) == 0
    out = capsys.readouterr().out
    assert "by patient (" in out and "added to the model card" in out
    (report_path,) = (other / "reports" / "evaluations").glob(f"{trained.model_id}-*.json")
    report = json.loads(report_path.read_text())
    assert report["split"] == "all" and report["excluded"]["seen_in_training"] == 0

    # every eligible labelled record of the other store, scored as a hospital's archive would be
    labelled = labelled_records(eligible_records(other).records)
    test = report["evaluation"]["test"]
    assert test["n"] == len(labelled) and test["positives"] == int(labelled["mi_label"].sum())
    assert set(report["evaluation"]["per_site"]) == set(EXTERNAL_SOURCES)
    assert set(report["evaluation"]["per_device"]) == set(labelled["device"])
    model = load_model(trained.path)  # features measured from the signals, not read from the store
    assert model.net.features is not None
    signals = signals_for(other, labelled["record_id"].tolist())
    demographics = _demographics(other, labelled["record_id"])
    p = model.predict_proba(signals, demographics)
    assert test["auroc"]["value"] == pytest.approx(roc_auc_score(labelled["mi_label"], p), abs=1e-6)
    np.testing.assert_allclose(model.occlusion(signals, demographics).probability, p, rtol=1e-5, atol=1e-7)
    gate = assess(signals, load_profile())  # scoring hands its own gate's result over: the same scores
    handed = model.occlusion(signals, demographics, gate).probability
    np.testing.assert_allclose(handed, p, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="quality of 1 windows"):
        model.occlusion(signals, demographics, gate.take(np.arange(1)))
    patients = report["external"]["patients"]
    assert patients["n"] == labelled["patient_key"].nunique() < test["n"]  # PTB patients have several windows
    assert patients["auroc"]["low"] <= patients["auroc"]["value"] <= patients["auroc"]["high"]
    calibration = report["external"]["calibration"]
    assert calibration["n"] == test["n"] and {"probability", "risk"} <= set(calibration)
    bins = report["external"]["reliability_bins"]["probability"]
    assert sum(b["records"] for b in bins) == test["n"]

    # the registered model's card gains the external figures, the rest of it unchanged
    (recorded,) = (trained.path / "external").glob("*.json")
    assert json.loads(recorded.read_text())["evaluation"] == report["evaluation"]
    card = (trained.path / "model_card.html").read_text()
    assert "External validation" in card and "cinc_store, evaluated" in card
    assert all(source in card.split('id="external-0-site"')[1] for source in EXTERNAL_SOURCES)
    assert 'alt="reliability diagram of the external records"' in card
    assert card.count("data:image/png") == card_before.count("data:image/png") + 1
    for section in ("Intended use", "Decision threshold", "Calibrated risk", "Test metrics", "Limitations"):
        assert section in card

    # on the store it was trained on, --all leaves out every record that trained or validated it
    mine = evaluate(own, model=trained.path, all_records=True, evaluation_config=evaluation_config)
    saved = pd.read_parquet(trained.path / "split.parquet")
    assert mine["excluded"]["seen_in_training"] == int((saved["part"] != "test").sum()) > 0
    assert mine["evaluation"]["test"]["n"] == int((saved["part"] == "test").sum())


def test_the_stacked_trees_are_the_baseline_on_the_training_rows(
    stores: tuple[Path, Path], trained: TrainedModel
) -> None:
    """The trees kept in the registered network are exactly what `gbm` fits on the fold's training
    rows (same feature columns, labels and seed)."""
    saved = pd.read_parquet(trained.path / "split.parquet")
    train_rows = saved[saved["part"] == "train"]
    x = feature_matrix(stores[0], train_rows["record_id"].tolist(), list(FEATURE_COLUMNS))
    seed = json.loads((trained.path / "config.json").read_text())["split"]["seed"]
    expected = fit_feature_model("gbm", x, train_rows["mi_label"].to_numpy(int), seed)
    trees = load_model(trained.path).net.features.trees
    assert trees.fitted
    for name, array in expected.to_arrays().items():
        np.testing.assert_array_equal(trees.trees().to_arrays()[name], array, err_msg=name)


def test_a_model_without_a_threshold_is_refused_before_scoring(
    stores: tuple[Path, Path], trained: TrainedModel, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Evaluation at a threshold the model never saved: one line naming it, no report (it scored
    every record first, then failed on float(None))."""
    _, other = stores
    model = tmp_path / "models" / trained.path.name
    shutil.copytree(trained.path, model)
    thresholds = json.loads((model / "thresholds.json").read_text())
    (model / "thresholds.json").write_text(json.dumps(thresholds | {"threshold": None}))
    reports = sorted((other / "reports").rglob("*.json"))
    assert main(["evaluate", "--store", str(other), "--model", str(model), "--all"]) == 1
    err = capsys.readouterr().err.strip()
    assert "has no decision threshold (thresholds.json)" in err and len(err.splitlines()) == 1
    assert sorted((other / "reports").rglob("*.json")) == reports  # nothing written


def test_a_fused_model_scores_an_archive_as_evaluation_does(
    stores: tuple[Path, Path], trained: TrainedModel, tmp_path: Path
) -> None:
    """`msaic score` with a fused model (the packaged default's kind) on the CinC archive behind the
    external store: each window's features measured from its signal with its sex and age, the same
    probabilities as the model gives the stored windows, its positive calls through the explanation."""
    other = stores[1]
    out = tmp_path / "out"
    assert main(["score", str(other.parent / "cinc"), "--model", str(trained.path), "--out", str(out)]) == 0
    scores = st.read_table(out, "scores").to_pandas()
    scored = scores[scores["probability"].notna()].set_index("record_id")
    assert len(scored) > 20 and scored["flagged"].any() and not scored["flagged"].all()
    model = load_model(trained.path)
    ids = scored.index.to_series()
    expected = model.predict_proba(signals_for(other, ids.tolist()), _demographics(other, ids))
    np.testing.assert_allclose(scored["probability"], expected, rtol=1e-5, atol=1e-6)
    # the flagged windows went through the occlusion (a fused network's crops scored with their
    # features: tests/msaic_model/model/test_occlusion.py); only positive calls carry a territory
    assert scored.loc[~scored["flagged"], "territory"].isna().all()
