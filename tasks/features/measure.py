"""Measurements of one record from its median beats: intervals, rate, axes, and per-lead wave
amplitudes and durations (column names and units in data_contracts/feature_columns.py).

`measure_record` is the whole per-record path: clean → beats → delineation → measures. It raises
`FeatureSkip` when no median beat can be measured; single values that cannot be measured are NaN.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from data_contracts import load_json
from data_contracts.feature_columns import LEAD_MEASURES, lead_column
from data_contracts.leads import CANONICAL_LEADS
from data_contracts.schemas import FS
from tasks.features.beats import Beats, clean, median_beats
from tasks.features.delineate import Delineation, delineate

_MS = 1000.0 / FS
_I, _AVF = CANONICAL_LEADS.index("I"), CANONICAL_LEADS.index("aVF")


def criteria_config() -> dict[str, Any]:
    return load_json("feature_criteria.json")


def usable_leads(lead_flags: Sequence[str | None]) -> tuple[bool, ...]:
    """Per lead, whether features measure it: unless one of its quality flags (comma-separated,
    as `quality/` stores them) is one of the `unusable_flags`."""
    unusable = set(criteria_config()["signal"]["unusable_flags"])
    return tuple(not ({f.strip() for f in (flags or "").split(",")} & unusable) for flags in lead_flags)


def rhythm(beats: Beats) -> dict[str, float]:
    """Rate from all detected beats; variability from NN intervals (both ends accepted beats)."""
    rr = np.diff(beats.peaks) * _MS
    nn = rr[beats.accepted[1:] & beats.accepted[:-1]]
    return {
        "hr_bpm": 60_000.0 / float(np.median(rr)),
        "rr_sdnn_ms": float(np.std(nn, ddof=1)) if nn.size >= 2 else np.nan,
        "rr_rmssd_ms": float(np.sqrt(np.mean(np.diff(nn) ** 2))) if nn.size >= 2 else np.nan,
    }


def _axis(area: np.ndarray) -> float:
    if not (np.isfinite(area[_I]) and np.isfinite(area[_AVF])):
        return np.nan
    return float(np.degrees(np.arctan2(area[_AVF], area[_I])))


def intervals(d: Delineation, x: np.ndarray, rr_ms: float) -> dict[str, float]:
    """Global intervals (ms), QTc and frontal axes from the baseline-corrected median beats `x`."""
    qt = (d.t_end_global - d.qrs_on) * _MS
    rr_s = rr_ms / 1000.0
    t_end = int(d.t_end_global) if np.isfinite(d.t_end_global) else None
    return {
        "p_dur_ms": (d.p_off - d.p_on) * _MS,
        "pr_ms": (d.qrs_on - d.p_on) * _MS,
        "qrs_ms": (d.qrs_off - d.qrs_on) * _MS,
        "qt_ms": qt,
        "qtc_bazett_ms": qt / np.sqrt(rr_s),
        "qtc_fridericia_ms": qt / np.cbrt(rr_s),
        "qrs_axis_deg": _axis(x[:, d.qrs_on : d.qrs_off + 1].sum(axis=1)),
        "t_axis_deg": _axis(x[:, d.qrs_off : t_end + 1].sum(axis=1)) if t_end else np.nan,
    }


def prominent_peaks(x: np.ndarray, prominence: float) -> np.ndarray:
    """Per row of x (rows × samples, finite), how many peaks `scipy.signal.find_peaks(row,
    prominence=prominence)` finds, for all rows at once: the same peaks (a local maximum, a
    plateau's middle sample, never the first or last sample) and the same prominences (the peak
    less the higher of the lowest points on either side before a higher sample or the end), so the
    same counts, without a call per row and sign (24 for one record's QRS complexes)."""
    n = x.shape[1]
    t = np.arange(n)
    same_prev = np.zeros(x.shape, dtype=bool)
    same_prev[:, 1:] = x[:, 1:] == x[:, :-1]
    same_next = np.zeros(x.shape, dtype=bool)
    same_next[:, :-1] = same_prev[:, 1:]
    start = np.maximum.accumulate(np.where(same_prev, 0, t), axis=1)  # of each sample's run of equals
    end = np.minimum.accumulate(np.where(same_next, n - 1, t)[:, ::-1], axis=1)[:, ::-1]
    before = np.take_along_axis(x, np.maximum(start - 1, 0), axis=1)
    after = np.take_along_axis(x, np.minimum(end + 1, n - 1), axis=1)
    peak = (t == (start + end) // 2) & (start >= 1) & (before < x) & (end <= n - 2) & (after < x)
    row, at = np.nonzero(peak)
    lines, height, at = x[row], x[row, at], at[:, None]
    higher = lines > height[:, None]
    left = np.where(higher & (t < at), t, -1).max(axis=1, initial=-1)[:, None]
    right = np.where(higher & (t > at), t, n).min(axis=1, initial=n)[:, None]
    low_left = np.where((t > left) & (t <= at), lines, np.inf).min(axis=1, initial=np.inf)
    low_right = np.where((t >= at) & (t < right), lines, np.inf).min(axis=1, initial=np.inf)
    prominent = height - np.maximum(low_left, low_right) >= prominence
    return np.bincount(row[prominent], minlength=len(x))


def qrs_waves(qrs: np.ndarray, wave_min: float, prominence: float, base: int) -> dict[str, np.ndarray]:
    """q_amp, q_dur, r_amp, s_amp, r_peak_time and frag_count (ms and mV) of each lead's QRS
    samples (leads × samples, finite): Q the deepest dip before the first sample above wave_min
    (its duration to the next sample at or above 0), R the maximum, S the minimum from R on (Q and
    S count only below -wave_min); a lead with nothing above wave_min is QS, its whole complex the
    Q wave. frag_count: prominent extrema beyond the `base` of an ordinary QRS."""
    n = qrs.shape[1]
    t = np.arange(n)
    above = qrs > wave_min
    qs = ~above.any(axis=1)
    first = np.argmax(above, axis=1)
    head = np.where(t < first[:, None], qrs, np.inf)
    q_at = np.argmin(head, axis=1)
    q_min = head.min(axis=1)
    has_q = (first > 0) & (q_min < -wave_min)
    back = np.argmax((t >= q_at[:, None]) & (qrs >= 0), axis=1)  # first sample at or above 0 from Q on
    r = np.argmax(qrs, axis=1)
    s_min = np.minimum(np.where(t >= r[:, None], qrs, np.inf).min(axis=1), 0.0)
    extrema = prominent_peaks(qrs, prominence) + prominent_peaks(-qrs, prominence)
    return {
        "q_amp": np.where(qs, qrs.min(axis=1), np.where(has_q, q_min, 0.0)),
        "q_dur": np.where(qs, n * _MS, np.where(has_q, back * _MS, 0.0)),
        "r_amp": np.where(qs, np.maximum(qrs.max(axis=1), 0.0), qrs[np.arange(len(qrs)), r]),
        "s_amp": np.where(qs | ~(s_min < -wave_min), 0.0, s_min),
        "r_peak_time": np.where(qs, np.nan, r * _MS),
        "frag_count": np.where(qs, 0.0, np.maximum(extrema - base, 0)).astype(float),
    }


def lead_measures(x: np.ndarray, beats: Beats, d: Delineation, cfg: dict[str, Any]) -> dict[str, float]:
    """Per-lead columns (`<measure>_<lead>`); every measure is NaN for an unusable lead."""
    late = d.qrs_off + round(cfg["st_late_s"] * FS)
    values: dict[str, np.ndarray] = {m: np.full(len(x), np.nan) for m in LEAD_MEASURES}
    usable = np.flatnonzero(beats.usable)
    if usable.size:
        waves = qrs_waves(
            x[usable, d.qrs_on : d.qrs_off + 1], cfg["wave_min_mv"], cfg["frag_min_prominence_mv"],
            cfg["frag_base_extrema"],
        )  # fmt: skip
        for name, value in waves.items():
            values[name][usable] = value
    values["st_j"] = x[:, d.qrs_off]
    values["st_60"] = x[:, late] if late < x.shape[1] else np.full(len(x), np.nan)
    values["t_amp"] = d.t_amp
    values["template_corr"] = beats.template_corr
    return {
        lead_column(m, lead): float(values[m][i])
        for m in LEAD_MEASURES
        for i, lead in enumerate(CANONICAL_LEADS)
    }


def measure_beats(signal: np.ndarray, usable: np.ndarray) -> tuple[Beats, Delineation]:
    """Median beats and their delineation for one record (leads × samples, mV)."""
    cfg = criteria_config()
    x, usable, gaps = clean(signal, usable, cfg["signal"])
    beats = median_beats(x, usable, cfg["signal"], gaps=gaps)
    rr = float(np.median(np.diff(beats.peaks)))
    return beats, delineate(beats.median, beats.usable, beats.pre, rr, cfg["delineation"])


def measure_record(signal: np.ndarray, usable: np.ndarray) -> dict[str, float]:
    """Every record and lead measure of one record, keyed by feature column."""
    beats, d = measure_beats(signal, usable)
    x = beats.median - d.baseline[:, None]
    row: dict[str, float] = {"n_beats": float(beats.accepted.sum()), **rhythm(beats)}
    row |= intervals(d, x, 60_000.0 / row["hr_bpm"])
    return row | lead_measures(x, beats, d, criteria_config()["delineation"])
