"""R peaks found on all leads together, and one median beat per lead.

Every lead is filtered once (zero-phase, so fiducial points stay in place); beats are detected on
the summed band-passed energy of all usable leads, so a noisy or missing lead does not lose beats;
beats are cut as one (leads × beats × samples) array and their median taken in one call. Beats that
do not resemble the dominant morphology (ectopic, artifact) are left out of the median.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy import signal as sps

from data_contracts.schemas import FS


class FeatureSkip(ValueError):
    """A record on which no median beat can be measured; `reason` goes to `skip_reason`."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True)
class Beats:
    """The median beat per lead (NaN rows for unusable leads) and the beats behind it."""

    median: np.ndarray  # (leads, samples), mV, baseline not yet removed
    pre: int  # index of the R fiducial in `median`
    peaks: np.ndarray  # sample index of every detected beat
    accepted: np.ndarray  # bool per detected beat: used in the median
    template_corr: np.ndarray  # (leads,) median correlation of accepted beats with the median beat
    usable: np.ndarray  # (leads,) bool


@cache
def _sos(kind: str, cut: tuple[float, ...], order: int, fs: int) -> np.ndarray:
    return sps.butter(order, cut if len(cut) > 1 else cut[0], btype=kind, fs=fs, output="sos")


def moving_average(x: np.ndarray, n: int) -> np.ndarray:
    """Centered moving average of a 1-D array (same length)."""
    return np.convolve(x, np.full(max(n, 1), 1.0 / max(n, 1)), mode="same")


def clean(
    signal: np.ndarray, usable: np.ndarray, cfg: dict[str, Any], fs: int = FS
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Leads × samples in mV → (filtered signal, usable leads, gaps). The padded tail, where no
    usable lead has samples, is cut; a lead's own missing stretches (an electrode off for part of
    the window) are bridged linearly for the filter and returned as `gaps` (leads × samples, None
    when there are none), so that the beats they touch are left out of that lead's median and no
    other lead loses samples; leads that are all NaN are unusable."""
    x = np.asarray(signal, dtype=np.float64)
    usable = usable & ~np.isnan(x).all(axis=1)
    if not usable.any():
        raise FeatureSkip("no_usable_leads")
    present = np.isfinite(x[usable]).any(axis=0)
    end = int(np.flatnonzero(present)[-1]) + 1 if present.any() else 0
    x = x[:, :end]
    x[~usable] = 0.0
    missing = ~np.isfinite(x)
    gaps = missing if missing.any() else None
    for lead in np.flatnonzero(missing.any(axis=1)):
        ok = ~missing[lead]
        x[lead, ~ok] = np.interp(np.flatnonzero(~ok), np.flatnonzero(ok), x[lead, ok])
    if x.shape[1] < fs * 2:
        raise FeatureSkip("too_short", f"{x.shape[1]} samples")
    return zero_phase(*cleaning_band(cfg["highpass_hz"], cfg["lowpass_hz"], fs), x), usable, gaps


@cache
def cleaning_band(highpass_hz: float, lowpass_hz: float, fs: int) -> tuple[np.ndarray, np.ndarray]:
    """The cleaning band-pass (2nd-order high-pass, 4th-order low-pass) and its steady state."""
    sos = np.vstack([_sos("highpass", (highpass_hz,), 2, fs), _sos("lowpass", (lowpass_hz,), 4, fs)])
    return sos, sps.sosfilt_zi(sos)


def zero_phase(sos: np.ndarray, zi: np.ndarray, x: np.ndarray) -> np.ndarray:
    """`scipy.signal.sosfiltfilt(sos, x, axis=-1)` of a 2-D array, the same values, with the
    filter's steady state `zi` (`sosfilt_zi(sos)`) given: scipy solves it afresh on every call,
    a sixth of the call's time on one 10-s window. Odd extension of 3 × taps samples at both
    ends, a forward pass started at the first sample's steady state, a backward pass at the
    forward output's last."""
    taps = 2 * len(sos) + 1 - min(int((sos[:, 2] == 0).sum()), int((sos[:, 5] == 0).sum()))
    edge = 3 * taps
    if x.shape[-1] <= edge:
        raise ValueError(f"{x.shape[-1]} samples: the filter needs more than {edge}")
    ext = np.concatenate(
        [2 * x[:, :1] - x[:, edge:0:-1], x, 2 * x[:, -1:] - x[:, -2 : -edge - 2 : -1]], axis=1
    )
    y, _ = sps.sosfilt(sos, ext, axis=1, zi=zi[:, None, :] * ext[None, :, :1])
    y, _ = sps.sosfilt(sos, y[:, ::-1], axis=1, zi=zi[:, None, :] * y[None, :, -1:])
    return y[:, ::-1][:, edge:-edge]


