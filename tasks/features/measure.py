"""Measurements of one record from its median beats: intervals, rate, axes, and per-lead wave
amplitudes and durations (column names and units in data_contracts/feature_columns.py).

`measure_record` is the whole per-record path: clean → beats → delineation → measures. It raises
`FeatureSkip` when no median beat can be measured; single values that cannot be measured are NaN.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import signal as sps

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


def _qrs_waves(qrs: np.ndarray, wave_min: float, prominence: float, base: int) -> tuple[float, ...]:
    """(q_amp, q_dur_ms, r_amp, s_amp, r_peak_time_ms, frag_count) of one lead's QRS samples."""
    positive = np.flatnonzero(qrs > wave_min)
    if positive.size == 0:  # QS: the whole complex is the Q wave
        return float(qrs.min()), qrs.size * _MS, max(float(qrs.max()), 0.0), 0.0, np.nan, 0.0
    head = qrs[: positive[0]]
    q_amp = q_dur = 0.0
    if head.size and head.min() < -wave_min:
        q_amp = float(head.min())
        back = np.flatnonzero(qrs[int(np.argmin(head)) :] >= 0)
        q_dur = (int(np.argmin(head)) + int(back[0])) * _MS
    r = int(np.argmax(qrs))
    s_amp = min(float(qrs[r:].min()), 0.0)
    s_amp = s_amp if s_amp < -wave_min else 0.0
    n_ext = (
        sps.find_peaks(qrs, prominence=prominence)[0].size
        + sps.find_peaks(-qrs, prominence=prominence)[0].size
    )
    return q_amp, q_dur, float(qrs[r]), s_amp, r * _MS, float(max(n_ext - base, 0))


def lead_measures(x: np.ndarray, beats: Beats, d: Delineation, cfg: dict[str, Any]) -> dict[str, float]:
    """Per-lead columns (`<measure>_<lead>`); every measure is NaN for an unusable lead."""
    late = d.qrs_off + round(cfg["st_late_s"] * FS)
    values: dict[str, np.ndarray] = {m: np.full(len(x), np.nan) for m in LEAD_MEASURES}
    for lead in np.flatnonzero(beats.usable):
        waves = _qrs_waves(
            x[lead, d.qrs_on : d.qrs_off + 1], cfg["wave_min_mv"], cfg["frag_min_prominence_mv"],
            cfg["frag_base_extrema"],
        )  # fmt: skip
        for name, value in zip(
            ("q_amp", "q_dur", "r_amp", "s_amp", "r_peak_time", "frag_count"), waves, strict=True
        ):
            values[name][lead] = value
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
    x, usable = clean(signal, usable, cfg["signal"])
    beats = median_beats(x, usable, cfg["signal"])
    rr = float(np.median(np.diff(beats.peaks)))
    return beats, delineate(beats.median, beats.usable, beats.pre, rr, cfg["delineation"])


def measure_record(signal: np.ndarray, usable: np.ndarray) -> dict[str, float]:
    """Every record and lead measure of one record, keyed by feature column."""
    beats, d = measure_beats(signal, usable)
    x = beats.median - d.baseline[:, None]
    row: dict[str, float] = {"n_beats": float(beats.accepted.sum()), **rhythm(beats)}
    row |= intervals(d, x, 60_000.0 / row["hr_bpm"])
    return row | lead_measures(x, beats, d, criteria_config()["delineation"])
