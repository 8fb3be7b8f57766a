"""Calibration of log-odds into a risk on data whose true calibration is known: Platt recovers a
logistic miscalibration, isotonic a step, the rule picks each where it should and Platt where the
validation part is small; risks are monotone in the probability, the bands cut where the
versioned file says, a window's log-odds stay finite where its probability reads 1, and a
calibration read back from thresholds.json is checked like the threshold."""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from msaic_model.model.inference import WindowScores, window_logit
from msaic_model.training.calibration import calibrate, fit_isotonic, fit_platt, load_calibration_config
from tasks.store.model_files import Calibration, ModelError, RiskBands, read_calibration

CONFIG = load_calibration_config()


def _labels(z: np.ndarray, p_true: np.ndarray, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).random(z.size) < p_true).astype(int)


@pytest.fixture(scope="module")
def logistic() -> tuple[np.ndarray, np.ndarray]:
    """An over-confident score: the true risk is σ(0.5·logit − 1)."""
    z = np.random.default_rng(0).normal(0, 3, 20_000)
    return z, _labels(z, 1 / (1 + np.exp(-(0.5 * z - 1))), seed=1)


@pytest.fixture(scope="module")
def step() -> tuple[np.ndarray, np.ndarray]:
    """A score whose true risk is a step: 0.2 below logit 0, 0.8 from 0 on (no logistic fits it)."""
    z = np.random.default_rng(2).normal(0, 3, 20_000)
    return z, _labels(z, np.where(z < 0, 0.2, 0.8), seed=3)


def test_platt_recovers_a_known_miscalibration(logistic: tuple[np.ndarray, np.ndarray]) -> None:
    z, y = logistic
    fitted = fit_platt(z, y, CONFIG.bands)
    assert fitted.a == pytest.approx(0.5, abs=0.03) and fitted.b == pytest.approx(-1.0, abs=0.05)
    calibration, report = calibrate(z, y, CONFIG)
    assert calibration.method == "platt"  # the truth is logistic: isotonic does not beat it held out
    cv = report["cross_validation"]
    assert cv["platt"]["log_loss"] < cv["isotonic"]["log_loss"] and cv["folds"] == CONFIG.cv_folds
    grid = np.linspace(-6, 6, 13)
    np.testing.assert_allclose(calibration.risk(grid), 1 / (1 + np.exp(-(0.5 * grid - 1))), atol=0.02)


def test_isotonic_recovers_a_step_and_is_chosen_for_it(step: tuple[np.ndarray, np.ndarray]) -> None:
    z, y = step
    calibration, report = calibrate(z, y, CONFIG)
    assert calibration.method == "isotonic"
    assert (
        report["cross_validation"]["isotonic"]["log_loss"] < report["cross_validation"]["platt"]["log_loss"]
    )
    np.testing.assert_allclose(calibration.risk(np.array([-5.0, -1.0])), 0.2, atol=0.03)
    np.testing.assert_allclose(calibration.risk(np.array([1.0, 5.0])), 0.8, atol=0.03)
    assert calibration.risk(np.array([-50.0]))[0] == calibration.risk_knots[0]  # flat beyond the data
    assert calibration.risk_knots[0] > 0 and calibration.risk_knots[-1] < 1  # smoothed targets


def test_a_small_validation_part_gets_platt_with_distinct_risks_at_the_top() -> None:
    """12 positives: too few for isotonic; the part is separable, yet a and b stay finite."""
    rng = np.random.default_rng(4)
    z = np.concatenate([rng.normal(-6, 1.5, 40), rng.normal(9, 2, 12)])
    y = np.repeat([0, 1], [40, 12])
    calibration, report = calibrate(z, y, CONFIG)
    assert calibration.method == "platt" and "cross_validation" not in report
    assert "12 positives and 40 negatives" in report["reason"]
    assert report["val_records"] == 52 and report["val_positives"] == 12
    assert 0 < calibration.a < 10 and np.isfinite(calibration.b)
    top = calibration.risk(np.array([16.0, 18.0, 20.0, 25.0]))  # probabilities that all read 1.000
    assert (np.diff(top) > 0).all() and (top < 1).all()


def test_risk_is_monotone_in_the_probability(
    logistic: tuple[np.ndarray, np.ndarray], step: tuple[np.ndarray, np.ndarray]
) -> None:
    p = np.linspace(1e-6, 1 - 1e-6, 2001)
    z = np.log(p) - np.log1p(-p)
    for calibration in (fit_platt(*logistic, CONFIG.bands), fit_isotonic(*step, CONFIG.bands)):
        risk = calibration.risk(z)
        assert (np.diff(risk) >= 0).all() and ((risk >= 0) & (risk <= 1)).all()
    noise = np.random.default_rng(5).normal(0, 3, 4000)  # a score that says nothing about labels
    flat = fit_platt(noise, _labels(noise, np.full(noise.size, 0.3), seed=6), CONFIG.bands)
    assert flat.a < 0.02 and flat.risk(np.array([-5.0, 5.0])) == pytest.approx([0.3, 0.3], abs=0.03)
    worse = fit_platt(-logistic[0], logistic[1], CONFIG.bands)  # anti-correlated: never a falling risk
    assert worse.a == 0


