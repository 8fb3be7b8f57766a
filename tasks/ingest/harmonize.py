"""Harmonization: any decoded record → 12 canonical leads, mV, 500 Hz, consecutive 10-s windows.

Resampling is polyphase with scipy's anti-aliasing FIR (`resample_poly`'s filter and alignment),
exact for rational rate ratios such as 1000→500, 250→500 or 257→500, applied by FFT convolution
where up × down is small, else as a polyphase matrix product
(`resample_poly_fast`, also the model input's 500→100 Hz). Gaps (NaN or infinite samples) are
bridged for filtering only and are NaN in the output.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

import numpy as np
from scipy import fft as sp_fft
from scipy.signal import firwin

from data_contracts.leads import CANONICAL_LEADS, dropped_channel_name, signed_lead
from tasks.ingest.errors import RecordError
from tasks.ingest.wfdb_reader import RawRecord

_UNIT_TO_MV = {"mv": 1.0, "uv": 1e-3, "µv": 1e-3, "μv": 1e-3, "v": 1e3, "nv": 1e-6}


class HarmonizeError(RecordError):
    """A record that cannot be harmonized."""


@dataclass(frozen=True)
class Harmonized:
    """Windows (n_windows × 12 × window samples, float32 mV), real samples per window, and what
    harmonization had to change."""

    windows: np.ndarray
    n_valid: list[int]
    leads_missing: list[str]
    leads_dropped: list[str]
    source_fs: float
    source_duration_s: float


def to_canonical(raw: RawRecord) -> tuple[np.ndarray, list[str], list[str]]:
    """Source channels mapped to the 12 canonical leads in mV, lead-major (12 × samples, NaN where
    absent: each lead one contiguous row for the filters after), with the missing canonical leads
    and the dropped source channels."""
    out = np.empty((len(CANONICAL_LEADS), raw.signal.shape[0]), dtype=np.float32)
    source = raw.signal.T
    filled: set[int] = set()
    dropped: list[str] = []
    for ch, name in enumerate(raw.sig_name):
        lead, sign = signed_lead(name)
        if lead is None or CANONICAL_LEADS.index(lead) in filled:
            dropped.append(lead or dropped_channel_name(name, ch))  # a second copy, or another channel
            continue
        unit = (raw.units[ch] if ch < len(raw.units) else "").strip().lower()
        if unit not in _UNIT_TO_MV:
            raise HarmonizeError("unknown_unit", f"lead {lead} is in a unit other than mV, uV, V or nV")
        idx = CANONICAL_LEADS.index(lead)
        np.multiply(source[ch], sign * _UNIT_TO_MV[unit], out=out[idx], casting="same_kind")
        filled.add(idx)
    if not filled:
        n = len(raw.sig_name)
        raise HarmonizeError("no_ecg_leads", f"none of the {n} channels is one of the 12 standard leads")
    absent = [i for i in range(len(CANONICAL_LEADS)) if i not in filled]
    out[absent] = np.nan
    return out, [CANONICAL_LEADS[i] for i in absent], dropped


# FFT convolution costs grow with up × down (the zero-stuffed length and the filter length); at
# up·down ≤ 5 it is 1.2-2x faster than scipy's polyphase loop (1000→500, 250→500, 500→100 Hz, ...);
# above it the polyphase filter as matrix products takes over (800→500 Hz, 5/8: 0.22 vs 1.07 ms
# for scipy on 12 × 8000 samples; 360→500 and 257→500 faster too).
FFT_MAX_PRODUCT = 5


@lru_cache(maxsize=16)
def _resampling_taps(up: int, down: int) -> tuple[np.ndarray, int]:
    """scipy.signal.resample_poly's anti-alias FIR for up/down and its half length."""
    rate = max(up, down)
    half = 10 * rate
    return firwin(2 * half + 1, 1.0 / rate, window=("kaiser", 5.0)) * up, half


def resample_poly_fast(x: np.ndarray, up: int, down: int, axis: int = -1) -> np.ndarray:
    """`scipy.signal.resample_poly(x, up, down, axis=axis)` in x's float dtype: the same filter and
    alignment (the same output to float rounding), by FFT convolution when up × down is at most
    `FFT_MAX_PRODUCT`, else by the polyphase filter as a matrix product."""
    if up == down:
        return x.copy()
    x = np.moveaxis(x, axis, -1)
    y = _fft_convolve(x, up, down) if up * down <= FFT_MAX_PRODUCT else _polyphase_matmul(x, up, down)
    return np.moveaxis(y, -1, axis)


