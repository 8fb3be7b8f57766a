"""The per-record feature path on real LUDB records: delineation against the cardiologists'
annotations (looser bounds than the bench targets, tight enough to fail on broken code), nulls for
unusable leads, clear skips for records without beats."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import signal as sps

from data_contracts.feature_columns import LEAD_MEASURES, RECORD_MEASURES, lead_column
from data_contracts.leads import CANONICAL_LEADS
from data_contracts.schemas import N_LEADS
from tasks.features.beats import FeatureSkip, beat_median, cleaning_band, zero_phase
from tasks.features.measure import (
    criteria_config,
    measure_beats,
    measure_record,
    prominent_peaks,
    qrs_waves,
    usable_leads,
)
from tasks.features.reference import BOUNDARIES, INTERVALS, compare, read_ludb
from tests.conftest import LUDB

SAMPLE = [LUDB / str(k) for k in range(1, 201, 8)]  # 25 records across the database
ALL = np.ones(N_LEADS, bool)


@pytest.fixture(scope="module")
def ludb_errors() -> dict[str, np.ndarray]:
    errors: dict[str, list[np.ndarray]] = {k: [] for k in (*BOUNDARIES, *INTERVALS)}
    for path in SAMPLE:
        beats, d = measure_beats(read_ludb(path), ALL)
        err = compare(path, beats, d)
        for b in BOUNDARIES:
            errors[b].append(err.lead[b])
        for k in INTERVALS:
            errors[k].append(np.array([err.interval[k]]))
    return {k: (v := np.concatenate(e))[np.isfinite(v)] for k, e in errors.items()}


@pytest.mark.parametrize(
    ("what", "median_ms", "p90_ms"),
    [("qrs_on", 15, 40), ("qrs_off", 15, 40), ("t_end", 30, 80), ("qrs", 15, 40), ("qt", 30, 80)],
)
def test_delineation_agrees_with_cardiologists(
    ludb_errors: dict[str, np.ndarray], what: str, median_ms: float, p90_ms: float
) -> None:
    errors = ludb_errors[what]
    assert errors.size >= (len(SAMPLE) if what in INTERVALS else 10 * len(SAMPLE))
    assert np.median(errors) <= median_ms
    assert np.percentile(errors, 90) <= p90_ms


def test_record_measures_are_physiological() -> None:
    row = measure_record(read_ludb(LUDB / "1"), ALL)
    assert set(row) == set(RECORD_MEASURES) | {
        lead_column(m, lead) for m in LEAD_MEASURES for lead in CANONICAL_LEADS
    }
    assert 40 < row["hr_bpm"] < 150
    assert 60 <= row["qrs_ms"] <= 130
    assert 300 <= row["qt_ms"] <= 480
    assert 80 <= row["pr_ms"] <= 250
    assert -90 <= row["qrs_axis_deg"] <= 120
    assert row["n_beats"] >= 6  # sinus bradycardia: its 7 complete beats are all kept
    assert all(0.9 <= row[lead_column("template_corr", lead)] <= 1.0 for lead in CANONICAL_LEADS)


def test_missing_and_unusable_leads_are_null_not_zero() -> None:
    signal = read_ludb(LUDB / "2")
    full = measure_record(signal, ALL)
    signal[CANONICAL_LEADS.index("V3")] = np.nan  # absent in the source
    usable = ALL.copy()
    usable[CANONICAL_LEADS.index("aVL")] = False  # flagged flat/missing/saturated by quality
    row = measure_record(signal, usable)
    for lead in ("V3", "aVL"):
        assert all(math.isnan(row[lead_column(m, lead)]) for m in LEAD_MEASURES)
    assert all(math.isfinite(row[lead_column(m, "II")]) for m in LEAD_MEASURES)
    assert abs(row["qrs_ms"] - full["qrs_ms"]) <= 10
    assert abs(row["qt_ms"] - full["qt_ms"]) <= 20


def test_padded_tail_is_measured_on_what_is_there() -> None:
    signal = read_ludb(LUDB / "3")
    full = measure_record(signal, ALL)
    signal[:, 3500:] = np.nan  # a padded last window
    row = measure_record(signal, ALL)
    assert row["n_beats"] < full["n_beats"]
    assert abs(row["qrs_ms"] - full["qrs_ms"]) <= 10


@pytest.mark.parametrize("record", [2, 9])
@pytest.mark.parametrize("gap", [slice(0, 2250), slice(1500, 3750), slice(2750, 5000)])
def test_a_lead_off_for_part_of_the_window_is_measured_on_its_other_beats(record: int, gap: slice) -> None:
    """V1 missing for 45 % of a real record (at the start, in the middle, at the end: the gate
    still calls it usable): its median comes from the beats outside the gap, and no other lead
    loses a beat. Bridging the gap into the median made V1's S wave vanish (-0.62 mV read as 0 on
    LUDB 2), and a gap at the end cut every lead short (5 beats instead of 9)."""
    signal = read_ludb(LUDB / str(record))
    full = measure_record(signal, ALL)
    signal[CANONICAL_LEADS.index("V1"), gap] = np.nan
    row = measure_record(signal, ALL)
    assert row["n_beats"] == full["n_beats"]
    for measure in ("r_amp", "s_amp"):
        assert row[lead_column(measure, "V1")] == pytest.approx(full[lead_column(measure, "V1")], abs=0.04)
    assert row[lead_column("r_amp", "II")] == pytest.approx(full[lead_column("r_amp", "II")], abs=0.005)


def test_limb_and_chest_leads_recorded_one_after_the_other_are_measured() -> None:
    """Limb leads in the second half of the window, chest leads in the first: every lead measured
    on its own beats (it was skipped as `too_short`, 0 samples)."""
    signal = read_ludb(LUDB / "9")
    full = measure_record(signal, ALL)
    signal[:6, :2500] = np.nan
    signal[6:, 2500:] = np.nan
    row = measure_record(signal, ALL)
    assert row["n_beats"] >= full["n_beats"] - 1 and abs(row["hr_bpm"] - full["hr_bpm"]) < 2
    for lead in ("II", "V2", "V5"):
        assert row[lead_column("r_amp", lead)] == pytest.approx(full[lead_column("r_amp", lead)], abs=0.05)


def test_a_lead_with_too_few_beats_outside_its_gaps_is_not_measured() -> None:
    """V1 recorded for 1.5 s only: fewer than min_beats beats of its own, so its measures are null
    while every other lead is measured."""
    signal = read_ludb(LUDB / "9")
    signal[CANONICAL_LEADS.index("V1"), 750:] = np.nan
    row = measure_record(signal, ALL)
    assert all(math.isnan(row[lead_column(m, "V1")]) for m in LEAD_MEASURES)
    assert all(math.isfinite(row[lead_column("r_amp", lead)]) for lead in CANONICAL_LEADS if lead != "V1")


@pytest.mark.parametrize(
    ("signal", "reason"),
    [
        (np.full((N_LEADS, 5000), np.nan), "no_usable_leads"),
        (np.zeros((N_LEADS, 5000)), "too_few_beats"),
        (np.full((N_LEADS, 500), 0.1), "too_short"),
    ],
)
def test_records_without_beats_are_skipped_with_a_reason(signal: np.ndarray, reason: str) -> None:
    with pytest.raises(FeatureSkip) as info:
        measure_record(signal, ALL)
    assert info.value.reason == reason


@pytest.mark.parametrize("beats", [7, 8])  # the middle beat, and the mean of the two middle ones
def test_beat_median_is_numpys_median(beats: int) -> None:
    """The sort-based median of the beat cuts equals np.median exactly, on real beats."""
    x = read_ludb(LUDB / "9")
    epochs = np.stack([x[:, s : s + 400] for s in range(0, 400 * beats, 400)], axis=1)
    assert np.array_equal(beat_median(epochs), np.median(epochs, axis=1))
    assert np.array_equal(beat_median(epochs[:, :, 0]), np.median(epochs[:, :, 0], axis=1))


def test_zero_phase_is_scipys_sosfiltfilt() -> None:
    """The cleaning filter with its steady state given gives scipy's sosfiltfilt values exactly."""
    cfg = criteria_config()["signal"]
    sos, zi = cleaning_band(cfg["highpass_hz"], cfg["lowpass_hz"], 500)
    x = read_ludb(LUDB / "17").astype(np.float64)
    assert np.array_equal(zero_phase(sos, zi, x), sps.sosfiltfilt(sos, x, axis=1))
    with pytest.raises(ValueError, match="more than"):
        zero_phase(sos, zi, x[:, :10])


