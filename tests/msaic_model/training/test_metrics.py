"""Metrics against scikit-learn on known inputs, bootstrap intervals, single-class subsets."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve

from msaic_model.training.metrics import METRICS, MetricConfig, compute_metrics, difference, mean_of

CONFIG = MetricConfig(bootstrap_resamples=400, confidence=0.95, ece_bins=10)


@pytest.fixture(scope="module")
def scored() -> tuple[np.ndarray, np.ndarray]:
    """Labels and rounded probabilities (many ties) with real but imperfect separation."""
    rng = np.random.default_rng(3)
    y = (rng.random(400) < 0.3).astype(int)
    p = np.round(np.clip(0.25 * y + 0.75 * rng.random(400), 0, 1), 2)
    return y, p


def _ece_reference(y: np.ndarray, p: np.ndarray, bins: int) -> float:
    prob_true, prob_pred = calibration_curve(y, p, n_bins=bins, strategy="uniform")
    counts = np.bincount(np.searchsorted(np.linspace(0, 1, bins + 1)[1:-1], p), minlength=bins)
    return float(np.sum(counts[counts > 0] / y.size * np.abs(prob_true - prob_pred)))


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.71])
def test_point_estimates_match_scikit_learn(scored: tuple[np.ndarray, np.ndarray], threshold: float) -> None:
    y, p = scored
    result = compute_metrics(y, p, threshold, CONFIG)
    called = (p >= threshold).astype(int)
    expected = {
        "auroc": skm.roc_auc_score(y, p),
        "auprc": skm.average_precision_score(y, p),
        "sensitivity": skm.recall_score(y, called),
        "specificity": skm.recall_score(1 - y, 1 - called),
        "f1": skm.f1_score(y, called),
        "brier": skm.brier_score_loss(y, p),
        "ece": _ece_reference(y, p, CONFIG.ece_bins),
    }
    for name in METRICS:
        assert result.point[name] == pytest.approx(expected[name], abs=1e-12), name


def test_bootstrap_intervals_are_stratified_and_cover_the_estimate(
    scored: tuple[np.ndarray, np.ndarray],
) -> None:
    y, p = scored
    result = compute_metrics(y, p, 0.5, CONFIG, seed=1)
    report = result.to_dict()
    assert report["n"] == 400 and report["positives"] == int(y.sum())
    for name in METRICS:
        assert result.replicates[name].shape == (CONFIG.bootstrap_resamples,)
        value, low, high = (report[name][k] for k in ("value", "low", "high"))
        assert low <= value <= high and low < high, name
    # one replicate recomputed by hand: the same draw reproduces scikit-learn's AUROC of the resample
    rng = np.random.default_rng(1)
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    draws = CONFIG.bootstrap_resamples  # all replicates of one class are drawn, then the other class
    neg_counts = rng.multinomial(neg.size, np.full(neg.size, 1 / neg.size), size=draws)[0]
    pos_counts = rng.multinomial(pos.size, np.full(pos.size, 1 / pos.size), size=draws)[0]
    idx = np.concatenate([np.repeat(neg, neg_counts), np.repeat(pos, pos_counts)])
    assert result.replicates["auroc"][0] == pytest.approx(skm.roc_auc_score(y[idx], p[idx]))
    assert result.replicates["auprc"][0] == pytest.approx(skm.average_precision_score(y[idx], p[idx]))
    # the same seed gives the same intervals; another seed other replicates
    assert compute_metrics(y, p, 0.5, CONFIG, seed=1).to_dict() == report
    assert compute_metrics(y, p, 0.5, CONFIG, seed=2).interval("auroc") != result.interval("auroc")


def test_single_class_and_empty_subsets_give_none_not_errors() -> None:
    negatives = compute_metrics(np.zeros(12, int), np.linspace(0, 1, 12), 0.5, CONFIG).to_dict()
    for name in ("auroc", "auprc", "sensitivity"):
        assert negatives[name] == {"value": None, "low": None, "high": None}
    assert negatives["specificity"]["value"] == pytest.approx(0.5)
    p = np.linspace(0, 1, 12)  # with every label 0, Brier is the mean of p², and every bin's gap its mean p
    assert negatives["brier"]["value"] == pytest.approx(np.mean(p**2))
    assert negatives["ece"]["value"] == pytest.approx(np.mean(p))
    positives = compute_metrics(np.ones(5, int), np.full(5, 0.9), 0.5, CONFIG).to_dict()
    assert positives["auroc"]["value"] is None and positives["specificity"]["value"] is None
    assert positives["sensitivity"]["value"] == 1.0 and positives["auprc"]["value"] == 1.0
    empty = compute_metrics(np.zeros(0, int), np.zeros(0), 0.5, CONFIG).to_dict()
    assert empty["n"] == 0 and all(empty[name]["value"] is None for name in METRICS)


def test_difference_of_two_sets_has_an_interval(scored: tuple[np.ndarray, np.ndarray]) -> None:
    y, p = scored
    good = compute_metrics(y, p, 0.5, CONFIG, seed=4)
    noisy = np.clip(p + np.random.default_rng(0).normal(0, 0.3, p.size), 0, 1)
    bad = compute_metrics(y, noisy, 0.5, CONFIG, seed=5)
    gap = difference(bad, good)
    assert gap["auroc"]["value"] == pytest.approx(bad.point["auroc"] - good.point["auroc"])
    assert gap["auroc"]["low"] < gap["auroc"]["value"] < gap["auroc"]["high"] < 0


def test_bad_inputs_are_refused_clearly() -> None:
    with pytest.raises(ValueError, match="0/1"):
        compute_metrics(np.array([0, 2]), np.array([0.1, 0.2]), 0.5, CONFIG)
    with pytest.raises(ValueError, match="equal"):
        compute_metrics(np.array([0, 1]), np.array([0.1]), 0.5, CONFIG)


def test_mean_of_repeats_averages_points_and_resamples(scored: tuple[np.ndarray, np.ndarray]) -> None:
    """Repeats scored on the same records with one seed share their resamples: the mean's interval
    is the interval of the mean, and a paired difference of identical scores is exactly 0."""
    y, p = scored
    rng = np.random.default_rng(1)
    repeats = [
        compute_metrics(y, np.clip(p + rng.normal(0, 0.05, p.size), 0, 1), 0.5, CONFIG, 7) for _ in range(3)
    ]
    mean = mean_of(repeats)
    assert mean.point["auroc"] == pytest.approx(np.mean([r.point["auroc"] for r in repeats]))
    np.testing.assert_allclose(
        mean.replicates["auprc"], np.mean([r.replicates["auprc"] for r in repeats], axis=0)
    )
    low, high = mean.interval("auroc")
    assert low < mean.point["auroc"] < high
    same = difference(compute_metrics(y, p, 0.5, CONFIG, 7), compute_metrics(y, p, 0.5, CONFIG, 7))
    assert same["auroc"] == {"value": 0.0, "low": 0.0, "high": 0.0}
    with pytest.raises(ValueError, match="same records"):
        mean_of([repeats[0], compute_metrics(y[:-1], p[:-1], 0.5, CONFIG, 7)])