def test_bands_from_the_versioned_file() -> None:
    assert CONFIG.bands == RiskBands((0.1, 0.5), ("low", "intermediate", "high"))
    risk = np.array([0.0, 0.0999, 0.1, 0.3, 0.4999, 0.5, 0.97, 1.0])
    assert CONFIG.bands.of(risk).tolist() == ["low", "low"] + ["intermediate"] * 3 + ["high"] * 3


def test_window_logit_is_the_log_odds_of_the_mean_probability() -> None:
    crops = torch.tensor([[0.3, -1.2, 2.0], [40.0, 35.0, 38.0], [-3.0, -3.0, -3.0]])
    scores = WindowScores.of(crops)
    mean = torch.sigmoid(crops.double()).mean(dim=1).numpy()
    np.testing.assert_allclose(scores.logit[[0, 2]], np.log(mean / (1 - mean))[[0, 2]], rtol=1e-12)
    assert scores.probability[1] == 1.0 and 34 < scores.logit[1] < 41  # saturated, yet finite and ranked
    assert window_logit(torch.tensor([[7.5]]))[0] == pytest.approx(7.5, abs=1e-12)  # one crop: its logit


def _entry(calibration: Calibration) -> dict[str, Any]:
    return calibration.to_json() | {"chosen_by": {"fit_on": "val"}}


def test_a_calibration_reads_back_as_it_was_written(step: tuple[np.ndarray, np.ndarray]) -> None:
    z = np.linspace(-8, 8, 50)
    for calibration in (fit_platt(*step, CONFIG.bands), fit_isotonic(*step, CONFIG.bands)):
        again = read_calibration(_entry(calibration), Path("m"))
        np.testing.assert_array_equal(again.risk(z), calibration.risk(z))
        assert again.bands == calibration.bands


def _edit(path: tuple[str, ...], value: Any) -> Any:
    def apply(entry: dict[str, Any]) -> None:
        node = entry
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return apply


PLATT = Calibration("platt", CONFIG.bands, a=0.6, b=-0.4)
ISOTONIC = replace(PLATT, method="isotonic", logit_knots=(-2.0, 0.0, 3.0), risk_knots=(0.1, 0.4, 0.9))
BROKEN = {
    "unknown method": (PLATT, _edit(("method",), "beta"), "is not one of platt, isotonic"),
    "another input": (PLATT, _edit(("input",), "probability"), "on the logit"),
    "falling Platt slope": (PLATT, _edit(("parameters", "a"), -0.5), "a >= 0"),
    "NaN intercept": (PLATT, _edit(("parameters", "b"), float("nan")), "finite b"),
    "slope as text": (PLATT, _edit(("parameters", "a"), "0.6"), "a >= 0"),
    "knots out of order": (ISOTONIC, _edit(("parameters", "logit"), [0.0, -2.0, 3.0]), "increasing logits"),
    "falling risks": (ISOTONIC, _edit(("parameters", "risk"), [0.5, 0.4, 0.9]), "non-decreasing risks"),
    "risk above 1": (ISOTONIC, _edit(("parameters", "risk"), [0.1, 0.4, 1.5]), "in \\[0, 1\\]"),
    "unequal knots": (ISOTONIC, _edit(("parameters", "risk"), [0.1, 0.4]), "as many finite logits"),
    "cut at 1": (PLATT, _edit(("bands", "cuts"), [0.1, 1.0]), "strictly between 0 and 1"),
    "cuts out of order": (PLATT, _edit(("bands", "cuts"), [0.5, 0.1]), "rising probabilities"),
    "a name short": (PLATT, _edit(("bands", "names"), ["low", "high"]), "need 3 names for 2 cuts"),
    "no bands": (PLATT, lambda e: e.pop("bands"), "lacks its parameters or bands"),
}


@pytest.mark.parametrize("case", BROKEN)
def test_a_tampered_calibration_is_refused_with_one_line(case: str) -> None:
    calibration, edit, message = BROKEN[case]
    entry = copy.deepcopy(_entry(calibration))
    edit(entry)
    with pytest.raises(ModelError, match=message) as refused:
        read_calibration(entry, Path("models/m"))
    assert "\n" not in str(refused.value) and "models/m: calibration" in str(refused.value)
