"""The training loop on the synthetic store: it learns, it restores the best epoch, its validation
probabilities match inference, it repeats exactly with a seed, and the baselines run in it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.dataset as ds
import pytest
import torch
from sklearn.metrics import roc_auc_score

from msaic_model.model.config import ModelConfig, load_config, with_overrides
from msaic_model.model.inference import predict_store
from msaic_model.training.fit import FitResult, fit
from tasks.store import read_table, signals_of

TINY_MSAIC = {
    "net.lead_width": 2,
    "net.stem_width": 16,
    "net.lead_attention_hidden": 4,
    "net.blocks": [
        {"width": 16, "branch_width": 8, "dilations": [1, 2, 4], "kernel_size": 5, "pool": 2},
        {"width": 24, "branch_width": 8, "dilations": [1, 4, 8], "kernel_size": 5, "pool": 2},
    ],
    "net.projection_hidden": 16,
    "net.projection_dim": 8,
    "train.batch_size": 16,
    "train.lr": 0.003,
    "train.num_threads": 2,
    "train.min_windows_per_epoch": None,  # one pass over the few windows here (test_train_epochs.py)
}


def tiny(name: str, **overrides: object) -> ModelConfig:
    """A packaged config (any MSAIC-Net variant or a baseline) with a small network and fast training."""
    config = load_config(name)
    base = (
        TINY_MSAIC
        if config.architecture == "msaic"
        else {"train.batch_size": 16, "train.num_threads": 2, "train.min_windows_per_epoch": None}
    )
    small_baselines = {
        "resnet1d": {"net.width": 16, "net.head_hidden": 16},
        "inception1d": {"net.depth": 3, "net.filters": 4, "net.bottleneck": 4, "net.head_hidden": 16},
    }
    return with_overrides(config, {**base, **small_baselines.get(name, {}), **overrides})


@pytest.fixture(scope="module")
def split(synth_store: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train on three sites, validate on the fourth (the store holds 240 windows, about a third MI)."""
    windows = read_table(synth_store, "records", columns=["record_id", "mi_label", "site"]).to_pandas()
    held_out = sorted(windows["site"].unique())[1]
    return windows[windows["site"] != held_out], windows[windows["site"] == held_out]


@pytest.fixture(scope="module")
def fitted(synth_store: Path, split: tuple[pd.DataFrame, pd.DataFrame]) -> FitResult:
    train, val = split
    return fit(synth_store, train, val, tiny("msaic", **{"train.epochs": 3}))


