"""A broken model is refused before any work, with one line: real registered models (a tiny
MSAIC-Net trained on real LUDB windows, a gradient-boosting and a logistic baseline) are copied
and tampered with as an attacker or a damaged disk would, and `load_model` refuses each copy;
`msaic score` with one exits 1 with one line and leaves no OUT behind."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import safetensors.numpy
import torch

from data_contracts.feature_columns import FEATURE_COLUMNS
from msaic_model.model.config import load_config, with_overrides
from msaic_model.model.feature_baselines import fit_feature_model
from msaic_model.model.net import TREES, build_model
from msaic_model.training.fit import fit
from msaic_model.training.registry import Registration, data_snapshot, load_model, register
from tasks import store as st
from tasks.ingest.run import ingest_archive
from tasks.settings import Settings
from tasks.store.model_files import CONFIG, THRESHOLDS, WEIGHTS, ModelError
from tests.flows.scoring_setup import TINY_CONFIG
from tests.helpers import copy_ludb

Tamper = Callable[[dict], None]
FIRST_CONV = "lead_stem.0.weight"


def register_model(root: Path, model_id: str, config: dict, weights: dict, threshold: float = 0.5) -> Path:
    """Register a model as training does (`registry.register`); returns its directory."""
    split = pd.DataFrame({"record_id": ["a"], "part": ["test"], "fold": 0, "site": "s", "probability": [0.5]})
    reg = Registration(
        model_id=model_id,
        config={"model_id": model_id, **config},
        weights=weights,
        thresholds={"threshold": threshold, "chosen_on": "val"},
        metrics={},
        snapshot=data_snapshot(root, split),
        split=split,
        card_html="<!DOCTYPE html><html><body>card</body></html>",
    )
    return register(root, reg)


@pytest.fixture(scope="module")
def ludb_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Eight real LUDB records ingested (plain function, one worker)."""
    archive = tmp_path_factory.mktemp("ludb8")
    copy_ludb(archive, range(1, 9))
    store = tmp_path_factory.mktemp("model-store")
    ingest_archive(archive, store, Settings(workers=1), site="ludb")
    return store


@pytest.fixture(scope="module")
def models(ludb_store: Path) -> dict[str, Path]:
    """The originals: a tiny MSAIC-Net trained one epoch on the real windows (labels alternate:
    the weights are trained, not meaningful), and the two feature baselines."""
    records = st.read_table(ludb_store, "records", ["record_id"]).to_pandas()
    labelled = records.assign(mi_label=np.arange(len(records)) % 2)
    config = with_overrides(load_config(TINY_CONFIG), {"train.epochs": 1})
    net = fit(ludb_store, labelled, labelled, config).model
    found = {
        "net": register_model(
            ludb_store, "net-1", {"kind": "net", "model": config.model_dump(mode="json")}, net.state_dict()
        )
    }
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(200, 6)), rng.integers(0, 2, 200)
    for kind in ("gbm", "logreg"):
        arrays = fit_feature_model(kind, x, y).to_arrays()
        columns = [f"f{i}" for i in range(6)]
        found[kind] = register_model(
            ludb_store, f"{kind}-1", {"kind": kind, "feature_columns": columns}, arrays
        )
    return found


def tampered(
    original: Path,
    to: Path,
    weights: Tamper | None = None,
    config: Tamper | None = None,
    thresholds: Tamper | None = None,
) -> Path:
    """A copy of a registered model directory with its weights, config or thresholds edited."""
    copy = to / "models" / original.name
    shutil.copytree(original, copy)
    if weights is not None:
        arrays = safetensors.numpy.load_file(copy / WEIGHTS)
        weights(arrays)
        safetensors.numpy.save_file(arrays, copy / WEIGHTS)
    for name, edit in ((CONFIG, config), (THRESHOLDS, thresholds)):
        if edit is not None:
            payload = json.loads((copy / name).read_text())
            edit(payload)
            (copy / name).write_text(json.dumps(payload))
    return copy


def _set(name: str, value: float) -> Tamper:
    def edit(arrays: dict) -> None:
        arrays[name].reshape(-1)[0] = value

    return edit


def test_the_originals_load_and_score_finite(models: dict[str, Path]) -> None:
    net = load_model(models["net"], device="cpu")
    signals = np.random.default_rng(1).normal(0, 0.3, (2, 12, 5000)).astype(np.float32)
    assert np.isfinite(net.predict_proba(signals)).all()
    assert net.calibration is None  # registered without one, as before calibration/1: still loads
    for kind in ("gbm", "logreg"):
        model = load_model(models[kind])
        assert np.isfinite(model.predict_features(np.zeros((3, 6)))).all()


