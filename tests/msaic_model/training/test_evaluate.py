"""Threshold on validation only, metrics by part, site and device, the held-out shift gap."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from msaic_model.training.evaluate import (
    choose_threshold,
    evaluate_predictions,
    load_evaluation_config,
    pooled_out_of_fold,
    validation_threshold,
)
from msaic_model.training.metrics import MetricConfig

CONFIG = load_evaluation_config()
FAST = replace(CONFIG, metrics=MetricConfig(200, 0.95, 10))


@pytest.fixture(scope="module")
def predictions() -> pd.DataFrame:
    """Val and test rows over three sites (site_c held out, scored worse, with no positive in one
    device), probabilities informative in-distribution."""
    rng = np.random.default_rng(7)
    n = 600
    site = rng.choice(["site_a", "site_b", "site_c"], n)
    part = np.where(site == "site_c", "test", rng.choice(["val", "test"], n))
    y = (rng.random(n) < 0.3).astype(int)
    noise = np.where(site == "site_c", 0.6, 0.25)
    p = np.clip(0.35 + 0.3 * y + rng.normal(0, noise), 0, 1)
    device = np.where(site == "site_c", "gamma", np.where(rng.random(n) < 0.5, "alpha", "beta"))
    device[(site == "site_c") & (rng.random(n) < 0.1)] = "rare"
    y[device == "rare"] = 0
    return pd.DataFrame(
        {
            "record_id": [f"r{i}" for i in range(n)],
            "site": site,
            "device": device,
            "part": part,
            "held_out": site == "site_c",
            "mi_label": y,
            "probability": p,
        }
    )


def test_threshold_reaches_the_target_sensitivity_with_the_highest_cut() -> None:
    y = np.array([1, 1, 1, 1, 1, 0, 0, 0])
    p = np.array([0.9, 0.8, 0.7, 0.6, 0.2, 0.5, 0.1, 0.65])
    assert choose_threshold(y, p, 0.8) == 0.6  # 4 of 5 positives at p >= 0.6
    assert choose_threshold(y, p, 0.81) == 0.2
    assert choose_threshold(y, p, 0.2) == 0.9
    with pytest.raises(ValueError, match="no MI-positive"):
        choose_threshold(np.zeros(4, int), np.linspace(0, 1, 4), 0.9)


def test_threshold_never_looks_at_the_test_part(predictions: pd.DataFrame) -> None:
    chosen = validation_threshold(predictions, CONFIG)
    val = predictions[predictions["part"] == "val"]
    assert chosen["threshold"] == choose_threshold(
        val["mi_label"], val["probability"], CONFIG.target_sensitivity
    )
    assert chosen["chosen_on"] == "val" and chosen["val_records"] == len(val)
    assert chosen["val_sensitivity"] >= CONFIG.target_sensitivity
    scrambled = predictions.copy()
    is_test = scrambled["part"] == "test"
    scrambled.loc[is_test, "probability"] = np.random.default_rng(0).random(int(is_test.sum()))
    scrambled.loc[is_test, "mi_label"] = 1 - scrambled.loc[is_test, "mi_label"]
    assert validation_threshold(scrambled, CONFIG) == chosen
    shifted = predictions.assign(
        probability=np.where(~is_test, predictions["probability"] * 0.5, predictions["probability"])
    )
    assert validation_threshold(shifted, CONFIG)["threshold"] == pytest.approx(chosen["threshold"] * 0.5)


def test_metrics_by_part_site_device_and_shift(predictions: pd.DataFrame) -> None:
    threshold = validation_threshold(predictions, CONFIG)["threshold"]
    report = evaluate_predictions(predictions, threshold, FAST, seed=3)
    test = predictions[predictions["part"] == "test"]
    val = predictions[predictions["part"] == "val"]
    assert report["threshold"] == threshold
    assert report["test"]["n"] == len(test) and report["validation"]["n"] == len(val)
    assert report["test"]["auroc"]["value"] == pytest.approx(
        roc_auc_score(test["mi_label"], test["probability"])
    )
    assert report["validation"]["auprc"]["value"] == pytest.approx(
        average_precision_score(val["mi_label"], val["probability"])
    )
    assert set(report["per_site"]) == {"site_a", "site_b", "site_c"}
    assert set(report["per_device"]) == {"alpha", "beta", "gamma", "rare"}
    a = test[test["site"] == "site_a"]
    assert report["per_site"]["site_a"]["auroc"]["value"] == pytest.approx(
        roc_auc_score(a["mi_label"], a["probability"])
    )
    rare = report["per_device"]["rare"]  # no positive: undefined metrics are None, others computed
    assert rare["auroc"]["value"] is None and rare["sensitivity"]["value"] is None
    negatives = test[test["device"] == "rare"]
    assert rare["specificity"]["value"] == pytest.approx((negatives["probability"] < threshold).mean())
    shift = report["shift"]
    assert shift["held_out_sites"] == ["site_c"]
    held, seen = test[test["held_out"]], test[~test["held_out"]]
    assert shift["held_out"]["n"] == len(held) and shift["in_distribution"]["n"] == len(seen)
    gap = shift["gap"]["auroc"]
    assert gap["value"] == pytest.approx(
        roc_auc_score(held["mi_label"], held["probability"])
        - roc_auc_score(seen["mi_label"], seen["probability"])
    )
    assert gap["low"] < gap["value"] < gap["high"] < 0  # the noisier held-out site is worse


def test_no_shift_figure_without_held_out_records(predictions: pd.DataFrame) -> None:
    report = evaluate_predictions(predictions.assign(held_out=False), 0.5, FAST)
    assert report["shift"] is None
    with pytest.raises(ValueError, match="lacks"):
        evaluate_predictions(predictions.drop(columns="device"), 0.5, FAST)


def test_pooled_out_of_fold_by_window_and_by_patient() -> None:
    """Three folds of test rows (patients with one to three windows); the pooled figures against
    scikit-learn and a hand count at each fold's own threshold."""
    rng = np.random.default_rng(3)
    patient = np.repeat(np.arange(60), rng.integers(1, 4, 60))
    label = (np.arange(60) % 4 == 0).astype(int)[patient]
    frame = pd.DataFrame(
        {
            "record_id": [f"r{i}" for i in range(patient.size)],
            "patient_key": [f"p{k:02d}" for k in patient],
            "fold": patient % 3,
            "mi_label": label,
            "probability": np.clip(0.3 + 0.3 * label + rng.normal(0, 0.2, patient.size), 0, 1),
        }
    )
    thresholds = [0.4, 0.5, 0.6]
    folds = [
        (frame.assign(part=np.where(frame["fold"] == k, "test", "val")), thresholds[k]) for k in range(3)
    ]
    pooled = pooled_out_of_fold(folds, FAST, seed=1)
    windows, patients = pooled["windows"], pooled["patients"]
    assert pooled["folds"] == 3 and windows["n"] == patient.size and patients["n"] == 60
    assert windows["auroc"]["value"] == pytest.approx(roc_auc_score(frame["mi_label"], frame["probability"]))
    assert windows["auprc"]["value"] == pytest.approx(
        average_precision_score(frame["mi_label"], frame["probability"])
    )
    per_patient = frame.groupby("patient_key").agg(y=("mi_label", "max"), p=("probability", "mean"))
    assert patients["auroc"]["value"] == pytest.approx(roc_auc_score(per_patient["y"], per_patient["p"]))
    called = frame["probability"] >= np.take(thresholds, frame["fold"])
    sensitivity = called[frame["mi_label"] == 1].mean()
    assert windows["sensitivity"]["value"] == pytest.approx(sensitivity)
    assert windows["auroc"]["low"] <= windows["auroc"]["value"] <= windows["auroc"]["high"]
    assert [f["threshold"] for f in pooled["per_fold"]] == thresholds
    twice = [folds[0], (folds[0][0], 0.5)]
    with pytest.raises(ValueError, match="more than one fold"):
        pooled_out_of_fold(twice, FAST)