def test_msaic_learns(fitted: FitResult, synth_store: Path, split: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    history = fitted.history
    assert list(history["epoch"]) == [1, 2, 3]
    assert np.isfinite(history[["train_loss", "train_contrastive", "val_log_loss"]].to_numpy()).all()
    assert history["train_loss"].iloc[-1] < history["train_loss"].iloc[0]
    assert (history["train_contrastive"] > 0).all()  # the SupCon term is on for MSAIC-Net
    train, _ = split
    p_train = predict_store(fitted.model, fitted.config, synth_store, train["record_id"]).probability
    assert roc_auc_score(train["mi_label"], p_train) > 0.55


def test_best_epoch_weights_and_validation_probabilities(
    fitted: FitResult, synth_store: Path, split: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    _, val = split
    assert fitted.best_epoch == int(fitted.history["val_auprc"].idxmax()) + 1
    assert not fitted.model.training
    assert fitted.val_probabilities.shape == (len(val),)
    assert ((fitted.val_probabilities >= 0) & (fitted.val_probabilities <= 1)).all()
    # the returned model is the best epoch's: it reproduces the stored validation probabilities
    again = predict_store(fitted.model, fitted.config, synth_store, val["record_id"])
    np.testing.assert_allclose(again.probability, fitted.val_probabilities, atol=1e-6)
    # the log-odds are those of the probabilities (mean over crops), in float64
    np.testing.assert_allclose(1 / (1 + np.exp(-again.logit)), again.probability, rtol=1e-5, atol=1e-7)
    best = fitted.history.iloc[fitted.best_epoch - 1]
    assert roc_auc_score(val["mi_label"], fitted.val_probabilities) == pytest.approx(best["val_auroc"])
    # inference on raw stored signals (the scoring path) agrees with the streamed evaluation
    ids = val["record_id"].head(8).tolist()
    stored = read_table(synth_store, "waveforms", filter=ds.field("record_id").isin(ids))
    order = [stored["record_id"].to_pylist().index(i) for i in ids]
    direct = fitted.predict_proba(signals_of(stored["signal"])[order])
    np.testing.assert_allclose(direct, fitted.val_probabilities[:8], atol=1e-5)


def test_same_seed_same_weights(synth_store: Path, split: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    train, val = (frame.sample(frac=0.5, random_state=0) for frame in split)
    config = tiny(
        "msaic", **{"train.epochs": 1, "data.balanced_sampling": True, "train.windows_per_epoch": 64}
    )
    a = fit(synth_store, train, val, config).model.state_dict()
    b = fit(synth_store, train, val, config).model.state_dict()
    c = fit(
        synth_store,
        train,
        val,
        tiny("msaic", **{"train.epochs": 1, "train.windows_per_epoch": 64, "train.seed": 1}),
    )
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
    assert any(not torch.equal(a[k], c.model.state_dict()[k]) for k in a if a[k].is_floating_point())


@pytest.mark.parametrize("name", ["resnet1d", "inception1d"])
def test_baselines_train_in_the_same_loop(
    name: str, synth_store: Path, split: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    train, val = split
    result = fit(synth_store, train, val, tiny(name, **{"train.epochs": 1, "train.windows_per_epoch": 64}))
    assert result.history["windows"].iloc[0] == 64
    assert (result.history["train_contrastive"] == 0).all()  # no projection head
    assert result.val_probabilities.shape == (len(val),)
    assert np.isfinite(result.val_probabilities).all()


def test_unlabelled_windows_are_refused(synth_store: Path, split: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    train, val = split
    unlabelled = train.assign(
        mi_label=train["mi_label"].astype("Float64").mask(train.index == train.index[0])
    )
    with pytest.raises(ValueError, match="without mi_label"):
        fit(synth_store, unlabelled, val, tiny("msaic"))


def test_training_starts_from_pretrained_weights(
    synth_store: Path, split: tuple[pd.DataFrame, pd.DataFrame], tmp_path: Path
) -> None:
    """`train.init_weights` (as `msaic_model.training.pretrain.save_weights` writes them) replaces the random
    initialization: with a vanishing learning rate the fitted weights stay those weights."""
    from msaic_model.training.pretrain import save_weights

    train, val = (frame.head(48) for frame in split)
    config = tiny("msaic", **{"train.epochs": 1, "train.windows_per_epoch": 32})
    pretrained = fit(synth_store, train, val, config.model_copy())
    path = save_weights(pretrained, tmp_path / "pretrained.safetensors")
    start = with_overrides(config, {"train.init_weights": str(path), "train.lr": 1e-12, "train.seed": 5})
    tuned = fit(synth_store, train, val, start).model.state_dict()
    fresh = fit(synth_store, train, val, with_overrides(config, {"train.lr": 1e-12, "train.seed": 5}))
    weights = [k for k, v in tuned.items() if v.is_floating_point() and "running" not in k]
    for key in weights:
        torch.testing.assert_close(tuned[key], pretrained.model.state_dict()[key], rtol=0, atol=1e-6)
    assert any(not torch.allclose(tuned[k], fresh.model.state_dict()[k]) for k in weights)


def test_a_fused_network_starts_its_waveform_branch_from_waveform_weights(
    measured_store: Path, tmp_path: Path
) -> None:
    """`train.init_weights` of a waveform MSAIC-Net given to a fused config (`msaic_fused_pretrained`):
    with a vanishing learning rate the fitted waveform branch stays the file's weights, while the
    feature head trains from its fresh start with the training set's normalization."""
    from msaic_model.training.pretrain import save_weights

    windows = read_table(measured_store, "records", columns=["record_id", "mi_label", "site"]).to_pandas()
    held_out = sorted(windows["site"].unique())[1]
    train, val = windows[windows["site"] != held_out].head(48), windows[windows["site"] == held_out]
    fast = {"train.epochs": 1, "train.windows_per_epoch": 32}
    waveform = fit(measured_store, train, val, tiny("msaic", **fast))
    path = save_weights(waveform, tmp_path / "waveform.safetensors")
    fused = tiny("msaic_fused_pretrained", **fast, **{"train.init_weights": str(path), "train.lr": 1e-12})
    tuned = fit(measured_store, train, val, fused).model.state_dict()
    start = waveform.model.state_dict()
    branch = [k for k, v in start.items() if v.is_floating_point() and "running" not in k]
    for key in branch:
        torch.testing.assert_close(tuned[key], start[key], rtol=0, atol=1e-6)
    assert set(tuned) - set(start) == {k for k in tuned if k.startswith("features.")}
    assert not torch.equal(tuned["features.scale"], torch.ones_like(tuned["features.scale"]))
