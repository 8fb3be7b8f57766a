"""`msaic train` / `msaic evaluate` end to end on a copy of the synthetic store: quality and features
flows first, then training through Prefect, the registered directory, reloading without code
execution, and re-evaluation."""

from __future__ import annotations

import copy
import json
import re
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import safetensors.torch

from data_contracts import load_json
from data_contracts.leads import CANONICAL_LEADS
from flows.cli import main
from flows.train import evaluate, train
from msaic_model.model.config import ModelConfig, load_config, with_overrides
from msaic_model.model.net import build_model
from msaic_model.training.calibration import calibrate, load_calibration_config
from msaic_model.training.evaluate import choose_threshold, load_evaluation_config
from msaic_model.training.registry import load_model
from msaic_model.training.run import signals_for
from tasks import store as st
from tasks.quality.profile_file import ProfileId, profile_bytes
from tests.helpers import copy_store

TINY_NET = {
    "net.lead_width": 2,
    "net.stem_width": 12,
    "net.blocks": [{"width": 16, "branch_width": 4, "dilations": [1, 2, 4], "kernel_size": 5, "pool": 2}],
    "net.projection_hidden": 16,
    "net.projection_dim": 8,
    "train.epochs": 2,
    "train.min_windows_per_epoch": None,  # a pass over the few windows, not the packaged floor
    "train.eval_batch_size": 128,
    "train.num_threads": 1,  # 2 cores shared with the rest of the suite: no thread contention
    "train.batch_size": 32,
    "train.lr": 0.003,
}


