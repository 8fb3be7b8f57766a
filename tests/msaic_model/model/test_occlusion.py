"""How networks are probed lead by lead, for both input kinds, on real LUDB windows: `CropOcclusion`
(score explanations: the strongest crop of rhythm input, the single median beat, windows that give
the network nothing to read) and permutation importance on the prepared input."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import pyarrow.dataset as ds
import pytest
import torch

from msaic_model.model.config import ModelConfig
from msaic_model.model.data import crop_samples, prepare, prepare_array
from msaic_model.model.inference import CropOcclusion, predict_prepared, predict_proba
from msaic_model.model.net import build_model
from msaic_model.training.importance import permutation_importance
from tasks.store import read_table, signals_of
from tests.msaic_model.training.test_fit import tiny


@pytest.fixture(scope="module")
def windows(real_store: Path) -> np.ndarray:
    stored = read_table(real_store, "waveforms", filter=ds.field("site") == "ludb").sort_by("record_id")[:4]
    return signals_of(stored["signal"])


def _net(name: str) -> tuple[torch.nn.Module, ModelConfig]:
    config = tiny(name)
    torch.manual_seed(0)
    return build_model(config).eval(), config


def test_rhythm_occlusion_masks_the_strongest_crop_as_missing_leads(windows: np.ndarray) -> None:
    """Masking leads of the strongest crop equals preparing the raw window with those leads
    missing (NaN) and scoring the same crop; the probability is `predict_proba`'s."""
    net, config = _net("msaic_rhythm")
    occlusion = CropOcclusion.of(net, config, windows)
    np.testing.assert_allclose(occlusion.probability, predict_proba(net, config, windows), atol=1e-6)
    assert not occlusion.no_input.any()
    crop = crop_samples(config)
    mask = np.zeros((len(windows), 12), bool)
    mask[:, [1, 2, 5]] = True  # the inferior leads
    got = occlusion.masked_logit(np.arange(len(windows)), mask)
    with torch.inference_mode():
        for i, raw in enumerate(windows):
            tiles = prepare(raw[None], config)[0].unfold(-1, crop, crop).permute(1, 0, 2)  # (4, 12, crop)
            k = int(net(tiles).logits.argmax())
            assert occlusion.base_logit[i] == pytest.approx(float(net(tiles).logits[k]), abs=1e-5)
            missing = raw.copy()
            missing[[1, 2, 5]] = np.nan
            masked = prepare(missing[None], config)[0].unfold(-1, crop, crop).permute(1, 0, 2)
            assert got[i] == pytest.approx(float(net(masked[k : k + 1]).logits[0]), abs=1e-5)


def test_median_beat_occlusion_and_windows_without_input(windows: np.ndarray) -> None:
    """Median-beat input is one crop; a flat window (no beat) and one with every lead missing give
    the network nothing to read and are reported as such."""
    net, config = _net("msaic")
    flat = np.zeros_like(windows[:1])
    missing = np.full_like(windows[:1], np.nan)
    occlusion = CropOcclusion.of(net, config, np.concatenate([windows, flat, missing]))
    assert occlusion.no_input.tolist() == [False] * len(windows) + [True, True]
    x = prepare(windows, config)
    assert occlusion.crops.shape == (len(windows) + 2, 12, x.shape[-1])
    mask = np.zeros((len(windows), 12), bool)
    mask[:, 6:] = True  # the chest leads
    with torch.inference_mode():
        expected = net(x * torch.from_numpy(~mask)[:, :, None]).logits.numpy()
    np.testing.assert_allclose(occlusion.masked_logit(np.arange(len(windows)), mask), expected, atol=1e-5)