FALLING_CALIBRATION = {
    "method": "platt",
    "input": "logit",
    "parameters": {"a": -1.0, "b": 0.0},
    "bands": {"cuts": [0.1, 0.5], "names": ["low", "intermediate", "high"]},
}
NET_CASES = {
    "NaN weight": ({"weights": _set(FIRST_CONV, np.nan)}, "NaN or infinite"),
    "-inf weight": ({"weights": _set(FIRST_CONV, -np.inf)}, "NaN or infinite"),
    "3e38 weight": ({"weights": _set(FIRST_CONV, 3e38)}, "reaches 3e\\+38"),
    "huge batch-norm variance": ({"weights": _set("lead_stem.1.running_var", 1e9)}, "reaches 1e\\+09"),
    "missing weight": ({"weights": lambda a: a.pop(FIRST_CONV)}, "differ in 1 parameters"),
    "NaN threshold": ({"thresholds": lambda t: t.update(threshold=float("nan"))}, "not a probability"),
    "threshold 0": ({"thresholds": lambda t: t.update(threshold=0)}, "not a probability"),
    "threshold 1.5": ({"thresholds": lambda t: t.update(threshold=1.5)}, "not a probability"),
    "threshold as text": ({"thresholds": lambda t: t.update(threshold="0.5")}, "not a probability"),
    # every other tampering: tests/msaic_model/training/test_calibration.py
    "calibration with a falling slope": (
        {"thresholds": lambda t: t.update(calibration=FALLING_CALIBRATION)},
        "calibration Platt parameters need a finite a >= 0",
    ),
    "unknown kind": ({"config": lambda c: c.update(kind="svm")}, "unknown model kind 'svm'"),
    "shapes against the config": (
        {"config": lambda c: c["model"]["net"].update(stem_width=32)},
        "has shape .* the config builds",
    ),
    "config out of bounds": (
        {"config": lambda c: c["model"]["net"].update(lead_width=100_000)},
        "network config holds 100000",
    ),
    "invalid config": (
        {"config": lambda c: c["model"]["net"].update(lead_width=0)},
        "config net.msaic.lead_width",
    ),
    "model rate above the store's": (
        {"config": lambda c: c["model"]["data"].update(fs=1000)},
        "above the stored",
    ),
}


@pytest.mark.parametrize("case", NET_CASES)
def test_a_tampered_network_is_refused_with_one_line(
    case: str, models: dict[str, Path], tmp_path: Path
) -> None:
    edits, message = NET_CASES[case]
    with pytest.raises(ModelError, match=message) as refused:
        load_model(tampered(models["net"], tmp_path, **edits))
    assert "\n" not in str(refused.value)


def test_damaged_files_are_refused(models: dict[str, Path], tmp_path: Path) -> None:
    cut = tampered(models["net"], tmp_path / "cut")
    data = (cut / WEIGHTS).read_bytes()
    (cut / WEIGHTS).write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match=r"weights\.safetensors is unreadable"):
        load_model(cut)
    garbled = tampered(models["net"], tmp_path / "garbled")
    (garbled / CONFIG).write_text("{not json")
    with pytest.raises(ModelError, match=r"config\.json is unreadable"):
        load_model(garbled)


def _first_internal(arrays: dict) -> int:
    """The first split node of a gbm's arrays, or of a network's stacked trees."""
    is_leaf = arrays["is_leaf"] if "is_leaf" in arrays else arrays[TREES + "is_leaf"]
    return int(np.flatnonzero(is_leaf == 0)[0])


def test_a_tampered_feature_baseline_is_refused(models: dict[str, Path], tmp_path: Path) -> None:
    def cycle(a: dict) -> None:  # a split whose left child is itself: prediction would never end
        a["left"][_first_internal(a)] = _first_internal(a)

    def out_of_range(a: dict) -> None:
        a["feature"][0] = 99

    for i, (edit, message) in enumerate(((cycle, "cycles"), (out_of_range, "indices"))):
        with pytest.raises(ModelError, match=message):
            load_model(tampered(models["gbm"], tmp_path / str(i), weights=edit))
    with pytest.raises(ModelError, match="not a set of its 6 feature columns"):
        load_model(
            tampered(models["logreg"], tmp_path / "used", weights=lambda a: a["used"].__setitem__(0, 6))
        )
    with pytest.raises(ModelError, match="scale is not positive"):
        load_model(tampered(models["logreg"], tmp_path / "scale", weights=_set("scale", 0.0)))
    with pytest.raises(ModelError, match="NaN or infinite"):
        load_model(tampered(models["logreg"], tmp_path / "coef", weights=_set("coef", np.nan)))


