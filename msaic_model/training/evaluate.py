"""Evaluation of MI probabilities on a split: the threshold, metrics by site and device, and the
distribution-shift gap.

The decision threshold is chosen on the validation part only (the highest probability that keeps
validation sensitivity at or above the target of `data_contracts/evaluation.json`) and then
applied unchanged to the test part. Test metrics are reported overall, per site and per device;
when the split holds sites (devices) out, the test part is also reported as its in-distribution
share (patients of the training sites) and its held-out share, and held-out minus
in-distribution is the distribution-shift figure, with a bootstrap interval.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from msaic_model.training.metrics import MetricConfig, MetricResult, compute_metrics, difference
from msaic_model.training.splits import SplitConfig, load_split_config, read_evaluation_file

PREDICTION_COLUMNS = ["record_id", "site", "device", "part", "held_out", "mi_label", "probability"]


@dataclass(frozen=True)
class EvaluationConfig:
    """The versioned evaluation file (`data_contracts/evaluation.json` or another of its layout)."""

    version: str
    splits: SplitConfig
    target_sensitivity: float
    metrics: MetricConfig
    importance_repeats: int
    importance_max_records: int


def load_evaluation_config(path: Path | None = None) -> EvaluationConfig:
    raw = read_evaluation_file(path)
    return EvaluationConfig(
        version=str(raw["version"]),
        splits=load_split_config(path),
        target_sensitivity=float(raw["threshold"]["target_sensitivity"]),
        metrics=MetricConfig(**raw["metrics"]),
        importance_repeats=int(raw["importance"]["repeats"]),
        importance_max_records=int(raw["importance"]["max_records"]),
    )


def choose_threshold(labels: np.ndarray, probabilities: np.ndarray, target_sensitivity: float) -> float:
    """The highest threshold t with sensitivity(p >= t) >= target on these (validation) records."""
    positives = np.sort(np.asarray(probabilities, dtype=np.float64)[np.asarray(labels) == 1])[::-1]
    if positives.size == 0:
        raise ValueError("the validation part has no MI-positive record: cannot choose a threshold")
    needed = max(1, math.ceil(target_sensitivity * positives.size - 1e-9))
    return float(positives[needed - 1])


def validation_threshold(predictions: pd.DataFrame, config: EvaluationConfig) -> dict[str, object]:
    """The threshold and how it was chosen, from the `val` rows of a prediction frame only."""
    val = predictions[predictions["part"] == "val"]
    y, p = val["mi_label"].to_numpy(int), val["probability"].to_numpy(float)
    threshold = choose_threshold(y, p, config.target_sensitivity)
    return {
        "threshold": threshold,
        "rule": "probability >= threshold is MI-positive",
        "chosen_on": "val",
        "target_sensitivity": config.target_sensitivity,
        "val_sensitivity": float(np.mean(p[y == 1] >= threshold)),
        "val_specificity": float(np.mean(p[y == 0] < threshold)) if (y == 0).any() else None,
        "val_records": len(val),
        "evaluation_config_version": config.version,
    }


def evaluate_predictions(
    predictions: pd.DataFrame, threshold: float, config: EvaluationConfig, seed: int = 0
) -> dict[str, object]:
    """Metrics with intervals at `threshold`: validation (for reference), then test overall, per
    site, per device, in-distribution vs held-out and their gap (None without held-out groups)."""
    missing = set(PREDICTION_COLUMNS) - set(predictions.columns)
    if missing:
        raise ValueError(f"prediction frame lacks {', '.join(sorted(missing))}")
    score = _scorer(threshold, config.metrics, seed)
    test = predictions[predictions["part"] == "test"]
    held = test[test["held_out"].astype(bool)]
    seen = test[~test["held_out"].astype(bool)]
    report: dict[str, object] = {
        "threshold": threshold,
        "validation": score(predictions[predictions["part"] == "val"]).to_dict(),
        "test": score(test).to_dict(),
        "per_site": {site: score(g).to_dict() for site, g in test.groupby("site", sort=True)},
        "per_device": {dev: score(g).to_dict() for dev, g in test.groupby("device", sort=True)},
    }
    if held.empty or seen.empty:
        report["shift"] = None
    else:
        held_result, seen_result = score(held), score(seen)
        report["shift"] = {
            "held_out_sites": sorted(set(held["site"])),
            "held_out_devices": sorted(set(held["device"])),
            "in_distribution": seen_result.to_dict(),
            "held_out": held_result.to_dict(),
            "gap": difference(held_result, seen_result),
        }
    return report


def _scorer(threshold: float, config: MetricConfig, seed: int) -> Callable[[pd.DataFrame], MetricResult]:
    def score(frame: pd.DataFrame) -> MetricResult:
        y = frame["mi_label"].to_numpy(int)
        return compute_metrics(y, frame["probability"].to_numpy(float), threshold, config, seed)

    return score


def pooled_out_of_fold(
    folds: list[tuple[pd.DataFrame, float]], config: EvaluationConfig, seed: int = 0
) -> dict[str, object]:
    """Cross-validation figure: the test rows of every fold (each record tested once, by the model
    that never saw it) pooled, with bootstrap intervals, by window and by patient (a patient's
    probability is the mean over its windows, its label the max: windows of one patient are not
    independent, so the patient figure is the one to quote when patients have several windows).
    AUROC, AUPRC, Brier and ECE rank or calibrate the pooled probabilities; sensitivity,
    specificity and F1 count each window (patient) as called at its own fold's validation
    threshold. Per-fold AUROC (by window) is listed alongside."""
    tests = [frame[frame["part"] == "test"].assign(threshold=t) for frame, t in folds]
    pooled = pd.concat(tests, ignore_index=True)
    if not pooled["record_id"].is_unique:
        raise ValueError("a record is in the test part of more than one fold: not a cross-validation")
    patients = by_patient(pooled)
    score = _scorer(0.5, config.metrics, seed)
    return {
        "folds": len(folds),
        "windows": _pooled_metrics(pooled, config.metrics, seed),
        "patients": _pooled_metrics(patients, config.metrics, seed),
        "per_fold": [
            {"n": len(t), "positives": int(t["mi_label"].sum()), "threshold": float(t["threshold"].iloc[0])}
            | {"auroc": score(t).to_dict()["auroc"]}
            for t in tests
        ],
    }


def by_patient(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per patient, sorted by `patient_key`: its label (the max over its windows), its
    probability (the mean over its windows) and the first `threshold` where the frame has one."""
    columns = {"mi_label": ("mi_label", "max"), "probability": ("probability", "mean")}
    if "threshold" in frame.columns:
        columns["threshold"] = ("threshold", "first")
    return frame.groupby("patient_key", sort=True).agg(**columns)


def _pooled_metrics(frame: pd.DataFrame, config: MetricConfig, seed: int) -> dict[str, object]:
    """Ranking metrics of the probabilities, and threshold metrics of the calls at each row's own
    threshold (the calls as 0/1 scores against 0.5)."""
    y, p = frame["mi_label"].to_numpy(int), frame["probability"].to_numpy(float)
    called = (p >= frame["threshold"].to_numpy(float)).astype(np.float64)
    ranked = compute_metrics(y, p, 0.5, config, seed).to_dict()
    at_threshold = compute_metrics(y, called, 0.5, config, seed).to_dict()
    return {
        **{k: ranked[k] for k in ("n", "positives", "auroc", "auprc", "brier", "ece")},
        **{k: at_threshold[k] for k in ("sensitivity", "specificity", "f1")},
    }
