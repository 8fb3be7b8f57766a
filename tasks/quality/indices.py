"""Per-lead signal-quality indices of 12-lead records, vectorized over records and leads.

Input: float32 (n, 12, samples) mV at one sampling rate, NaN where a lead or a padded tail has no
samples. One real FFT per lead gives the mains amplitude directly and, by masking, the low band
(baseline), the clean band (QRS/T) and the high band (muscle). R peaks are found once per record on
the energy of all usable leads together, so a noisy or missing lead does not hide the beats of the
others; the mean beat per lead then gives the template correlation (over the beat and in the P-wave
window), the QRS amplitude, the baseline (what moves below the band limit once the mean beat is taken
out at every beat) and is kept for the reversal detectors. Clipping is a plateau: a run of samples
that do not move, at the level beyond which the lead never goes, reached once for long or repeatedly.
Nothing here raises on flat, NaN, noise or huge input: indices that cannot be measured are NaN.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy import fft
from scipy.signal import find_peaks

from data_contracts.leads import CHEST_INDEX, LEAD_FIELD, LIMB_ELECTRODES

NOT_A_BEAT = -2  # beat class of a step or transient that the detector took for a beat
LONE_ECTOPIC = -1  # beat class of a beat of another origin, seen once


_LIMB_FIELD = np.asarray(LEAD_FIELD)[:, : len(LIMB_ELECTRODES)]  # each lead from RA, LA, LL


@dataclass(frozen=True)
class IndexParams:
    """How the indices are measured (the `indices` section of the QC profile)."""

    fs: int
    chunk_records: int
    clip_mv: float
    edge_s: float
    clean_band_hz: tuple[float, float]
    rms_band_hz: tuple[float, float]
    clean_fs: int
    detector_smooth_s: float
    detector_min_rr_s: float
    detector_height: float
    min_beats: int
    beat_window_s: tuple[float, float]
    qrs_window_s: tuple[float, float]
    t_window_s: tuple[float, float]
    p_window_s: tuple[float, float]
    baseline_band_hz: float
    baseline_fs: int
    baseline_window_s: tuple[float, float]
    baseline_fast_s: float  # the fast part of the baseline: what moves within this moving mean
    ectopic_corr: float
    ectopic_edge: float
    ectopic_edge_s: tuple[float, float]
    ectopic_presence: float
    ectopic_common: float
    ectopic_shift_s: float
    mains_hz: tuple[float, ...]
    mains_harmonics: int
    mains_halfwidth_hz: float
    mains_background_hz: tuple[float, float]
    emg_min_hz: float
    emg_window_s: float
    emg_burst_s: float
    emg_qrs_guard_s: tuple[float, float]  # around each R peak; a paced QRS follows its spike
    still_mv: float
    saturation_near: float
    saturation_level_mv: float
    saturation_level_rel: float
    saturation_cross: float
    saturation_run_s: float
    usable_missing: float
    usable_still: float
    usable_saturation: float
    # the leads whose departures the electrode test of a lone beat fits (`_electrode_share`): "all"
    # usable leads from qc/7; "chest", the profiles before it (all three limb electrodes then
    # reach the chest leads alike, and the test is their plain mean's: qc/6's)
    ectopic_leads: str = "chest"
    # the baseline places each beat at its exact time, aligned with its class mean on the QRS
    # within this many s (`beat_shifts`); 0, the profiles before qc/8: at the nearest sample
    baseline_align_s: float = 0.0

    def __post_init__(self) -> None:
        if self.ectopic_leads not in ("chest", "all"):
            raise ValueError(f"QC profile: ectopic_leads is 'chest' or 'all', not {self.ectopic_leads!r}")
        if self.baseline_align_s < 0:
            raise ValueError(f"QC profile: baseline_align_s is at least 0, not {self.baseline_align_s}")


@dataclass
class LeadIndices:
    """Indices per record and lead, (n, 12) float32 unless noted; NaN where not measurable."""

    missing: np.ndarray  # fraction of the record's valid samples that are NaN in this lead
    still: np.ndarray  # fraction of consecutive samples that do not move (lead-off)
    rms: np.ndarray  # rms in rms_band_hz (the QRS band: no wander, no mains), mV
    saturation: np.ndarray  # fraction of samples on plateaus at the level the lead never passes
    plateaus: np.ndarray  # how many such plateaus (clipping reaches its level again and again)
    powerline: np.ndarray  # mains amplitude (50 or 60 Hz with harmonics, the larger), mV
    baseline: np.ndarray  # half peak-to-peak below baseline_band_hz once the beats are taken out, mV
    baseline_fast: np.ndarray  # the same of its fast part (less its moving mean over baseline_fast_s)
    emg: np.ndarray  # rms above emg_min_hz outside QRS, in the noisiest emg_burst_s, mV
    template_corr: np.ndarray  # mean correlation of each beat with the lead's mean beat
    p_corr: np.ndarray  # the same in the P-wave window: low where no P wave leads the beats (AF)
    kurtosis: np.ndarray  # kurtosis of the clean-band signal (3 for Gaussian noise)
    qrs_amplitude: np.ndarray  # peak-to-peak of the mean beat in the QRS window, mV
    beat_amplitude: np.ndarray  # peak-to-peak of the whole mean beat (P wave to T), mV
    template: np.ndarray  # (n, 12, beat window at clean_fs) the mean beat, mV; NaN without beats
    beats: np.ndarray  # (n,) int: R peaks found in the record

    def take(self, rows: np.ndarray) -> LeadIndices:
        """The indices of the records at `rows` (positions)."""
        return LeadIndices(**{f.name: getattr(self, f.name)[rows] for f in fields(self)})


def masked_median(values: np.ndarray, keep: np.ndarray, empty: float) -> np.ndarray:
    """Median along the last axis of the finite values where `keep`; `empty` where there are none."""
    ok = keep & np.isfinite(values)
    v = np.sort(np.where(ok, values, np.nan), axis=-1)  # NaN sorts last
    count = ok.sum(-1, keepdims=True)
    lo = np.take_along_axis(v, np.maximum(count - 1, 0) // 2, axis=-1)[..., 0]
    hi = np.take_along_axis(v, np.minimum(count // 2, v.shape[-1] - 1), axis=-1)[..., 0]
    return np.where(count[..., 0] > 0, (lo + hi) / 2, empty)


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
    """(leads, beats) correlation of each beat (leads, beats, window) with the template (leads, window)."""
    b = beats - beats.mean(axis=-1, keepdims=True)
    t = template - template.mean(axis=-1, keepdims=True)
    num = np.einsum("lbw,lw->lb", b, t)
    den = np.sqrt((b**2).sum(-1) * (t**2).sum(-1)[:, None])
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def beat_offsets(p: IndexParams) -> np.ndarray:
    """The mean beat's samples (at clean_fs) relative to its R peak: beat_window_s."""
    return np.arange(round(p.beat_window_s[0] * p.clean_fs), round(p.beat_window_s[1] * p.clean_fs))