def test_a_split_at_infinity_is_a_valid_tree(models: dict[str, Path], tmp_path: Path) -> None:
    """sklearn places a split at +inf when only missing values go right: not tampering."""

    def at_infinity(a: dict) -> None:
        a["threshold"][_first_internal(a)] = np.inf

    model = load_model(tampered(models["gbm"], tmp_path, weights=at_infinity))
    assert np.isfinite(model.predict_features(np.zeros((2, 6)))).all()


@pytest.fixture(scope="module")
def stacked(ludb_store: Path) -> Path:
    """A tiny fused network with gradient boosting stacked on it (`msaic_stacked`'s kind),
    registered untrained: its trees fitted on random measurements."""
    fusion = load_config("msaic_stacked").net.fusion.model_dump()
    config = with_overrides(load_config(TINY_CONFIG), {"net.fusion": fusion})
    net = build_model(config).eval()
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(200, len(FEATURE_COLUMNS))), rng.integers(0, 2, 200)
    net.features.trees.set_trees(fit_feature_model("gbm", x, y))
    weights = net.state_dict()
    return register_model(
        ludb_store, "stacked-1", {"kind": "net", "model": config.model_dump(mode="json")}, weights
    )


def _stacked_logits(model_dir: Path) -> torch.Tensor:
    net = load_model(model_dir).net
    x = torch.randn(3, 12, 1000)
    features = torch.randn(3, len(load_config("msaic_stacked").feature_columns))
    with torch.no_grad():
        return net(x, features).logits


def _no_trees(arrays: dict) -> None:
    """The buffers of a stacked network never fitted: every array empty."""
    for name in [k for k in arrays if k.startswith(TREES)]:
        arrays[name] = arrays[name][:0]


STACKED_CASES = {
    "a cycle": (lambda a: a[TREES + "left"].__setitem__(_first_internal(a), _first_internal(a)), "cycles"),
    "a column out of range": (
        lambda a: a[TREES + "used"].__setitem__(0, len(FEATURE_COLUMNS)),
        f"not a set of its {len(FEATURE_COLUMNS)} feature columns",
    ),
    "NaN leaf": (_set(TREES + "value", np.nan), "NaN or infinite"),
    "huge leaf": (_set(TREES + "value", 1e9), "reaches 1e\\+09"),
    "missing array": (lambda a: a.pop(TREES + "roots"), "differ in 1 parameters"),
    "no trees": (_no_trees, "stacks gbm, but the weights hold no trees"),
}


@pytest.mark.parametrize("case", STACKED_CASES)
def test_tampered_stacked_trees_are_refused(case: str, stacked: Path, tmp_path: Path) -> None:
    assert torch.isfinite(_stacked_logits(stacked)).all()
    edit, message = STACKED_CASES[case]
    with pytest.raises(ModelError, match=message) as refused:
        load_model(tampered(stacked, tmp_path, weights=edit))
    assert "\n" not in str(refused.value)


def test_a_stacked_split_at_infinity_is_valid(stacked: Path, tmp_path: Path) -> None:
    def at_infinity(a: dict) -> None:
        a[TREES + "threshold"][_first_internal(a)] = np.inf

    assert torch.isfinite(_stacked_logits(tampered(stacked, tmp_path, weights=at_infinity))).all()


def test_score_refuses_a_tampered_model_before_any_work(
    models: dict[str, Path],
    tmp_path: Path,
    prefect_harness: None,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Exit 1 and one line; OUT is never created, so no `.pseudonym_key` is left behind (the key
    comes from the key file here). The check runs in a process forked from the workers'
    forkserver (two workers), whose refusal must reach the CLI whole."""
    from flows.cli import main

    monkeypatch.delenv("MSAIC_PSEUDONYM_KEY")
    archive = tmp_path / "archive"
    archive.mkdir()
    copy_ludb(archive, [1])
    model = tampered(models["net"], tmp_path, weights=_set(FIRST_CONV, np.nan))
    out = tmp_path / "out"
    capfd.readouterr()
    assert main(["score", str(archive), "--model", str(model), "--out", str(out), "--workers", "2"]) == 1
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "NaN or infinite" in err[0] and "Traceback" not in err[0], err
    Path(err[0].rsplit("traceback in ", 1)[1].rstrip(")")).unlink()  # the log of the failed run
    assert not out.exists()
