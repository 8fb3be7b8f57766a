"""Wave boundaries of the median beats, delineated once per record (not per beat).

- QRS onset and offset are global, from the spatial velocity of all usable leads together, as
  cardiologists read them across the 12 leads: the outermost points around the R fiducial where
  the velocity exceeds a fraction of its QRS peak above the quiet floor.
- The baseline of each lead is the mean of the flattest short window of the PR segment.
- T end per lead by Zhang's trapezium-area method (the point after the T peak that maximizes the
  area between the curve and the horizontal through it); the record's T end is the median over
  leads with a measurable T wave. P onset and offset use the same area method around the P peak.
A boundary that cannot be found is NaN, never guessed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from data_contracts.schemas import FS
from tasks.features.beats import FeatureSkip


@dataclass(frozen=True)
class Delineation:
    """Sample indices into the median beat (float, NaN when not found) and per-lead baselines."""

    qrs_on: int
    qrs_off: int
    baseline: np.ndarray  # (leads,) mV
    t_peak: np.ndarray  # (leads,) index, NaN without a measurable T
    t_amp: np.ndarray  # (leads,) mV, signed largest deflection of the T window
    t_end: np.ndarray  # (leads,)
    t_end_global: float
    p_peak: np.ndarray  # (leads,) index, NaN without a measurable P
    p_on: float
    p_off: float


def _samples(seconds: float) -> int:
    return round(seconds * FS)


def spatial_velocity(median: np.ndarray, usable: np.ndarray) -> np.ndarray:
    d = np.gradient(median[usable], axis=1)
    return np.sqrt((d * d).sum(axis=0))


def qrs_bounds(velocity: np.ndarray, pre: int, cfg: dict[str, Any]) -> tuple[int, int]:
    """Outermost threshold crossings of the spatial velocity around the R fiducial."""
    lo, hi = (pre + _samples(s) for s in cfg["qrs_search_s"])
    lo, hi = max(lo, 0), min(hi, velocity.size - 1)
    window = velocity[lo : hi + 1]
    floor = np.percentile(window, 5)
    peak = velocity[max(pre - _samples(0.04), 0) : pre + _samples(0.04)].max()
    if peak <= floor:
        raise FeatureSkip("no_qrs", "flat median beat")
    on_thr = floor + cfg["qrs_onset_fraction"] * (peak - floor)
    off_thr = floor + cfg["qrs_offset_fraction"] * (peak - floor)
    r = pre - lo
    below_before = np.flatnonzero(window[:r] < on_thr)
    below_after = np.flatnonzero(window[r:] < off_thr)
    if below_before.size == 0 or below_after.size == 0:
        raise FeatureSkip("no_qrs", "QRS boundaries outside the search window")
    return lo + int(below_before[-1]) + 1, lo + r + int(below_after[0]) - 1


def isoelectric(median: np.ndarray, velocity: np.ndarray, qrs_on: int, cfg: dict[str, Any]) -> np.ndarray:
    """Per-lead level of the flattest window just before the QRS (the PR segment)."""
    w = _samples(cfg["isoelectric_window_s"])
    start = max(qrs_on - _samples(cfg["isoelectric_search_s"]), 0)
    stop = max(qrs_on - w, start) + 1
    cs = np.concatenate([[0.0], np.cumsum(velocity)])
    starts = np.arange(start, stop)
    best = int(starts[np.argmin(cs[starts + w] - cs[starts])])
    return median[:, best : best + w].mean(axis=1)


def _area_end(
    x: np.ndarray, sign: np.ndarray, first: np.ndarray, last: int, w: int, forward: bool
) -> np.ndarray:
    """Zhang's area method, vectorized over leads: for every lead, the index t in [first, last]
    maximizing sign · (sum of x over the w samples behind t (ahead of t when not `forward`) − w·x(t)),
    `sign` being the polarity of the wave."""
    n = x.shape[1]
    cs = np.concatenate([np.zeros((x.shape[0], 1)), np.cumsum(x, axis=1)], axis=1)
    t = np.arange(n)
    if forward:
        a0 = np.clip(t - w + 1, 0, None)
        area = cs[:, t + 1] - cs[:, a0] - (t - a0 + 1) * x
    else:
        a1 = np.clip(t + w, None, n)
        area = cs[:, a1] - cs[:, t] - (a1 - t) * x
    area = area * sign[:, None]
    lo, hi = (first[:, None], last) if forward else (last, first[:, None])
    valid = (t[None, :] >= lo) & (t[None, :] <= hi)
    area = np.where(valid & ~np.isnan(area), area, -np.inf)
    out = np.argmax(area, axis=1).astype(float)
    out[~np.isfinite(area.max(axis=1))] = np.nan
    return out


def _peaks_in(x: np.ndarray, lo: int, hi: int, min_mv: float) -> tuple[np.ndarray, np.ndarray]:
    """Index and signed amplitude of the largest deflection of each lead in [lo, hi]; NaN index
    where it is smaller than `min_mv` or the lead is unusable."""
    seg = x[:, lo : hi + 1]
    filled = np.nan_to_num(seg)
    k = np.argmax(np.abs(filled), axis=1)
    amp = seg[np.arange(len(seg)), k]
    idx = (lo + k).astype(float)
    idx[~(np.abs(amp) >= min_mv)] = np.nan
    return idx, amp


def _t_window(
    x: np.ndarray, usable: np.ndarray, off: int, pre: int, rr: float, cfg: dict[str, Any]
) -> tuple[int, int]:
    """Where each lead's T peak and T end are sought: around the peak of the T-wave energy of all
    leads together, so that a lead with a flat T cannot take the next P wave for its T."""
    lo = off + _samples(cfg["t_start_after_qrs_s"])
    hi = min(
        off + _samples(cfg["t_end_max_after_qrs_s"]),
        pre + round(cfg["t_end_max_rr_fraction"] * rr),
        x.shape[1] - 1,
    )
    energy = np.nansum(x[usable, lo : hi + 1] ** 2, axis=0)
    peak = lo + int(np.argmax(energy))
    return max(lo, peak - _samples(cfg["t_peak_spread_s"])), min(
        hi, peak + _samples(cfg["t_end_after_peak_s"])
    )


def delineate(
    median: np.ndarray, usable: np.ndarray, pre: int, rr: float, cfg: dict[str, Any]
) -> Delineation:
    """Boundaries of the median beats (leads × samples, R fiducial at `pre`, RR in samples)."""
    velocity = spatial_velocity(median, usable)
    on, off = qrs_bounds(velocity, pre, cfg)
    baseline = isoelectric(median, velocity, on, cfg)
    x = median - baseline[:, None]
    t_lo, t_hi = _t_window(x, usable, off, pre, rr, cfg)
    t_peak, t_amp = _peaks_in(x, t_lo, t_hi, cfg["t_min_amplitude_mv"])
    has_t = ~np.isnan(t_peak)
    t_end = np.full(len(x), np.nan)
    if has_t.any():
        w = _samples(cfg["t_area_window_s"])
        t_end[has_t] = _area_end(
            x[has_t], np.sign(t_amp[has_t]), t_peak[has_t].astype(int), t_hi, w, forward=True
        )
    t_end_global = float(np.nanmedian(t_end)) if has_t.any() else np.nan

    # P: between the previous beat's T end and the QRS onset.
    p_lo = on + _samples(cfg["p_search_s"][0])
    if np.isfinite(t_end_global):
        p_lo = max(p_lo, round(t_end_global - rr) + 1)
    p_lo, p_hi = max(p_lo, 0), on + _samples(cfg["p_search_s"][1])
    p_peak, p_amp = _peaks_in(x, p_lo, max(p_hi, p_lo), cfg["p_min_amplitude_mv"])
    has_p = ~np.isnan(p_peak)
    p_on = p_off = np.nan
    if has_p.sum() >= cfg["p_min_leads"]:
        w = _samples(cfg["p_area_window_s"])
        peaks, sign = p_peak[has_p].astype(int), np.sign(p_amp[has_p])
        p_on = float(np.median(_area_end(x[has_p], sign, peaks, p_lo, w, forward=False)))
        p_off = float(np.median(_area_end(x[has_p], sign, peaks, on, w, forward=True)))
        if not p_off - p_on >= _samples(cfg["p_min_duration_s"]):  # a deflection, not a P wave
            p_on = p_off = np.nan
    return Delineation(on, off, baseline, t_peak, t_amp, t_end, t_end_global, p_peak, p_on, p_off)