def _qrs_segments() -> np.ndarray:
    """Every lead's QRS complex (delineated median beats, baseline off) of six LUDB records,
    padded with its last sample to one length."""
    segments = []
    for k in (1, 9, 17, 33, 64, 127):
        beats, d = measure_beats(read_ludb(LUDB / str(k)), ALL)
        segments += list((beats.median - d.baseline[:, None])[:, d.qrs_on : d.qrs_off + 1])
    n = max(len(q) for q in segments)
    return np.stack([np.pad(q, (0, n - len(q)), mode="edge") for q in segments])


def test_prominent_peaks_counts_what_find_peaks_finds() -> None:
    """The same count as scipy's find_peaks row by row: real QRS complexes of both signs, the same
    quantized to 10 µV (plateaus everywhere, the padding a plateau at the end), and made-up edge
    cases (a plateau at either end, a plateau peak, peaks next to the ends, a flat row)."""
    real = _qrs_segments()
    made = np.array(
        [
            [3, 3, 1, 2, 2, 2, 1, 0, 5, 5],
            [0, 4, 1, 1, 1, 1, 1, 1, 4, 0],
            [1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
            [0, 2, 2, 3, 3, 1, 2, 2, 2, 2],
            [5, 0, 1, 0, 1, 0, 1, 0, 0, 5],
        ],
        dtype=float,
    )
    cases = [real, -real, np.round(real, 2), -np.round(real, 2)]
    for x, prominence in [*((c, 0.03) for c in cases), (real, 0.0), (real, 0.3), (made, 0.0), (made, 1.5)]:
        expected = [sps.find_peaks(row, prominence=prominence)[0].size for row in x]
        assert prominent_peaks(x, prominence).tolist() == expected
    assert sum(sps.find_peaks(row, prominence=0.03)[0].size for row in real) > len(real)  # not all trivial


def test_qrs_waves_of_made_up_complexes() -> None:
    """Q, R, S and fragmentation by their definitions: a qRs, an rS and a QS complex at 500 Hz."""
    qrs = np.array(
        [
            [0.0, -0.1, -0.05, 0.5, 1.0, 0.4, -0.2, -0.1, 0.0],  # qRs: q 0.1 mV for 2 samples
            [0.0, 0.01, 0.1, 0.05, -0.3, -0.8, -0.4, -0.1, 0.0],  # rS
            [0.0, -0.2, -0.6, -0.9, -0.5, -0.2, -0.1, 0.01, 0.0],  # QS: nothing above 0.02 mV
        ]
    )
    w = qrs_waves(qrs, wave_min=0.02, prominence=0.03, base=3)
    assert w["q_amp"].tolist() == [-0.1, 0.0, -0.9]
    assert w["q_dur"].tolist() == [6.0, 0.0, 18.0]  # to the first sample at or above 0; QS: all
    assert w["r_amp"].tolist() == [1.0, 0.1, 0.01]
    assert w["s_amp"].tolist() == [-0.2, -0.8, 0.0]
    assert w["r_peak_time"][:2].tolist() == [8.0, 4.0] and np.isnan(w["r_peak_time"][2])
    assert w["frag_count"].tolist() == [0.0, 0.0, 0.0]
    notched = np.array([[0.0, 0.6, 0.2, 0.9, 0.3, 0.8, 0.1, -0.3, 0.0]])  # R, notch, R', notch, R''
    # three peaks and three dips (two notches and S), less the three of an ordinary QRS
    assert qrs_waves(notched, 0.02, 0.03, 3)["frag_count"].tolist() == [3.0]


def test_usable_leads_from_stored_quality_flags() -> None:
    """A lead is measured unless one of its stored flags is an unusable one (missing, flat,
    saturation); noise flags and an unflagged lead keep it, spacing does not matter."""
    flags = ["", None, "powerline,emg", "flat", "baseline, saturation", " missing ", "amplitude"]
    assert usable_leads(flags) == (True, True, True, False, False, False, True)