def test_fused_occlusion_keeps_each_windows_features(windows: np.ndarray) -> None:
    """A fused network's occluded crops are scored with their own window's features, which are
    never occluded (score explanations of the packaged default, a fused MSAIC-Net)."""
    net, config = _net("msaic_fused")
    rng = np.random.default_rng(0)
    features = rng.normal(size=(len(windows), len(config.feature_columns)))
    occlusion = CropOcclusion.of(net, config, windows, features)
    np.testing.assert_allclose(
        occlusion.probability, predict_proba(net, config, windows, features=features), atol=1e-6
    )
    mask = np.zeros((len(windows), 12), bool)
    mask[:, :6] = True  # the limb leads
    x = prepare(windows, config)
    f = torch.from_numpy(features.astype(np.float32))
    with torch.inference_mode():
        expected = net(x * torch.from_numpy(~mask)[:, :, None], f).logits.numpy()
        unfused = net(x * torch.from_numpy(~mask)[:, :, None], torch.zeros_like(f)).logits.numpy()
    rows = np.arange(len(windows))[::-1].copy()  # rows in any order keep their own features
    got = occlusion.masked_logit(rows, mask[rows])
    np.testing.assert_allclose(got, expected[rows], atol=1e-5)
    assert not np.allclose(got, unfused[rows], atol=1e-3)  # the features do enter


def test_importance_on_prepared_rhythm_input_equals_the_raw_path(windows: np.ndarray) -> None:
    """Networks are permuted on their prepared input (`lead_importance`); for rhythm input, whose
    preparation is lead by lead, that is the same as shuffling the stored leads and preparing again."""
    net, config = _net("msaic_rhythm")
    many = np.concatenate([windows] * 3)
    labels = np.array([0, 1] * (len(many) // 2))
    groups = {"inferior": [1, 2, 5], "V2": [7]}
    raw = permutation_importance(lambda s: predict_proba(net, config, s), many, labels, groups, 2, seed=1)
    prepared = permutation_importance(
        partial(predict_prepared, net, config), prepare_array(many, config), labels, groups, 2, seed=1
    )
    np.testing.assert_allclose(prepared["mean_drop"], raw["mean_drop"], atol=1e-6)
    assert prepared["group"].tolist() == raw["group"].tolist()


def test_feature_baseline_occlusion_measures_the_leads_left(windows: np.ndarray) -> None:
    """A feature baseline's explanation removes leads as missing and measures the window again,
    the gate's other judgements kept: without the four anterior leads the limb leads are still
    measured (the gate, run again, rejected every such window, so each removal of four leads read
    as "every feature missing")."""
    from data_contracts.feature_columns import FEATURE_COLUMNS
    from msaic_model.model.feature_baselines import fit_feature_model
    from msaic_model.training.registry import LoadedModel, extract_features
    from tasks.quality.gate import assess, load_profile

    columns = list(FEATURE_COLUMNS)
    measured = extract_features(windows).to_numpy(np.float64)
    rng = np.random.default_rng(0)
    x = np.concatenate([measured + rng.normal(0, 0.1, measured.shape) for _ in range(10)])
    model = fit_feature_model("logreg", x, np.arange(len(x)) % 2)
    loaded = LoadedModel(
        "logreg-test", 0.5, {"kind": "logreg", "feature_columns": columns}, feature_model=model
    )
    occlusion = loaded.occlusion(windows)
    removed = np.zeros((len(windows), 12), bool)
    removed[:, 6:10] = True  # V1-V4
    got = occlusion.masked_logit(np.arange(len(windows)), removed)

    occluded = windows.copy()
    occluded[removed] = np.nan
    assert all(v == "reject" for v in assess(occluded, load_profile()).verdict)  # what a fresh gate says
    left = loaded.measured_features(
        occluded, occlusion.quality.without_leads(np.arange(len(windows)), removed)
    )
    assert (
        np.isfinite(left[:, columns.index("r_amp_II")]).all()
        and np.isfinite(left[:, columns.index("qrs_ms")]).all()
    )
    assert np.isnan(left[:, columns.index("r_amp_V2")]).all()
    np.testing.assert_allclose(got, loaded.feature_scores(left).logit)
    nothing = loaded.feature_scores(np.full_like(left, np.nan)).logit
    assert not np.allclose(got, nothing)  # not the all-imputed log-odds