@pytest.fixture(scope="module")
def store(measured_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the session's synthetic store with its quality verdicts and features."""
    return copy_store(measured_store, tmp_path_factory.mktemp("train-flow") / "store")


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("config") / "tiny.json"
    path.write_text(with_overrides(load_config("msaic"), TINY_NET).model_dump_json())
    return path


@pytest.fixture(scope="module")
def evaluation_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The packaged evaluation config with fewer bootstrap resamples and importance repeats."""
    raw = copy.deepcopy(load_json("evaluation.json"))
    raw["metrics"]["bootstrap_resamples"] = 300
    raw["importance"] = {"repeats": 2, "max_records": 40}
    path = tmp_path_factory.mktemp("config") / "evaluation.json"
    path.write_text(json.dumps(raw))
    return path


@pytest.fixture(scope="module")
def trained(store: Path, tiny_config: Path, evaluation_config: Path) -> Path:
    (model,) = train(
        store, model="msaic", split="site", config=tiny_config, seed=1, evaluation_config=evaluation_config
    )
    return model.path


def test_registered_directory(store: Path, trained: Path) -> None:
    files = {p.name for p in trained.iterdir()}
    assert files == {
        "weights.safetensors", "config.json", "thresholds.json", "metrics.json", "snapshot.json",
        "split.parquet", "model_card.html", "qc_profile.json",
    }  # fmt: skip
    # the QC profile the store was checked with, kept with the model and named in its snapshot
    assert (trained / "qc_profile.json").read_bytes() == (store / "qc_profile.json").read_bytes()
    assert (store / "qc_profile.json").read_bytes() == profile_bytes(None)
    config = json.loads((trained / "config.json").read_text())
    assert config["kind"] == "net" and config["model"]["net"]["stem_width"] == 12
    assert config["model"]["train"]["seed"] == 1
    tensors = safetensors.torch.load_file(trained / "weights.safetensors")  # data only, no pickle
    expected = build_model(ModelConfig.model_validate(config["model"])).state_dict()
    assert tensors.keys() == expected.keys()  # every parameter and buffer of the network, nothing else
    assert all(t.dtype == expected[k].dtype and t.shape == expected[k].shape for k, t in tensors.items())
    split = pd.read_parquet(trained / "split.parquet")
    assert (split.groupby("patient_key")["part"].nunique() == 1).all()
    held = config["split"]["held_out_sites"]
    assert len(held) == 1 and (split.loc[split["site"] == held[0], "part"] == "test").all()
    verdicts = st.read_table(store, "quality", ["verdict"]).to_pandas()["verdict"]
    assert config["split"]["excluded"]["quality_reject"] == int((verdicts == "reject").sum())
    assert len(split) == int((verdicts != "reject").sum())  # every usable window has a part
    snapshot = json.loads((trained / "snapshot.json").read_text())
    assert snapshot["qc_profile"] == asdict(ProfileId.of(profile_bytes(None)))
    assert snapshot["parts"]["test/fold0"]["records"] == int((split["part"] == "test").sum())
    assert set(snapshot["store_files"]) == {"records", "waveforms", "quality", "features"}
    assert (
        snapshot["adjudications"]["decisions"] == 0 == config["split"]["excluded"]["adjudicated_unreadable"]
    )


def test_threshold_from_validation_and_metrics(trained: Path) -> None:
    thresholds = json.loads((trained / "thresholds.json").read_text())
    metrics = json.loads((trained / "metrics.json").read_text())
    split = pd.read_parquet(trained / "split.parquet")
    val, test = split[split["part"] == "val"], split[split["part"] == "test"]
    target = load_evaluation_config().target_sensitivity
    assert thresholds["chosen_on"] == "val" and thresholds["target_sensitivity"] == target
    assert thresholds["threshold"] == choose_threshold(val["mi_label"], val["probability"], target)
    assert thresholds["val_sensitivity"] >= target
    evaluation = metrics["evaluation"]
    assert evaluation["threshold"] == thresholds["threshold"]
    assert evaluation["test"]["n"] == len(test) and evaluation["validation"]["n"] == len(val)
    called = test["probability"] >= thresholds["threshold"]
    sens = called[test["mi_label"] == 1].mean()
    assert evaluation["test"]["sensitivity"]["value"] == pytest.approx(sens)
    assert set(evaluation["per_site"]) == set(test["site"]) and set(evaluation["per_device"]) == set(
        test["device"]
    )
    shift = evaluation["shift"]
    assert shift["held_out"]["n"] == int(test["held_out"].sum()) > 0
    assert shift["in_distribution"]["n"] == int((~test["held_out"]).sum()) > 0
    calibration = thresholds["calibration"]  # fitted on the validation part's log-odds alone
    refit, report = calibrate(val["logit"], val["mi_label"].to_numpy(int), load_calibration_config())
    assert calibration["chosen_by"] == report and calibration["method"] == refit.method
    assert calibration["parameters"] == pytest.approx(refit.to_json()["parameters"], rel=1e-6)
    assert calibration["bands"] == {"cuts": [0.1, 0.5], "names": ["low", "intermediate", "high"]}
    threshold_logit = np.log(thresholds["threshold"] / (1 - thresholds["threshold"]))
    assert calibration["risk_at_threshold"] == pytest.approx(float(refit.risk(threshold_logit)), rel=1e-6)
    assert calibration["method"] == "platt" and report["val_positives"] < 50  # too few for isotonic
    np.testing.assert_allclose(split["risk"], refit.risk(split["logit"]), rtol=1e-6)
    np.testing.assert_allclose(1 / (1 + np.exp(-split["logit"])), split["probability"], rtol=1e-5)
    reliability = metrics["calibration"]
    assert reliability["n"] == len(test)
    brier = {c: float(np.mean((test[c] - test["mi_label"]) ** 2)) for c in ("probability", "risk")}
    assert {c: reliability[c]["brier"]["value"] for c in brier} == pytest.approx(brier)
    history = metrics["training"]["history"]
    assert 1 <= len(history) <= TINY_NET["train.epochs"] and metrics["training"]["seconds_per_epoch"] > 0
    assert {row["group"] for row in metrics["importance"]["lead"]} == set(CANONICAL_LEADS)
    assert {row["group"] for row in metrics["importance"]["territory"]} == {"anterior", "inferior", "lateral"}


def test_reloaded_model_reproduces_the_evaluation(
    store: Path, trained: Path, evaluation_config: Path
) -> None:
    model = load_model(trained)
    split = pd.read_parquet(trained / "split.parquet")
    test = split[split["part"] == "test"]
    assert model.model_id == trained.name
    assert model.threshold == json.loads((trained / "thresholds.json").read_text())["threshold"]
    occlusion = model.occlusion(signals_for(store, test["record_id"].tolist()))
    np.testing.assert_allclose(occlusion.probability, test["probability"], atol=1e-5)
    np.testing.assert_allclose(model.calibration.risk(occlusion.logit), test["risk"], atol=1e-5)
    report = evaluate(store, trained.name, evaluation_config=evaluation_config)
    assert report["split"] == "saved"
    metrics = json.loads((trained / "metrics.json").read_text())["evaluation"]
    assert json.loads(json.dumps(report["evaluation"])) == metrics  # same probabilities, threshold, bootstrap
    assert Path(report["path"]).is_file() and Path(report["path"]).parent == store / "reports" / "evaluations"


def test_model_card_is_self_contained(trained: Path) -> None:
    card = (trained / "model_card.html").read_text()
    assert not re.search(r"""(?:src|href)\s*=\s*["'](?!data:|#)""", card)  # nothing loaded from elsewhere
    assert "<script" not in card and "<link" not in card
    assert len(re.findall(r'src="data:image/png;base64,[A-Za-z0-9+/=]{200,}"', card)) == 3
    for text in ("Intended use", "Per site", "Per device", "held-out", "SYNTHETIC", "inferior", "Threshold"):
        assert text in card, text
    # the headline figures of the configuration on real data (bench/real.py), every model's row
    benchmark = card.split('id="real-benchmark"')[1].split("</table>")[0]
    assert all(f"<td>{name}</td>" in benchmark for name in load_json("real_benchmark.json")["models"])
    # the calibration: method, the reliability diagram before and after, the bands on the test part
    assert (
        "by Platt scaling, risk = σ(" in card and 'alt="reliability diagram of the test part before' in card
    )
    assert (
        'id="calibration-test"' in card and "before: probability" in card and "after: calibrated risk" in card
    )
    bands = card.split('id="risk-bands"')[1].split("</table>")[0]
    split = pd.read_parquet(trained / "split.parquet")
    test = split[split["part"] == "test"]
    high = int((test["risk"] >= 0.5).sum())
    assert re.search(rf"<td>high</td><td>&gt;= 0.50</td><td class=\"num\">{high}</td>", bands)
    held_out = json.loads((trained / "config.json").read_text())["split"]["held_out_sites"]
    assert held_out and f"held-out sites: {', '.join(held_out)}," in card  # the split as trained


def test_feature_baseline_through_the_cli(
    store: Path, evaluation_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # gradient boosting takes the same path (its arrays: tests/msaic_model/training/test_registry.py)
    kind = "logreg"
    args = ["--model", kind, "--split", "patient", "--evaluation-config", str(evaluation_config)]
    assert main(["train", "--store", str(store), *args]) == 0
    (path,) = (store / "models").glob(f"{kind}-patient-*")
    out = capsys.readouterr().out
    assert "left out before the split: quality_reject" in out and path.name in out.replace("\n", "")
    split = pd.read_parquet(path / "split.parquet")
    test = split[split["part"] == "test"].head(24)
    model = load_model(path)
    assert model.kind == kind
    # from raw windows: quality gate + feature measurement + the stored arrays, as in the evaluation
    np.testing.assert_allclose(
        model.predict_proba(signals_for(store, test["record_id"].tolist())), test["probability"], atol=1e-6
    )
    auroc = json.loads((path / "metrics.json").read_text())["evaluation"]["test"]["auroc"]
    assert auroc["low"] <= auroc["value"] <= auroc["high"]


def test_training_needs_quality_and_features_first(
    synth_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bare = copy_store(synth_store, tmp_path / "bare")
    assert main(["train", "--store", str(bare), "--model", "logreg"]) == 1
    assert f"run `msaic qc --store {bare}` first" in capsys.readouterr().err
    assert not (bare / "models").exists()
