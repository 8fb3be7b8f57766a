"""Per-lead signal-quality indices of 12-lead records, vectorized over records and leads.

Input: float32 (n, 12, samples) mV at one sampling rate, NaN where a lead or a padded tail has no
samples. One real FFT per lead gives the mains and baseline-wander amplitudes directly and, by
masking, the clean-band (QRS/T) and high-frequency (muscle) signals. R peaks are found once per
record on the energy of all usable leads together, so a noisy or missing lead does not hide the
beats of the others; the mean beat per lead then gives the template correlation (over the beat and
in the P-wave window), the QRS amplitude, and is kept for the reversal detector.
Nothing here raises on flat, NaN, noise or huge input: indices that cannot be measured are NaN.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
from scipy import fft
from scipy.signal import find_peaks


@dataclass(frozen=True)
class IndexParams:
    """How the indices are measured (the `indices` section of the QC profile)."""

    fs: int
    chunk_records: int
    clip_mv: float
    edge_s: float
    clean_band_hz: tuple[float, float]
    clean_fs: int
    detector_smooth_s: float
    detector_min_rr_s: float
    detector_height: float
    min_beats: int
    beat_window_s: tuple[float, float]
    qrs_window_s: tuple[float, float]
    t_window_s: tuple[float, float]
    p_window_s: tuple[float, float]
    baseline_max_hz: float
    mains_hz: tuple[float, ...]
    mains_harmonics: int
    mains_halfwidth_hz: float
    mains_background_hz: tuple[float, float]
    emg_min_hz: float
    emg_window_s: float
    emg_burst_s: float
    emg_qrs_guard_s: float
    still_mv: float
    saturation_near: float
    saturation_still: float
    saturation_run_s: float
    usable_missing: float
    usable_still: float
    usable_saturation: float
    usable_saturation_mv: float


@dataclass
class LeadIndices:
    """Indices per record and lead, (n, 12) float32 unless noted; NaN where not measurable."""

    missing: np.ndarray  # fraction of the record's valid samples that are NaN in this lead
    still: np.ndarray  # fraction of consecutive samples that do not move (lead-off)
    rms: np.ndarray  # rms of the clean-band signal, mV
    saturation: np.ndarray  # fraction of samples sitting still at the lead's extreme
    extreme: np.ndarray  # distance of the extreme that sits still from the lead mean, mV
    powerline: np.ndarray  # mains amplitude (50 or 60 Hz with harmonics, the larger), mV
    baseline: np.ndarray  # half peak-to-peak of the wander below baseline_max_hz, mV
    emg: np.ndarray  # rms above emg_min_hz outside QRS, in the noisiest emg_burst_s, mV
    template_corr: np.ndarray  # mean correlation of each beat with the lead's mean beat
    p_corr: np.ndarray  # the same in the P-wave window: low where no P wave leads the beats (AF)
    kurtosis: np.ndarray  # kurtosis of the clean-band signal (3 for Gaussian noise)
    qrs_amplitude: np.ndarray  # peak-to-peak of the mean beat in the QRS window, mV
    template: np.ndarray  # (n, 12, beat window at clean_fs) the mean beat, mV; NaN without beats
    beats: np.ndarray  # (n,) int: R peaks found in the record


def _valid_length(finite: np.ndarray) -> np.ndarray:
    """Samples up to the last one where any lead is finite (padded tails excluded), per record."""
    any_finite = finite.any(axis=1)
    last = any_finite.shape[1] - np.argmax(any_finite[:, ::-1], axis=1)
    return np.where(any_finite.any(axis=1), last, 0)


def _mains_amplitude(power: np.ndarray, freqs: np.ndarray, p: IndexParams, n: int) -> np.ndarray:
    """Sine amplitude (mV) at the mains frequency and harmonics, above the local spectral floor;
    the larger of the mains frequencies in the profile."""
    best = np.zeros(power.shape[:2], dtype=np.float32)
    lo_bg, hi_bg = p.mains_background_hz
    for mains in p.mains_hz:
        total = np.zeros_like(best)
        for h in range(1, p.mains_harmonics + 1):
            f0 = h * mains
            if f0 + p.mains_halfwidth_hz + hi_bg >= freqs[-1]:
                break
            dist = np.abs(freqs - f0)
            band = dist <= p.mains_halfwidth_hz
            side = (dist >= p.mains_halfwidth_hz + lo_bg) & (dist <= p.mains_halfwidth_hz + hi_bg)
            floor = power[..., side].mean(axis=-1)
            excess = np.clip(power[..., band].sum(axis=-1) - band.sum() * floor, 0.0, None)
            total += 4.0 * excess / n**2  # one-sided Parseval: a sine of amplitude A gives N²A²/4
        best = np.maximum(best, np.sqrt(total))
    return best


def _moving_mean(x: np.ndarray, width: int) -> np.ndarray:
    """Centred moving mean along the last axis (same length)."""
    c = np.cumsum(np.pad(x, [(0, 0)] * (x.ndim - 1) + [(width // 2 + 1, width - width // 2 - 1)]), axis=-1)
    return (c[..., width:] - c[..., :-width]) / width


def detect_r_peaks(
    clean: np.ndarray, usable: np.ndarray, valid: np.ndarray, p: IndexParams
) -> list[np.ndarray]:
    """R peaks per record (sample indices at clean_fs) from the summed, per-lead normalized slope
    energy of the usable leads."""
    slope = np.diff(clean, axis=-1, prepend=clean[..., :1]) ** 2
    scale = slope.mean(axis=-1, keepdims=True)
    energy = np.where(usable[..., None] & (scale > 0), slope / np.where(scale > 0, scale, 1.0), 0.0).sum(1)
    smooth = _moving_mean(energy, max(1, round(p.detector_smooth_s * p.clean_fs)))
    peaks = []
    for s, n in zip(smooth, valid, strict=True):
        s = s[:n]
        top = np.percentile(s, 98) if n else 0.0
        if not np.isfinite(top) or top <= 0:
            peaks.append(np.zeros(0, dtype=np.int64))
            continue
        # the smoothed energy has one hump per QRS, centred on it: its maxima align the beats
        found, _ = find_peaks(
            s, height=p.detector_height * top, distance=round(p.detector_min_rr_s * p.clean_fs)
        )
        peaks.append(found)
    return peaks


def _beat_corr(beats: np.ndarray, template: np.ndarray) -> np.ndarray:
    """Mean correlation of the beats (leads, beats, window) with their template (leads, window)."""
    b = beats - beats.mean(axis=-1, keepdims=True)
    t = template - template.mean(axis=-1, keepdims=True)
    num = np.einsum("lbw,lw->lb", b, t)
    den = np.sqrt((b**2).sum(-1) * (t**2).sum(-1)[:, None])
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan).mean(axis=1)


def beat_windows(p: IndexParams) -> dict[str, np.ndarray]:
    """Boolean masks over the mean-beat samples (at clean_fs): `qrs`, `t` and `p` wave windows."""
    offsets = np.arange(round(p.beat_window_s[0] * p.clean_fs), round(p.beat_window_s[1] * p.clean_fs))
    spans = {"qrs": p.qrs_window_s, "t": p.t_window_s, "p": p.p_window_s}
    return {k: (offsets >= a * p.clean_fs) & (offsets <= b * p.clean_fs) for k, (a, b) in spans.items()}


def _beat_indices(
    clean: np.ndarray, peaks: list[np.ndarray], valid: np.ndarray, p: IndexParams
) -> tuple[np.ndarray, ...]:
    """Template correlation (over the beat and the P window), QRS peak-to-peak, and the mean beat."""
    n, leads, _ = clean.shape
    corr, p_corr, amp = (np.full((n, leads), np.nan, dtype=np.float32) for _ in range(3))
    offsets = np.arange(round(p.beat_window_s[0] * p.clean_fs), round(p.beat_window_s[1] * p.clean_fs))
    mean_beat = np.full((n, leads, len(offsets)), np.nan, dtype=np.float32)
    windows = beat_windows(p)
    qrs, p_wave = windows["qrs"], windows["p"]
    for i, (r, length) in enumerate(zip(peaks, valid, strict=True)):
        r = r[(r + offsets[0] >= 0) & (r + offsets[-1] < length)]
        if len(r) < p.min_beats:
            continue
        beats = clean[i][:, r[:, None] + offsets]  # (leads, beats, window)
        template = mean_beat[i] = beats.mean(axis=1)
        corr[i] = _beat_corr(beats, template)
        p_corr[i] = _beat_corr(beats[..., p_wave], template[:, p_wave])
        amp[i] = np.ptp(template[:, qrs], axis=1)
    return corr, p_corr, amp, mean_beat


def _emg(hf: np.ndarray, peaks: list[np.ndarray], valid: np.ndarray, p: IndexParams) -> np.ndarray:
    """RMS of the high band outside QRS complexes, in the emg_burst_s where it is largest."""
    n, leads, samples = hf.shape
    keep = np.arange(samples)[None, :] < valid[:, None]
    guard = round(p.emg_qrs_guard_s * p.fs)
    for i, r in enumerate(peaks):
        around = (r[:, None] * p.fs // p.clean_fs + np.arange(-guard, guard + 1)).ravel()
        keep[i, around[(around >= 0) & (around < samples)]] = False
    width = round(p.emg_window_s * p.fs)
    m = samples // width
    power = (hf[..., : m * width] ** 2 * keep[:, None, : m * width]).reshape(n, leads, m, width).sum(-1)
    count = keep[:, : m * width].reshape(n, m, width).sum(-1)[:, None, :]
    rms = np.where(count > width // 4, np.sqrt(power / np.maximum(count, 1)), -np.inf)
    k = min(m, max(1, round(p.emg_burst_s / p.emg_window_s)))
    out = np.sort(rms, axis=-1)[..., m - k]
    return np.where(np.isfinite(out), out, np.nan).astype(np.float32)


def _in_runs(mask: np.ndarray, run: int, least: np.ndarray) -> np.ndarray:
    """Per lead, about how many True samples along the last axis lie in runs of at least `run`
    (isolated resting samples, an R apex or quantized noise, do not count as a clipped plateau).
    Only leads with at least `least` True samples can reach a threshold: the rest report their
    plain count, which is below it anyway."""
    out = mask.sum(-1)
    idx = np.nonzero(out >= least)
    if idx[0].size:
        m = mask[idx]
        c = np.cumsum(m, axis=-1, dtype=np.int32)
        window = c[:, run - 1 :] - np.pad(c, [(0, 0), (1, 0)])[:, : c.shape[-1] - run + 1]
        full = window == run
        out[idx] = full.sum(-1) + (run - 1) * (full[:, 1:] & ~full[:, :-1]).sum(-1) + (run - 1) * full[:, 0]
    return out


def measure(signals: np.ndarray, p: IndexParams) -> LeadIndices:
    """All per-lead indices of a batch of records (n, 12, samples), computed in chunks of
    `chunk_records`: small work arrays are reused by the allocator instead of being mapped and
    page-faulted afresh, which costs more than the arithmetic on them."""
    signals = np.asarray(signals, dtype=np.float32)
    if signals.shape[-1] < max(2 * round(p.edge_s * p.fs), round(p.emg_window_s * p.fs)):
        raise ValueError(f"windows of {signals.shape[-1]} samples are too short to assess")
    parts = []
    with np.errstate(all="ignore"):
        for start in range(0, max(len(signals), 1), p.chunk_records):
            parts.append(_measure(signals[start : start + p.chunk_records], p))
    return LeadIndices(
        **{f.name: np.concatenate([getattr(q, f.name) for q in parts]) for f in fields(LeadIndices)}
    )


def _measure(x: np.ndarray, p: IndexParams) -> LeadIndices:
    samples = x.shape[-1]
    x = np.clip(x, -p.clip_mv, p.clip_mv)  # NaN stays NaN; beyond the clip nothing is an ECG
    finite = np.isfinite(x)
    valid = _valid_length(finite)
    per_valid = 1.0 / np.maximum(valid, 1)[:, None]
    count = finite.sum(-1)
    missing = (1.0 - count * per_valid).astype(np.float32)
    x[~finite] = 0.0
    mean = (x.sum(-1) / np.maximum(count, 1)).astype(np.float32)
    x -= mean[..., None]
    x[~finite] = 0.0  # x is now the centred signal, 0 where it has no samples

    step = np.abs(np.diff(x, axis=-1))
    both = finite[..., 1:] & finite[..., :-1]
    still = (((step <= p.still_mv) & both).sum(-1) / np.maximum(both.sum(-1), 1)).astype(np.float32)

    # saturation: samples near an extreme that do not move (a clipped plateau, also after resampling)
    hi = np.where(finite, x, -np.inf).max(-1)
    lo = np.where(finite, x, np.inf).min(-1)
    span = np.where(np.isfinite(hi - lo), hi - lo, 0.0).astype(np.float32)
    # resting: no move to the next sample, or to the one after (resampling leaves a period-2 ripple)
    tol = (p.saturation_still * span)[..., None]
    resting = np.pad((step <= tol) & both, [(0, 0), (0, 0), (0, 1)])
    resting[..., :-2] |= (np.abs(x[..., 2:] - x[..., :-2]) <= tol) & finite[..., 2:] & finite[..., :-2]
    near = (p.saturation_near * span)[..., None]
    run = max(1, round(p.saturation_run_s * p.fs))
    least = (p.usable_saturation * valid)[:, None]
    at_hi = _in_runs(resting & (x >= hi[..., None] - near), run, least)
    at_lo = _in_runs(resting & (x <= lo[..., None] + near), run, least)
    del step, both, resting
    saturation = (np.maximum(at_hi, at_lo) * per_valid).astype(np.float32)
    extreme = np.where(at_hi >= at_lo, hi, -lo)
    extreme = np.where(np.isfinite(extreme), extreme, 0.0).astype(np.float32)

    # endpoints joined by a line, so that the FFT sees no jump at the wrap-around
    edge = max(1, round(p.edge_s * p.fs))
    ends = np.clip(valid - edge, 0, samples - edge)
    a = x[..., :edge].mean(-1)
    b = np.take_along_axis(x, (ends[:, None] + np.arange(edge))[:, None, :], axis=-1).mean(-1)
    ramp = np.arange(samples, dtype=np.float32) / max(samples - 1, 1)
    line = a[..., None] + (b - a)[..., None] * ramp
    x -= line
    spectrum = fft.rfft(x, axis=-1)
    del x
    freqs = fft.rfftfreq(samples, 1.0 / p.fs)
    powerline = _mains_amplitude(spectrum.real**2 + spectrum.imag**2, freqs, p, samples)

    low = int(np.searchsorted(freqs, p.baseline_max_hz, side="right"))
    step_s = max(1, edge // 2)  # a few points per second are enough for the wander
    coarse = samples // step_s
    at = np.arange(coarse) * (samples / coarse)  # where the coarse points of the inverse FFT lie
    ramp_at = (a[..., None] + (b - a)[..., None] * (at / max(samples - 1, 1))).astype(np.float32)
    wander = fft.irfft(spectrum[..., :low], n=coarse, axis=-1) * (coarse / samples) + ramp_at
    inside = (at < valid[:, None])[:, None, :]
    top = np.where(inside, wander, -np.inf).max(-1)
    bottom = np.where(inside, wander, np.inf).min(-1)
    baseline = ((top - bottom) / 2).astype(np.float32)

    # clean band at clean_fs (it holds nothing above clean_band_hz), high band at full rate
    n_clean = samples * p.clean_fs // p.fs
    upto = int(np.searchsorted(freqs, p.clean_band_hz[1], side="right"))
    band = spectrum[..., :upto] * (freqs[:upto] >= p.clean_band_hz[0])
    clean = (fft.irfft(band, n=n_clean, axis=-1) * (n_clean / samples)).astype(np.float32)
    valid_clean = valid * p.clean_fs // p.fs
    mains = np.zeros(freqs.shape, dtype=bool)
    for f0 in p.mains_hz:
        mains |= np.abs((freqs + p.mains_halfwidth_hz) % f0 - p.mains_halfwidth_hz) <= p.mains_halfwidth_hz
    spectrum[..., (freqs < p.emg_min_hz) | mains] = 0
    hf = fft.irfft(spectrum, n=samples, axis=-1).astype(np.float32)
    del spectrum

    sq = clean * clean
    m2 = sq.sum(-1) / np.maximum(valid_clean, 1)[:, None]
    m4 = (sq * sq).sum(-1) / np.maximum(valid_clean, 1)[:, None]  # (not clean**4: a float power is slow)
    del sq
    kurtosis = np.where(m2 > 0, m4 / np.where(m2 > 0, m2, 1.0) ** 2, np.nan).astype(np.float32)
    rms = np.sqrt(m2).astype(np.float32)

    clipped = (saturation > p.usable_saturation) & (extreme >= p.usable_saturation_mv)
    usable = (missing <= p.usable_missing) & (still <= p.usable_still) & ~clipped
    peaks = detect_r_peaks(clean, usable, valid_clean, p)
    corr, p_corr, amp, mean_beat = _beat_indices(clean, peaks, valid_clean, p)
    emg = _emg(hf, peaks, valid, p)

    gone = count == 0
    nan_if_gone = {"powerline": powerline, "baseline": baseline, "emg": emg, "rms": rms, "kurtosis": kurtosis}
    out = {k: np.where(gone, np.nan, v).astype(np.float32) for k, v in nan_if_gone.items()}
    return LeadIndices(
        missing=missing,
        still=still,
        saturation=saturation,
        extreme=extreme,
        template_corr=np.where(gone, np.nan, corr).astype(np.float32),
        p_corr=np.where(gone, np.nan, p_corr).astype(np.float32),
        qrs_amplitude=np.where(gone, np.nan, amp).astype(np.float32),
        template=np.where(gone[..., None], np.nan, mean_beat),
        beats=np.array([len(r) for r in peaks], dtype=np.int64),
        **out,
    )