def _fft_convolve(x: np.ndarray, up: int, down: int) -> np.ndarray:
    """resample_poly along the last axis: zero insertion, one FFT convolution, decimation."""
    n = x.shape[-1]
    taps, half = _resampling_taps(up, down)
    if up > 1:  # zero insertion; the taps carry the gain `up`
        stuffed = np.zeros((*x.shape[:-1], n * up), x.dtype)
        stuffed[..., ::up] = x
        x = stuffed
    length = sp_fft.next_fast_len(x.shape[-1] + len(taps) - 1, real=True)
    spectrum = sp_fft.rfft(x, length, axis=-1) * sp_fft.rfft(taps.astype(x.dtype), length)
    full = sp_fft.irfft(spectrum, length, axis=-1)
    # output k of resample_poly is sample half + k·down of the full convolution
    return full[..., half + down * np.arange(-(-n * up // down))]


@lru_cache(maxsize=16)
def _polyphase_weights(up: int, down: int) -> tuple[np.ndarray, int]:
    """Output k = q·up + r of resample_poly is Σ_j x[q·down + lo + j] · W[j, r]: the phase matrix W
    (span rounded up to whole blocks of `down` samples, × up) and the offset lo of the span, from
    the alignment above (output k is sample half + k·down of the convolution with the zero-stuffed
    input)."""
    taps, half = _resampling_taps(up, down)
    r = np.arange(up)
    lo = int((-((len(taps) - 1 - half - r * down) // up)).min())  # first input sample, any phase
    hi = int(((half + r * down) // up).max())  # last input sample, any phase
    span = -(-(hi - lo + 1) // down) * down
    tap = half + r[None, :] * down - (lo + np.arange(span)[:, None]) * up
    inside = (tap >= 0) & (tap < len(taps))
    return np.where(inside, taps[np.clip(tap, 0, len(taps) - 1)], 0.0), lo


def _polyphase_matmul(x: np.ndarray, up: int, down: int) -> np.ndarray:
    """resample_poly along the last axis: the input cut into blocks of `down` samples (a reshape, no
    copy), every `up` outputs the sum over the span's blocks of block × its slice of the phase
    matrix."""
    n = x.shape[-1]
    weights, lo = _polyphase_weights(up, down)
    weights = weights.astype(x.dtype)
    n_blocks = weights.shape[0] // down
    n_out = -(-n * up // down)
    rows = -(-n_out // up)
    padded = np.zeros((*x.shape[:-1], (rows + n_blocks) * down), x.dtype)
    padded[..., -lo : n - lo] = x
    blocks = padded.reshape(*x.shape[:-1], rows + n_blocks, down)
    out = blocks[..., :rows, :] @ weights[:down]
    for b in range(1, n_blocks):
        out += blocks[..., b : b + rows, :] @ weights[b * down : (b + 1) * down]
    return out.reshape(*x.shape[:-1], rows * up)[..., :n_out]


def resample(signal: np.ndarray, fs: float, target_fs: int) -> np.ndarray:
    """Polyphase resampling along time (the last axis: leads × samples); gaps (NaN or infinite
    samples) are bridged linearly for the filter and are NaN afterwards, all-NaN leads stay NaN."""
    ratio = Fraction(target_fs) / Fraction(fs).limit_denominator(1000)
    if ratio == 1:
        return signal
    filled = signal
    nan = None
    # an infinite sample is a gap too: the filter would spread it over the lead
    if not np.isfinite(signal.sum(axis=-1)).all():
        nan = ~np.isfinite(signal)
        filled = signal.copy()
        t = np.arange(signal.shape[-1])
        for j in np.ndindex(signal.shape[:-1]):
            gaps = nan[j]
            if gaps.all():
                filled[j] = 0.0
            elif gaps.any():
                filled[j] = np.interp(t, t[~gaps], signal[j][~gaps])
    up, down = ratio.numerator, ratio.denominator
    out = resample_poly_fast(filled.astype(np.float32, copy=False), up, down)
    if nan is not None:
        src = np.minimum((np.arange(out.shape[-1]) / ratio).astype(int), signal.shape[-1] - 1)
        out[nan[..., src]] = np.nan
    return out


def to_windows(signal: np.ndarray, window: int, min_tail: int) -> tuple[np.ndarray, list[int]]:
    """Consecutive windows (n × leads × window) of a lead-major signal (leads × samples); a tail of
    at least `min_tail` samples becomes a last window padded with NaN, a shorter tail is dropped."""
    leads, n = signal.shape
    n_full, tail = divmod(n, window)
    keep_tail = tail >= min_tail
    out = np.empty((n_full + int(keep_tail), leads, window), dtype=np.float32)
    out[:n_full] = signal[:, : n_full * window].reshape(leads, n_full, window).transpose(1, 0, 2)
    if keep_tail:
        out[n_full] = np.nan
        out[n_full, :, :tail] = signal[:, n_full * window :]
    valid = [window] * n_full + ([tail] if keep_tail else [])
    return out, valid


def harmonize(
    raw: RawRecord, *, target_fs: int, window_s: float, min_duration_s: float, max_duration_s: float
) -> Harmonized:
    """The full harmonization of one decoded record; raises HarmonizeError for the quarantine."""
    if raw.fs <= 0 or raw.signal.ndim != 2 or raw.signal.shape[0] == 0:
        raise HarmonizeError("no_signal", "record has no samples")
    duration = raw.signal.shape[0] / raw.fs
    if duration < min_duration_s:
        raise HarmonizeError("too_short", f"{duration:.2f} s is below the {min_duration_s:g} s minimum")
    if duration > max_duration_s:
        raise HarmonizeError("too_long", f"{duration:.0f} s is above the {max_duration_s:g} s maximum")
    signal, missing, dropped = to_canonical(raw)
    # fmax/fmin pass over NaN; a lead that is all NaN or constant has no max above its min
    if not np.any(np.fmax.reduce(signal, axis=1) > np.fmin.reduce(signal, axis=1)):
        raise HarmonizeError("no_signal", "every lead is empty (NaN) or constant")
    signal = resample(signal, raw.fs, target_fs)
    windows, valid = to_windows(signal, round(window_s * target_fs), round(min_duration_s * target_fs))
    return Harmonized(windows, valid, missing, dropped, raw.fs, duration)