def detect_peaks(x: np.ndarray, usable: np.ndarray, cfg: dict[str, Any], fs: int = FS) -> np.ndarray:
    """R fiducials from the energy of all usable leads: band-pass, square, sum, smooth, pick peaks;
    each peak is then moved to the maximum of the spatial velocity nearby. The band-pass is causal
    (one pass, half the cost): its few ms of delay lie well inside that alignment search."""
    band = sps.sosfilt(_sos("bandpass", tuple(cfg["detect_band_hz"]), 2, fs), x[usable], axis=1)
    energy = (np.diff(band, axis=1, prepend=band[:, :1]) ** 2).sum(axis=0)
    envelope = moving_average(energy, round(cfg["detect_smooth_s"] * fs))
    distance = round(cfg["detect_min_rr_s"] * fs)
    candidates, props = sps.find_peaks(envelope, distance=distance, height=0.0)
    if candidates.size == 0:
        return candidates
    reference = np.percentile(props["peak_heights"], 90)
    peaks = candidates[props["peak_heights"] >= cfg["detect_height_fraction"] * reference]
    velocity = moving_average(
        np.sqrt((np.diff(x[usable], axis=1, prepend=x[usable][:, :1]) ** 2).sum(axis=0)),
        max(1, round(0.01 * fs)),
    )
    w = round(cfg["align_search_s"] * fs)
    idx = np.clip(peaks[:, None] + np.arange(-w, w + 1)[None, :], 0, velocity.size - 1)
    return np.unique(idx[np.arange(len(peaks)), np.argmax(velocity[idx], axis=1)])