def beat_windows(p: IndexParams) -> dict[str, np.ndarray]:
    """Boolean masks over the mean-beat samples (at clean_fs): `qrs`, `t` and `p` wave windows."""
    offsets = beat_offsets(p)
    spans = {"qrs": p.qrs_window_s, "t": p.t_window_s, "p": p.p_window_s}
    return {k: (offsets >= a * p.clean_fs) & (offsets <= b * p.clean_fs) for k, (a, b) in spans.items()}


def _beat_indices(
    clean: np.ndarray, peaks: list[np.ndarray], valid: np.ndarray, usable: np.ndarray, p: IndexParams
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[np.ndarray]]:
    """Template correlation (over the beat and the P window), QRS and whole-beat peak-to-peak, the
    mean beat, and per record the morphology class of each R peak: all 0 where every beat is like
    the mean beat (the common case), else `beat_classes` and `_settle_lone`; a beat cut by the
    window's ends takes class 0. Where beats of two or more morphologies recur (bigeminy, paced and
    own beats), the template correlation is each beat's with its class mean: a rhythm is not noise."""
    n, leads, _ = clean.shape
    corr, p_corr, amp, beat_amp = (np.full((n, leads), np.nan, dtype=np.float32) for _ in range(4))
    offsets = beat_offsets(p)
    mean_beat = np.full((n, leads, len(offsets)), np.nan, dtype=np.float32)
    classes = [np.zeros(len(r), dtype=np.int64) for r in peaks]
    windows = beat_windows(p)
    qrs, p_wave = windows["qrs"], windows["p"]
    for i, (r, length) in enumerate(zip(peaks, valid, strict=True)):
        whole = (r + offsets[0] >= 0) & (r + offsets[-1] < length)
        if whole.sum() < p.min_beats:
            continue
        beats = clean[i][:, r[whole, None] + offsets]  # (leads, beats, window)
        template = mean_beat[i] = beats.mean(axis=1)
        per_beat = _beat_corr(beats, template)
        corr[i] = per_beat.mean(axis=1)
        p_corr[i] = _beat_corr(beats[..., p_wave], template[:, p_wave]).mean(axis=1)
        amp[i] = np.ptp(template[:, qrs], axis=1)
        beat_amp[i] = np.ptp(template, axis=1)
        if usable[i].any() and (np.median(np.nan_to_num(per_beat[usable[i]]), axis=0) < p.ectopic_corr).any():
            classes[i][whole] = beat_classes(beats[usable[i]], p)
            rows = np.flatnonzero(usable[i])
            _settle_lone(clean[i][rows, :length], r, classes[i], rows, offsets, qrs, p)
            kind = classes[i][whole]
            alike = [c for c in range(kind.max(initial=-1) + 1) if (kind == c).sum() >= 2]
            if (
                sum((kind == c).sum() for c in alike) >= p.min_beats
            ):  # rhythm is no noise: each class its mean
                per_class = [_beat_corr(beats[:, kind == c], beats[:, kind == c].mean(axis=1)) for c in alike]
                corr[i] = np.concatenate(per_class, axis=1).mean(axis=1)
    return corr, p_corr, amp, beat_amp, mean_beat, classes


