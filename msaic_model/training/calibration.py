"""Calibration of a model's log-odds into a risk, fitted on the validation part only.

A network trained with class weights ranks well but its probabilities are not frequencies (and
saturate at 1.000 in float32). The calibrator maps the model's log-odds (`logit`, finite where the
probability reads 1) to a risk:
- Platt scaling: risk = σ(a·logit + b), a >= 0, fitted by maximum likelihood on Platt's smoothed
  targets ((positives + 1) / (positives + 2) for a positive, 1 / (negatives + 2) for a negative),
  which keep a and b finite when the validation part is separable;
- isotonic regression on the same targets: a non-decreasing step fit, kept as its breakpoints and
  interpolated linearly between them (flat beyond the first and last).
The rule (data_contracts/calibration.json): isotonic only when the validation part holds at least
`isotonic_min_per_class` positives and as many negatives and its mean log loss over a stratified
k-fold cross-validation within the validation part is lower than Platt's; otherwise Platt, whose
two parameters do not overfit a small part and which keeps distinct risks at the top of a worklist.
The result is a `tasks.store.model_files.Calibration` (applied at scoring without torch) and the figures
behind the choice, both recorded in thresholds.json.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import minimize
from sklearn.isotonic import IsotonicRegression
from sklearn.model_selection import StratifiedKFold

from data_contracts import load_json
from tasks.store.model_files import Calibration, RiskBands

CALIBRATION_FILE = "calibration.json"
LOG_LOSS_CLIP = 1e-7  # as the validation log loss of training (msaic_model.training.fit)


@dataclass(frozen=True)
class CalibrationConfig:
    """The versioned rule and bands (`data_contracts/calibration.json`)."""

    version: str
    isotonic_min_per_class: int
    cv_folds: int
    seed: int
    bands: RiskBands


def load_calibration_config() -> CalibrationConfig:
    raw = load_json(CALIBRATION_FILE)
    rule, bands = raw["rule"], raw["bands"]
    return CalibrationConfig(
        version=str(raw["version"]),
        isotonic_min_per_class=int(rule["isotonic_min_per_class"]),
        cv_folds=int(rule["cv_folds"]),
        seed=int(rule["seed"]),
        bands=RiskBands(tuple(float(c) for c in bands["cuts"]), tuple(str(n) for n in bands["names"])),
    )


def smoothed_targets(y: np.ndarray) -> np.ndarray:
    """Platt's targets: (N+ + 1) / (N+ + 2) for a positive, 1 / (N- + 2) for a negative."""
    y = np.asarray(y, dtype=np.int64)
    positives, negatives = int(y.sum()), int((1 - y).sum())
    return np.where(y == 1, (positives + 1) / (positives + 2), 1 / (negatives + 2))


def fit_platt(logit: np.ndarray, y: np.ndarray, bands: RiskBands) -> Calibration:
    """Platt scaling of log-odds against labels 0/1: (a >= 0, b) of least cross-entropy to the
    smoothed targets (L-BFGS-B with the analytic gradient)."""
    z, t = np.asarray(logit, dtype=np.float64), smoothed_targets(y)

    def loss(params: np.ndarray) -> tuple[float, np.ndarray]:
        s = params[0] * z + params[1]
        # −[t log σ(s) + (1 − t) log σ(−s)], written without overflow
        value = np.mean(t * np.logaddexp(0.0, -s) + (1 - t) * np.logaddexp(0.0, s))
        residual = np.exp(-np.logaddexp(0.0, -s)) - t  # σ(s) − t
        return float(value), np.array([np.mean(residual * z), np.mean(residual)])

    found = minimize(
        loss, np.array([1.0, 0.0]), jac=True, method="L-BFGS-B", bounds=[(0.0, None), (None, None)]
    )
    return Calibration("platt", bands, a=float(found.x[0]), b=float(found.x[1]))


def fit_isotonic(logit: np.ndarray, y: np.ndarray, bands: RiskBands) -> Calibration:
    """Isotonic regression of the smoothed targets on the log-odds, kept as its breakpoints."""
    fitted = IsotonicRegression(increasing=True, out_of_bounds="clip").fit(
        np.asarray(logit, dtype=np.float64), smoothed_targets(y)
    )
    return Calibration(
        "isotonic",
        bands,
        logit_knots=tuple(fitted.X_thresholds_.tolist()),
        risk_knots=tuple(np.clip(fitted.y_thresholds_, 0.0, 1.0).tolist()),
    )


FITTERS = {"platt": fit_platt, "isotonic": fit_isotonic}


def log_loss(y: np.ndarray, risk: np.ndarray) -> float:
    """Mean cross-entropy of risks against labels 0/1 (risks clipped to [1e-7, 1 − 1e-7])."""
    p = np.clip(np.asarray(risk, dtype=np.float64), LOG_LOSS_CLIP, 1 - LOG_LOSS_CLIP)
    return float(-np.mean(np.where(np.asarray(y) == 1, np.log(p), np.log1p(-p))))


def cross_validated(
    logit: np.ndarray, y: np.ndarray, config: CalibrationConfig
) -> dict[str, dict[str, float]]:
    """Per method, the mean held-out log loss and Brier score over a stratified k-fold split of
    these (validation) records: each fold calibrated on the others."""
    z, y = np.asarray(logit, dtype=np.float64), np.asarray(y, dtype=np.int64)
    folds = StratifiedKFold(config.cv_folds, shuffle=True, random_state=config.seed).split(z, y)
    held_out = {name: np.empty(len(z)) for name in FITTERS}
    for fit_rows, test_rows in folds:
        for name, fitter in FITTERS.items():
            held_out[name][test_rows] = fitter(z[fit_rows], y[fit_rows], config.bands).risk(z[test_rows])
    return {
        name: {"log_loss": log_loss(y, risk), "brier": float(np.mean((risk - y) ** 2))}
        for name, risk in held_out.items()
    }


def calibrate(
    logit: np.ndarray, y: np.ndarray, config: CalibrationConfig
) -> tuple[Calibration, dict[str, Any]]:
    """The calibrator of these validation log-odds by the rule of the module docstring, and the
    figures behind the choice (counts, cross-validated log loss and Brier per method, reason)."""
    z, y = np.asarray(logit, dtype=np.float64), np.asarray(y, dtype=np.int64)
    positives, negatives = int(y.sum()), int((1 - y).sum())
    report: dict[str, Any] = {
        "fit_on": "val",
        "val_records": len(y),
        "val_positives": positives,
        "config_version": config.version,
        "isotonic_min_per_class": config.isotonic_min_per_class,
    }
    if min(positives, negatives) < config.isotonic_min_per_class:
        method = "platt"
        report["reason"] = (
            f"{positives} positives and {negatives} negatives in the validation part: isotonic needs "
            f"{config.isotonic_min_per_class} of each, Platt's two parameters do not"
        )
    else:
        scores = cross_validated(z, y, config)
        method = "isotonic" if scores["isotonic"]["log_loss"] < scores["platt"]["log_loss"] else "platt"
        report["cross_validation"] = {"folds": config.cv_folds, **scores}
        report["reason"] = f"lower {config.cv_folds}-fold cross-validated log loss within the validation part"
    return FITTERS[method](z, y, config.bands), report