def beat_median(a: np.ndarray) -> np.ndarray:
    """`np.median(a, axis=1)` of a NaN-free array (leads × beats × ..., at least one beat), by
    one sort: the same values (the middle one, or the mean of the two middle ones), 3-4× as fast
    for the ten-odd beats of a window, where np.median's partition along a middle axis is slow."""
    n = a.shape[1]
    s = np.sort(a, axis=1)
    return s[:, n // 2] if n % 2 else (s[:, n // 2 - 1] + s[:, n // 2]) / 2


def _row_corr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation along the last axis, broadcast; 0 where a side is constant."""
    a = a - a.mean(axis=-1, keepdims=True)
    b = b - b.mean(axis=-1, keepdims=True)
    den = np.sqrt((a * a).sum(axis=-1) * (b * b).sum(axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (a * b).sum(axis=-1) / den, 0.0)


def align(x: np.ndarray, peaks: np.ndarray, cfg: dict[str, Any], fs: int = FS) -> np.ndarray:
    """Beats moved by the lag (within ±align_lag_s) that best matches their QRS, all leads together,
    to the median QRS: one fiducial for every beat, whichever wave of the QRS is tallest."""
    w, lag = round(cfg["align_qrs_s"] * fs), round(cfg["align_lag_s"] * fs)
    peaks = peaks[(peaks - w - lag >= 0) & (peaks + w + lag < x.shape[1])]
    span = np.arange(-w - lag, w + lag + 1)

    def cut(peaks: np.ndarray) -> np.ndarray:
        """leads × beats × lags × t: each beat's QRS at every lag, a view of one cut per beat"""
        return sliding_window_view(x[:, peaks[:, None] + span], 2 * w + 1, axis=-1)

    segments = cut(peaks)
    for _ in range(cfg["align_rounds"]):
        template = beat_median(segments[:, :, lag])  # leads × t, at the current fiducials
        dot = np.einsum("lbkt,lt->bk", segments, template)
        norm = np.sqrt(np.einsum("lbkt,lbkt->bk", segments, segments)) + 1e-12
        shift = np.argmax(dot / norm, axis=1) - lag
        if not shift.any():
            break
        peaks = peaks + shift
        keep = (peaks - w - lag >= 0) & (peaks + w + lag < x.shape[1])
        peaks = peaks[keep]
        segments = cut(peaks)
    return np.unique(peaks)


def beat_span(cfg: dict[str, Any], fs: int = FS) -> tuple[int, int]:
    """Samples of a median beat before and after its R fiducial at `fs`."""
    return round(cfg["beat_pre_s"] * fs), round(cfg["beat_post_s"] * fs)


def median_beats(
    x: np.ndarray, usable: np.ndarray, cfg: dict[str, Any], fs: int = FS, gaps: np.ndarray | None = None
) -> Beats:
    """Cut every complete beat, drop those unlike the dominant morphology, take the median. `gaps`
    (leads × samples, from `clean`): a beat that touches a lead's gap is left out of that lead's
    template, correlations and median, and a lead left with fewer than min_beats beats is
    unusable (a window without gaps takes the same path as before gaps were known)."""
    peaks = detect_peaks(x, usable, cfg, fs)
    if peaks.size >= cfg["min_beats"]:
        peaks = align(x, peaks, cfg, fs)  # unusable leads are zero here
    pre, post = beat_span(cfg, fs)
    inside = peaks[(peaks >= pre) & (peaks + post <= x.shape[1])]
    if inside.size < cfg["min_beats"]:
        raise FeatureSkip("too_few_beats", f"{inside.size} complete beats detected")
    cut = inside[:, None] + np.arange(-pre, post)[None, :]
    epochs = x[:, cut]  # leads × beats × samples
    touched = gaps[:, cut].any(axis=-1) & usable[:, None] if gaps is not None else None
    if touched is not None and touched.any():
        return _median_beats_with_gaps(epochs, touched, usable, peaks, inside, pre, cfg, fs)
    lo, hi = (pre + round(s * fs) for s in cfg["template_window_s"])
    template = beat_median(epochs)
    corr = _row_corr(epochs[:, :, lo:hi], template[:, None, lo:hi])  # leads × beats
    score = np.median(corr[usable], axis=0)
    keep = score >= cfg["template_corr_min"]
    if keep.sum() < cfg["min_beats"]:
        raise FeatureSkip("too_few_beats", f"{int(keep.sum())} beats match the dominant morphology")
    median = beat_median(epochs[:, keep])
    lead_corr = beat_median(_row_corr(epochs[:, keep, lo:hi], median[:, None, lo:hi]))
    median[~usable] = np.nan
    lead_corr[~usable] = np.nan
    accepted = np.isin(peaks, inside[keep])
    return Beats(median, pre, peaks, accepted, lead_corr, usable)


def _median_beats_with_gaps(
    epochs: np.ndarray,
    touched: np.ndarray,
    usable: np.ndarray,
    peaks: np.ndarray,
    inside: np.ndarray,
    pre: int,
    cfg: dict[str, Any],
    fs: int,
) -> Beats:
    """`median_beats`' selection and medians with the beats a lead's gap touches (leads × beats)
    left out of that lead: NaN-aware medians over what each lead has."""
    lo, hi = (pre + round(s * fs) for s in cfg["template_window_s"])
    held = np.where(touched[:, :, None], np.nan, epochs)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices: a lead without beats there
        template = np.nanmedian(held, axis=1)
        corr = _row_corr(held[:, :, lo:hi], template[:, None, lo:hi])
        score = np.nanmedian(np.where(touched, np.nan, corr)[usable], axis=0)
        keep = score >= cfg["template_corr_min"]
        if keep.sum() < cfg["min_beats"]:
            raise FeatureSkip("too_few_beats", f"{int(keep.sum())} beats match the dominant morphology")
        enough = (~touched[:, keep]).sum(axis=1) >= cfg["min_beats"]
        usable = usable & enough
        if not usable.any():
            raise FeatureSkip("too_few_beats", "no lead keeps enough beats outside its gaps")
        median = np.nanmedian(held[:, keep], axis=1)
        lead_corr = np.nanmedian(
            np.where(touched[:, keep], np.nan, _row_corr(held[:, keep, lo:hi], median[:, None, lo:hi])),
            axis=1,
        )
    median[~usable] = np.nan
    lead_corr[~usable] = np.nan
    accepted = np.isin(peaks, inside[keep])
    return Beats(median, pre, peaks, accepted, lead_corr, usable)