def beat_classes(beats: np.ndarray, p: IndexParams) -> np.ndarray:
    """(beats,) morphology class of each beat (leads, beats, window): beats whose median correlation
    over the leads reaches ectopic_corr are alike; classes of at least two alike beats are numbered
    from the commonest (0); a beat alike to no other is LONE_ECTOPIC until `_settle_lone` says."""
    n = beats.shape[1]
    z = beats - beats.mean(axis=-1, keepdims=True)
    z /= np.maximum(np.sqrt((z * z).sum(axis=-1, keepdims=True)), 1e-12)
    alike = np.median(np.einsum("lbw,lcw->lbc", z, z), axis=0) >= p.ectopic_corr
    classes = np.full(n, LONE_ECTOPIC, dtype=np.int64)
    free = np.ones(n, dtype=bool)
    for k in range(n):
        seed = int(np.argmax(np.where(free, (alike & free).sum(axis=1), -1)))
        members = alike[seed] & free
        if members.sum() < 2:
            break
        classes[members] = k
        free &= ~members
    return classes


def _settle_lone(
    signal: np.ndarray,
    r: np.ndarray,
    classes: np.ndarray,
    leads: np.ndarray,
    offsets: np.ndarray,
    qrs: np.ndarray,
    p: IndexParams,
) -> None:
    """Decide the lone beats of one record in place (`classes`, `r`), against the mean of class 0
    (signal: the usable leads `leads` x valid samples). A lone beat that reaches
    ectopic_corr once shifted by up to ectopic_shift_s is a class-0 beat whose R peak an artifact
    pulled aside: it gets the better peak. Otherwise it is LONE_ECTOPIC if it is a complex of the
    heart (medians over the leads): its net change across ectopic_edge_s (wide enough for a wide
    ectopic QRS) below ectopic_edge of its peak-to-peak there (not an edge), its QRS-window
    peak-to-peak at least ectopic_presence of class 0's (on every lead, not on one electrode's), and,
    with three chest leads or more, its departures from class 0 on the ectopic_leads not one limb
    electrode's artifact (`_electrode_share` at least ectopic_common); else NOT_A_BEAT."""
    length = signal.shape[1]
    lone = np.flatnonzero(classes == LONE_ECTOPIC)
    first = np.flatnonzero((classes == 0) & (r + offsets[0] >= 0) & (r + offsets[-1] < length))
    if not lone.size or not first.size:
        return
    ref = signal[:, r[first, None] + offsets].mean(axis=1)
    around = (offsets >= p.ectopic_edge_s[0] * p.clean_fs) & (offsets <= p.ectopic_edge_s[1] * p.clean_fs)
    shifts = np.arange(-round(p.ectopic_shift_s * p.clean_fs), round(p.ectopic_shift_s * p.clean_fs) + 1)
    chest = np.isin(leads, CHEST_INDEX)
    fitted = np.ones(len(leads), dtype=bool) if p.ectopic_leads == "all" else chest
    for k in lone:
        pos = r[k] + shifts[:, None] + offsets
        fits = (pos[:, 0] >= 0) & (pos[:, -1] < length)
        if not fits.any():
            classes[k] = NOT_A_BEAT
            continue
        match = np.median(np.nan_to_num(_beat_corr(signal[:, pos[fits]], ref)), axis=0)
        if match.max() >= p.ectopic_corr:
            r[k] += shifts[fits][np.argmax(match)]
            classes[k] = 0
            continue
        beat = signal[:, pos[fits][len(pos[fits]) // 2]]
        e = beat[:, around]
        edge = np.median(np.abs(e[:, -1] - e[:, 0]) / np.maximum(np.ptp(e, axis=-1), 1e-6))
        present = np.median(np.ptp(beat[:, qrs], axis=-1) / np.maximum(np.ptp(ref[:, qrs], axis=-1), 1e-6))
        electrode = False
        if chest.sum() >= 3:
            d = _moving_mean(beat[fitted] - ref[fitted], max(1, round(0.04 * p.clean_fs)))
            share = _electrode_share(d - d.mean(axis=-1, keepdims=True), leads[fitted])
            electrode = share < p.ectopic_common
        heart = edge < p.ectopic_edge and present >= p.ectopic_presence and not electrode
        classes[k] = LONE_ECTOPIC if heart else NOT_A_BEAT


def _electrode_share(departure: np.ndarray, leads: np.ndarray) -> float:
    """Of the energy of a beat's departures from its class mean (`leads` x samples), the share left
    once the best single waveform at one limb electrode is taken out, the smallest over RA, LA and
    LL. Such a waveform reaches the leads with that electrode's lead-field weights (the limb leads
    by Einthoven and Goldberger, every chest lead at -1/3 through Wilson's terminal), so an artifact
    at one limb electrode leaves little; an ectopic beat changes the leads in no such fixed pattern
    (a beat concordant over V1-V6 still changes lead II, which an LA artifact leaves alone)."""
    total = float((departure * departure).sum())
    if total <= 0:
        return 1.0
    weights = _LIMB_FIELD[leads]  # (leads, limb electrodes)
    fitted = (weights.T @ departure) ** 2  # per electrode and sample: (w . d)^2, / |w|^2 below
    explained = fitted.sum(axis=-1) / np.maximum((weights * weights).sum(axis=0), 1e-12)
    return 1.0 - float(explained.max()) / total


def _half_ptp(rest: np.ndarray) -> np.ndarray:
    """Half the peak-to-peak along the last axis, NaN where there are no samples."""
    if not rest.shape[-1]:
        return np.full(rest.shape[:-1], np.nan)
    return (rest.max(axis=-1) - rest.min(axis=-1)) / 2


def _fast_part(rest: np.ndarray, width: int) -> np.ndarray:
    """(leads, samples) less its centred moving mean over `width` samples, where that is whole:
    what moves faster than breathing (electrode motion, the edge of a step)."""
    if rest.shape[-1] <= width:
        return rest[:, :0]
    total = np.cumsum(np.pad(rest, ((0, 0), (1, 0))), axis=-1)
    mean = (total[:, width:] - total[:, :-width]) / width
    return rest[:, width // 2 : width // 2 + mean.shape[-1]] - mean


def _baseline(
    low: np.ndarray,
    peaks: list[np.ndarray],
    classes: list[np.ndarray],
    valid: np.ndarray,
    p: IndexParams,
    shifts: list[np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Half the peak-to-peak of the low band (n, leads, samples at baseline_fs) once each beat's
    class mean there (over baseline_window_s, P wave to the end of T) is taken out: respiratory
    wander, steps and electrode-motion transients stay, the beats go. A later beat's window
    overwrites an earlier one's where they overlap; between windows the beats' part is the line
    joining the class means' ends. Lone ectopic beats are left out, as is what lies before the first
    R peak's window or after the last (a beat cut off by the window's start, its R peak not found,
    would stay whole) and the first and last edge_s (the band limit rings at the window's ends); what the
    detector took for a beat but is none stays in. Without a class of at least two whole beats, the
    low band as it is. Also that of its fast part (`_fast_part` over baseline_fast_s): respiration
    moves the baseline of a clean recording slowly, electrode motion and steps move it fast. With
    `shifts` (`beat_shifts`, from qc/8) each beat sits at its R peak plus its shift, between two
    samples: the class means are read and drawn there by linear interpolation; without, at the
    nearest sample to the R peak (10 ms at 100 Hz: a tall QRS leaves tenths of a mV)."""
    n, leads, m = low.shape
    lo_s, hi_s = p.baseline_window_s
    offsets = np.arange(round(lo_s * p.baseline_fs), round(hi_s * p.baseline_fs))
    qrs = (offsets >= p.qrs_window_s[0] * p.baseline_fs) & (offsets <= p.qrs_window_s[1] * p.baseline_fs)
    idx = np.arange(m)
    edge = round(p.edge_s * p.baseline_fs)
    out, fast = (np.empty((n, leads), dtype=np.float32) for _ in range(2))
    width = max(1, round(p.baseline_fast_s * p.baseline_fs))
    for i in range(n):
        keep = (idx >= edge) & (idx < valid[i] - edge)
        exact = peaks[i] * (p.baseline_fs / p.clean_fs)
        if shifts is not None:
            exact = exact + shifts[i] * p.baseline_fs
        start = np.round(exact).astype(np.int64)
        frac = (exact - start).astype(low.dtype)  # where each beat lies between two samples
        pos = start[:, None] + offsets
        inside = (pos >= 0) & (pos < valid[i])
        whole = inside.all(axis=1)
        kind = classes[i]
        means = np.zeros((max(int(kind.max(initial=-1)) + 1, 1), leads, len(offsets)), dtype=low.dtype)
        known = np.zeros(len(means), dtype=bool)
        for c in range(len(means)):
            members = whole & (kind == c)
            if members.sum() < 2:
                continue
            seen = low[i][:, pos[members]]  # (leads, beats, window), at the nearest sample
            if shifts is not None:  # each beat read at its own place between two samples
                f = np.abs(frac[members])[:, None]
                step = np.sign(frac[members]).astype(np.int64)[:, None]
                nearby = np.clip(pos[members] + step, 0, max(valid[i] - 1, 0))
                seen = seen * (1 - f) + low[i][:, nearby] * f
            means[c], known[c] = seen.mean(axis=1), True
        beat = (kind >= 0)[:, None] & inside & known[np.maximum(kind, 0)][:, None]
        if beat.any():
            train = np.zeros((leads, m), dtype=low.dtype)
            shapes = means[np.maximum(kind, 0)]  # (beats, leads, window)
            if shifts is not None:  # each drawn at its beat's place between two samples
                ends = np.concatenate([shapes[..., :1], shapes, shapes[..., -1:]], axis=-1)
                f = frac[:, None, None]
                shapes = shapes * (1 - np.abs(f)) + np.where(f > 0, ends[..., :-2], ends[..., 2:]) * np.abs(f)
            train[:, pos[beat]] = shapes.transpose(1, 0, 2)[:, beat]
            covered = np.zeros(m, dtype=bool)
            covered[pos[beat]] = True
            keep[pos[(kind == LONE_ECTOPIC)[:, None] & inside]] = False
            keep[pos[beat & qrs]] = False  # R peaks a sample apart leave their QRS slopes behind
            keep &= (idx >= pos[0, 0]) & (idx <= pos[-1, -1])
            at = np.flatnonzero(keep)
            beats_part = train[:, at]
            gap = ~covered[at]
            if gap.any():  # the line between the neighbouring windows' ends
                before = np.maximum.accumulate(np.where(covered, idx, -1))[at[gap]]
                after = np.minimum.accumulate(np.where(covered, idx, m)[::-1])[::-1][at[gap]]
                before, after = np.where(before < 0, after, before), np.where(after >= m, before, after)
                weight = (at[gap] - before) / np.maximum(after - before, 1)
                beats_part[:, gap] = train[:, before] * (1 - weight) + train[:, after] * weight
            rest = low[i][:, at] - beats_part
        else:
            rest = low[i][:, keep]
        out[i], fast[i] = _half_ptp(rest), _half_ptp(_fast_part(rest, width))
    return out, fast


def beat_shifts(
    clean: np.ndarray,
    peaks: list[np.ndarray],
    classes: list[np.ndarray],
    valid: np.ndarray,
    usable: np.ndarray,
    p: IndexParams,
) -> list[np.ndarray]:
    """Per record, each beat's time against its R peak (s, (beats,), 0 where not measured): where
    the QRS of the usable leads together best matches its class mean in the clean band, searched
    within baseline_align_s (whole samples, then a parabola through the best three; at the range's
    edge through the three at the edge, held within the range). The R peak
    is the top of a smoothed energy and jitters against the QRS by a few ms; a tall QRS misplaced
    by 4 ms leaves tenths of a mV in the baseline. A baseline artifact moves the QRS little."""
    offsets = beat_offsets(p)
    qrs_at = offsets[beat_windows(p)["qrs"]]
    most = max(1, round(p.baseline_align_s * p.clean_fs))
    steps = np.arange(-most, most + 1)
    span = np.arange(qrs_at[0] - most, qrs_at[-1] + most + 1)
    out = []
    for i, (r, length) in enumerate(zip(peaks, valid, strict=True)):
        shift = np.zeros(len(r))
        out.append(shift)
        # beats whose whole window lies inside, searched as far as it goes and a sample more
        room = (r + offsets[0] - most - 1 >= 0) & (r + offsets[-1] + most + 1 < length)
        kind = np.where(room, classes[i], -1)
        if not usable[i].any() or kind.max(initial=-1) < 0:
            continue
        placed = np.flatnonzero(kind >= 0)
        seg = clean[i][:, r[placed, None] + span]
        views = sliding_window_view(seg, len(qrs_at), axis=-1)  # (leads, beats, steps, qrs)
        for c in range(int(kind.max()) + 1):
            mine = kind[placed] == c
            if mine.sum() < 2:
                continue
            ref = views[:, mine, most].mean(axis=1)  # a zero-mean reference ignores a constant
            ref = (ref - ref.mean(axis=-1, keepdims=True)) * usable[i][:, None]
            score = np.einsum("lbsq,lq->bs", views[:, mine], ref)
            k = np.clip(np.argmax(score, axis=1), 1, len(steps) - 2)
            each = np.arange(len(k))
            y0, y1, y2 = score[each, k - 1], score[each, k], score[each, k + 1]
            bend = y0 - 2 * y1 + y2
            top = np.where(bend < 0, 0.5 * (y0 - y2) / np.where(bend < 0, bend, -1.0), 0.0)
            shift[placed[mine]] = np.clip(steps[k] + top, -most, most) / p.clean_fs
    return out


def _emg(hf: np.ndarray, peaks: list[np.ndarray], valid: np.ndarray, p: IndexParams) -> np.ndarray:
    """RMS of the high band outside QRS complexes (emg_qrs_guard_s around each R peak) and the first
    and last edge_s (where the band limit rings on a beat cut by the window), per emg_window_s; the
    largest over any emg_burst_s of consecutive windows of their median, so that a burst counts and a
    lone spike (a pacing or static spike fills one window) does not."""
    n, leads, samples = hf.shape
    edge = round(p.edge_s * p.fs)
    at = np.arange(samples)[None, :]
    keep = (at >= edge) & (at < valid[:, None] - edge)
    guard = np.arange(round(p.emg_qrs_guard_s[0] * p.fs), round(p.emg_qrs_guard_s[1] * p.fs) + 1)
    for i, r in enumerate(peaks):
        around = (r[:, None] * p.fs // p.clean_fs + guard).ravel()
        keep[i, around[(around >= 0) & (around < samples)]] = False
    width = round(p.emg_window_s * p.fs)
    m = samples // width
    power = (hf[..., : m * width] ** 2 * keep[:, None, : m * width]).reshape(n, leads, m, width).sum(-1)
    count = keep[:, : m * width].reshape(n, m, width).sum(-1)[:, None, :]
    rms = np.where(count > width // 2, np.sqrt(power / np.maximum(count, 1)), -np.inf)
    k = min(m, max(1, round(p.emg_burst_s / p.emg_window_s)))
    runs = np.sort(np.stack([rms[..., j : m - k + 1 + j] for j in range(k)], axis=-1), axis=-1)
    out = runs[..., k // 2].max(axis=-1)
    return np.where(np.isfinite(out), out, np.nan).astype(np.float32)


def _in_runs(mask: np.ndarray, run: int, least: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per lead, how many True samples along the last axis lie in runs of at least `run` (isolated
    resting samples, an R apex or quantized noise, are no plateau), and how many such runs. Only
    leads with at least `least` True samples can reach a threshold: the rest report their plain
    count, which is below it anyway, and no run."""
    out = mask.sum(-1)
    runs = np.zeros_like(out)
    idx = np.nonzero(out >= least)
    if idx[0].size:
        m = mask[idx]
        c = np.cumsum(m, axis=-1, dtype=np.int32)
        window = c[:, run - 1 :] - np.pad(c, [(0, 0), (1, 0)])[:, : c.shape[-1] - run + 1]
        full = window == run
        starts = (full[:, 1:] & ~full[:, :-1]).sum(-1) + full[:, 0]
        out[idx] = full.sum(-1) + (run - 1) * starts
        runs[idx] = starts
    return out, runs


def _plateaus(
    x: np.ndarray, finite: np.ndarray, still: np.ndarray, level: np.ndarray, valid: np.ndarray, p: IndexParams
) -> tuple[np.ndarray, np.ndarray]:
    """Clipping at any level: per lead, the share of the valid samples on plateaus and how many
    plateaus. A sample rests when it equals its next sample (`still`, within still_mv) or its
    next-but-one (resampling leaves a period-2 ripple on a plateau); a plateau is a run of at least
    saturation_run_s of resting samples at the level of the highest (lowest) resting sample, within
    saturation_level_mv plus saturation_level_rel of that level as stored (`level` adds back the
    lead mean), and counts only where at most saturation_cross of the samples go beyond it: a limit
    the lead never passes, not a flat stretch inside its range (an isoelectric segment, a wander
    crest). Only leads with enough samples within saturation_near of their span from the extreme
    (room for the ringing that resampling adds where a plateau starts) are looked at closely.
    x is centred (so its extremes are finite samples), 0 where not finite."""
    run = max(1, round(p.saturation_run_s * p.fs))
    least = p.usable_saturation * valid
    share = np.zeros(x.shape[:2], dtype=np.float32)
    count = np.zeros(x.shape[:2], dtype=np.int64)
    hi, lo = x.max(axis=-1), x.min(axis=-1)
    band = (p.saturation_near * (hi - lo))[..., None]
    every = 4  # a plateau of saturation_run_s rests in every 4th sample too: look there first
    sparse = x[..., ::every]
    still_sparse = np.zeros(sparse.shape, dtype=bool)
    still_sparse[..., :-1] = np.abs(np.diff(sparse, axis=-1)) <= p.still_mv
    for upper in (True, False):  # the highest resting level, then the lowest
        edge = hi[..., None] - band if upper else lo[..., None] + band
        seen = still_sparse & (sparse >= edge if upper else sparse <= edge)
        lead = np.nonzero(every * np.count_nonzero(seen, axis=-1) >= least[:, None] / 2)
        if not lead[0].size:
            continue
        xs, fs, rows = x[lead], finite[lead], lead[0]
        near = xs >= edge[lead] if upper else xs <= edge[lead]
        rest = np.zeros(xs.shape, dtype=bool)
        rest[:, :-1] = still[lead]
        rest[:, :-2] |= (np.abs(xs[:, 2:] - xs[:, :-2]) <= p.still_mv) & fs[:, 2:] & fs[:, :-2]
        rest &= near
        top = np.where(rest, xs, -np.inf).max(-1) if upper else np.where(rest, xs, np.inf).min(-1)
        tol = p.saturation_level_mv + p.saturation_level_rel * np.abs(top + level[lead])
        inner, outer = (top - tol, top + tol) if upper else (top + tol, top - tol)
        on = rest & (xs >= inner[:, None] if upper else xs <= inner[:, None])
        at, runs = _in_runs(on, run, least[rows])
        past = np.count_nonzero((xs > outer[:, None] if upper else xs < outer[:, None]) & fs, axis=-1)
        side = np.where(past <= p.saturation_cross * valid[rows], at / np.maximum(valid[rows], 1), 0.0)
        count[lead] = np.where(side > share[lead], runs, count[lead])
        share[lead] = np.maximum(share[lead], side)
    return share, count


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

    both = finite[..., 1:] & finite[..., :-1]
    resting = (np.abs(np.diff(x, axis=-1)) <= p.still_mv) & both
    still = (resting.sum(-1) / np.maximum(both.sum(-1), 1)).astype(np.float32)

    saturation, plateaus = _plateaus(x, finite, resting, mean, valid, p)
    del resting, both

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
    power = spectrum.real**2 + spectrum.imag**2
    powerline = _mains_amplitude(power, freqs, p, samples)
    in_band = (freqs >= p.rms_band_hz[0]) & (freqs <= p.rms_band_hz[1])  # Parseval, one-sided
    rms = np.sqrt(2 * power[..., in_band].sum(-1) / samples / np.maximum(valid, 1)[:, None])
    del power

    # the low band at baseline_fs, with the line between the endpoints given back
    n_low = max(1, samples * p.baseline_fs // p.fs)
    upto_low = min(int(np.searchsorted(freqs, p.baseline_band_hz, side="right")), n_low // 2 + 1)
    at = np.arange(n_low) * (samples / n_low)  # where the points of the inverse FFT lie
    ramp_at = (a[..., None] + (b - a)[..., None] * (at / max(samples - 1, 1))).astype(np.float32)
    low = fft.irfft(spectrum[..., :upto_low], n=n_low, axis=-1) * (n_low / samples) + ramp_at

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

    clipped = saturation > p.usable_saturation
    usable = (missing <= p.usable_missing) & (still <= p.usable_still) & ~clipped
    peaks = detect_r_peaks(clean, usable, valid_clean, p)
    corr, p_corr, amp, beat_amp, mean_beat, classes = _beat_indices(clean, peaks, valid_clean, usable, p)
    shifts = beat_shifts(clean, peaks, classes, valid_clean, usable, p) if p.baseline_align_s > 0 else None
    baseline, baseline_fast = _baseline(low, peaks, classes, valid * p.baseline_fs // p.fs, p, shifts)
    emg = _emg(hf, peaks, valid, p)

    gone = count == 0
    nan_if_gone = {
        "powerline": powerline,
        "baseline": baseline,
        "baseline_fast": baseline_fast,
        "emg": emg,
        "rms": rms,
        "kurtosis": kurtosis,
    }
    out = {k: np.where(gone, np.nan, v).astype(np.float32) for k, v in nan_if_gone.items()}
    return LeadIndices(
        missing=missing,
        still=still,
        saturation=saturation,
        plateaus=plateaus,
        template_corr=np.where(gone, np.nan, corr).astype(np.float32),
        p_corr=np.where(gone, np.nan, p_corr).astype(np.float32),
        qrs_amplitude=np.where(gone, np.nan, amp).astype(np.float32),
        beat_amplitude=np.where(gone, np.nan, beat_amp).astype(np.float32),
        template=np.where(gone[..., None], np.nan, mean_beat),
        beats=np.array([len(r) for r in peaks], dtype=np.int64),
        **out,
    )
