"""The registry keeps models as data only (safetensors, JSON, Parquet, HTML) and `load_model`
gives back the very probabilities of the model that was registered."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import safetensors.numpy
import safetensors.torch
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from msaic_model.model.config import load_config, with_overrides
from msaic_model.model.feature_baselines import (
    FeatureModel,
    export_trees,
    fit_feature_model,
    load_feature_model_config,
)
from msaic_model.model.inference import predict_proba
from msaic_model.model.net import build_model
from msaic_model.training.registry import WEIGHTS, Registration, data_snapshot, load_model, register

EXPECTED_FILES = {
    "weights.safetensors",
    "config.json",
    "thresholds.json",
    "metrics.json",
    "snapshot.json",
    "split.parquet",
    "model_card.html",
}


@pytest.fixture(scope="module")
def features() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Training and scoring matrices with scattered NaN and one column missing in every training row."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 12))
    y = ((x[:, 0] + 0.7 * x[:, 4] + rng.normal(0, 0.8, 400)) > 0.6).astype(int)
    x[rng.random(x.shape) < 0.1] = np.nan
    x[:, 7] = np.nan
    scoring = rng.normal(size=(150, 12))
    scoring[rng.random(scoring.shape) < 0.2] = np.nan
    return x, y, scoring


@pytest.fixture(scope="module")
def fitted_models(features: tuple[np.ndarray, np.ndarray, np.ndarray]) -> dict[str, FeatureModel]:
    x, y, _ = features
    return {kind: fit_feature_model(kind, x, y) for kind in ("logreg", "gbm")}


def test_gradient_boosting_exported_as_arrays_predicts_like_scikit_learn(
    features: tuple[np.ndarray, np.ndarray, np.ndarray], fitted_models: dict[str, FeatureModel]
) -> None:
    x, y, scoring = features
    used = np.array([i for i in range(12) if i != 7])
    params = load_feature_model_config()["gbm"] | {"max_iter": 40}
    clf = HistGradientBoostingClassifier(
        class_weight="balanced", early_stopping=False, random_state=0, **params
    )
    clf.fit(x[:, used], y)
    exported = export_trees(clf, used)
    np.testing.assert_allclose(
        exported.predict_proba(scoring), clf.predict_proba(scoring[:, used])[:, 1], atol=1e-12
    )
    np.testing.assert_array_equal(fitted_models["gbm"].used, used)  # column 7 is missing in every row


def test_logistic_regression_as_arrays_predicts_like_scikit_learn(
    features: tuple[np.ndarray, np.ndarray, np.ndarray], fitted_models: dict[str, FeatureModel]
) -> None:
    x, y, scoring = features
    params = load_feature_model_config()["logreg"]
    fitted = fitted_models["logreg"]
    used = fitted.used
    pipe = make_pipeline(
        SimpleImputer(strategy="median"),
        StandardScaler(),
        LogisticRegression(class_weight="balanced", **params),
    ).fit(x[:, used], y)
    np.testing.assert_allclose(
        fitted.predict_proba(scoring), pipe.predict_proba(scoring[:, used])[:, 1], atol=1e-12
    )


def _registration(model_id: str, config: dict, weights: dict, store: Path) -> Registration:
    split = pd.DataFrame(
        {
            "record_id": ["a", "b", "c"],
            "part": ["train", "val", "test"],
            "fold": 0,
            "site": "s",
            "probability": [np.nan, 0.2, 0.7],
        }
    )
    return Registration(
        model_id=model_id,
        config={"model_id": model_id, **config},
        weights=weights,
        thresholds={"threshold": 0.42, "chosen_on": "val"},
        metrics={"evaluation": {"test": {"n": 1}}},
        snapshot=data_snapshot(store, split),
        split=split,
        card_html="<!DOCTYPE html><html><body>card</body></html>",
    )


@pytest.mark.parametrize("kind", ["logreg", "gbm"])
def test_feature_model_round_trip(
    tmp_path: Path, features: tuple[np.ndarray, np.ndarray, np.ndarray], kind: str
) -> None:
    x, y, scoring = features
    fitted = fit_feature_model(kind, x, y)
    path = register(
        tmp_path,
        _registration(
            f"{kind}-1",
            {"kind": kind, "feature_columns": [f"f{i}" for i in range(12)]},
            fitted.to_arrays(),
            tmp_path,
        ),
    )
    assert {p.name for p in path.iterdir()} == EXPECTED_FILES
    assert path == tmp_path / "models" / f"{kind}-1"
    stored = safetensors.numpy.load_file(path / WEIGHTS)  # plain arrays, nothing to unpickle
    assert set(stored) == set(fitted.to_arrays())
    loaded = load_model(path)
    assert loaded.model_id == f"{kind}-1" and loaded.threshold == 0.42 and loaded.kind == kind
    np.testing.assert_array_equal(loaded.predict_features(scoring), fitted.predict_proba(scoring))
    staged = [p for p in (tmp_path / ".staging").rglob("*") if p.is_file()]
    assert not staged  # the staged directory was moved, not copied
    with pytest.raises(FileExistsError):
        register(
            tmp_path,
            _registration(f"{kind}-1", {"kind": kind, "feature_columns": []}, fitted.to_arrays(), tmp_path),
        )


def test_network_round_trip_scores_raw_windows_with_nan(tmp_path: Path) -> None:
    config = with_overrides(
        load_config("msaic"),
        {
            "net.blocks": [
                {"width": 16, "branch_width": 4, "dilations": [1, 2], "kernel_size": 5, "pool": 2}
            ],
            "net.stem_width": 16,
            "train.eval_batch_size": 3,
        },
    )
    net = build_model(config).eval()
    rng = np.random.default_rng(0)
    signals = rng.normal(0, 0.3, size=(7, 12, 5000)).astype(np.float32)
    signals[2, 4] = np.nan  # a missing lead
    reg = _registration(
        "msaic-1", {"kind": "net", "model": config.model_dump(mode="json")}, net.state_dict(), tmp_path
    )
    path = register(tmp_path, reg)
    tensors = safetensors.torch.load_file(path / WEIGHTS)
    assert set(tensors) == set(net.state_dict())
    loaded = load_model(path)
    assert json.loads((path / "config.json").read_text())["model"]["net"]["stem_width"] == 16
    got = loaded.predict_proba(signals)
    assert got.shape == (7,) and np.isfinite(got).all()
    np.testing.assert_allclose(got, predict_proba(net, config, signals), atol=1e-6)
    with pytest.raises(FileNotFoundError, match="not a registered model"):
        load_model(tmp_path / "models" / "missing")


def test_snapshot_identifies_the_records_and_store_files(tmp_path: Path) -> None:
    (tmp_path / "records" / "site=s").mkdir(parents=True)
    (tmp_path / "records" / "site=s" / "part-1.parquet").write_bytes(b"x")
    rows = pd.DataFrame({"record_id": ["a", "b", "c"], "part": ["train", "train", "test"], "fold": 0})
    snap = data_snapshot(tmp_path, rows)
    assert snap["parts"]["train/fold0"]["records"] == 2
    assert snap["store_files"]["records"]["paths"] == ["records/site=s/part-1.parquet"]
    other = data_snapshot(tmp_path, rows.assign(record_id=["a", "x", "c"]))
    assert (
        other["parts"]["train/fold0"]["record_ids_sha256"]
        != snap["parts"]["train/fold0"]["record_ids_sha256"]
    )
    assert other["parts"]["test/fold0"] == snap["parts"]["test/fold0"]
