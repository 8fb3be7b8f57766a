"""Artifacts as real electrocardiographs record them, injected into real 12-lead windows for
bench/qc_real.py. A benchmark tool, written apart from the synthetic archive's generator
(tasks/synth): it shares no code or parameters with it, so the gate is not scored on the world
that its own code base draws.

Each kind draws its amplitudes, rates and timing from ranges and says where they come from. Noise
that arises at an electrode (wander, steps, motion, muscle, mains coupling, a floating input) is
added to that electrode's potential and reaches the leads through the lead field: a limb
electrode's noise enters the limb leads with Einthoven/Goldberger weights and every chest lead at
-1/3 through Wilson's central terminal; a chest electrode's noise enters its own lead only. Faults
of a recorded channel (clipping, a wrong per-lead gain) act on the lead itself; a device that
records I and II derives III, aVR, aVL and aVF from them (every real record in shared/data obeys
Einthoven's and Goldberger's identities to about 1 %), so a clipped I or II reaches those leads.

Sources:
- [NSTDB] Moody GB, Muldrow WE, Mark RG. A noise stress test for arrhythmia detectors. Computers
  in Cardiology 1984;11:381-4 (MIT-BIH Noise Stress Test Database: baseline wander `bw`, muscle
  `ma` and electrode motion `em`, recorded from active volunteers with standard electrodes).
- [SL] Sörnmo L, Laguna P. Bioelectrical Signal Processing in Cardiac and Neurological
  Applications, Elsevier 2005, ch. 7.2 (noise and artifacts in the ECG).
- [IEC25] IEC 60601-2-25:2011, diagnostic electrocardiographs: 0.05 Hz low-frequency response
  (a 3.2 s time constant), ±5 mV differential input range on a ±300 mV electrode offset.
- [IEC27] IEC 60601-2-27:2011, ECG monitors: the 0.5 Hz monitoring filter (0.32 s).
- [HW] Huhta JC, Webster JG. 60-Hz interference in electrocardiography. IEEE Trans Biomed Eng
  1973;20:91-101 (mains enters through the electrodes' impedance imbalance).
- [EN50160] EN 50160 voltage characteristics of public networks: 50 Hz ±1 %.
- [DeLuca] De Luca CJ. The use of surface electromyography in biomechanics. J Appl Biomech
  1997;13:135-63 (surface EMG 20-450 Hz, most power 50-150 Hz).
- [Batch] Batchvarov VN, Malik M, Camm AJ. Incorrect electrode cable connection during
  electrocardiographic recording. Europace 2007;9:1081-90 (limb and precordial cable swaps).
- [Formats] per-lead scale fields that a wrong header or reader gets wrong: WFDB `gain` per
  signal, DICOM Channel Sensitivity (003A,0210) per channel, MUSE XML LeadAmplitudeUnitsPerBit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.signal import butter, sosfilt

from data_contracts.leads import CANONICAL_LEADS, ELECTRODES, LEAD_FIELD, LIMB_SWAPS

FS = 500
RECORDED: tuple[int, ...] = (0, 1, 6, 7, 8, 9, 10, 11)  # I, II, V1-V6: the channels a cart digitizes


FIELD = np.array(LEAD_FIELD)  # (12, 9): each lead from the electrode potentials


@dataclass(frozen=True)
class Truth:
    """What one injection did: its kind, the flag the gate owes it, where it went, and its strength
    per lead in the unit of the QC profile's `unusable` entry for that flag (0 where untouched)."""

    kind: str
    flag: str
    detail: str
    strength: np.ndarray  # (12,)
    touched: np.ndarray  # (12,) bool: the lead differs from the clean window


def _t(n: int) -> np.ndarray:
    return np.arange(n) / FS


def _loguniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _smooth_noise(rng: np.random.Generator, n: int, cutoff_hz: float) -> np.ndarray:
    """Gaussian noise low-passed at `cutoff_hz`, scaled to unit rms."""
    sos = butter(2, cutoff_hz, fs=FS, output="sos")
    pad = 4 * FS
    y = sosfilt(sos, rng.standard_normal(n + pad))[pad:]
    return y / (np.sqrt(np.mean(y * y)) or 1.0)


def _half_ptp(a: np.ndarray) -> np.ndarray:
    return (a.max(-1) - a.min(-1)) / 2


def _electrode_noise(x: np.ndarray, electrode: int, noise: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x with `noise` on one electrode's potential, and the noise as each lead sees it (12, n)."""
    per_lead = FIELD[:, electrode, None] * noise[None, :]
    return x + per_lead, per_lead


def _touched(per_lead: np.ndarray) -> np.ndarray:
    return np.abs(per_lead).max(-1) > 0


def wander(x: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, Truth]:
    """Respiratory baseline wander [NSTDB bw; SL 7.2.1]: breathing at 0.1-0.5 Hz with breath-to-
    breath rate variation and an inspiration/expiration asymmetry (second harmonic), on one to three
    electrodes at 0.5-3 mV each, plus a slower electrode polarization drift. Strength: half the
    peak-to-peak of the wander in each lead."""
    n = x.shape[-1]
    rate = rng.uniform(0.1, 0.5) * (1 + 0.15 * _smooth_noise(rng, n, 0.05))
    phase = 2 * np.pi * np.cumsum(rate) / FS + rng.uniform(0, 2 * np.pi)
    breath = np.sin(phase) + rng.uniform(0, 0.4) * np.sin(2 * phase + rng.uniform(0, 2 * np.pi))
    breath /= _half_ptp(breath)
    added = np.zeros_like(x)
    sites = rng.choice(len(ELECTRODES), size=int(rng.integers(1, 4)), replace=False)
    for e in sites:
        amp = _loguniform(rng, 0.5, 3.0)
        drift = rng.uniform(0, 0.3) * amp * _smooth_noise(rng, n, 0.03)
        _, per_lead = _electrode_noise(x, int(e), rng.choice([-1, 1]) * amp * breath + drift)
        added += per_lead
    detail = "+".join(ELECTRODES[e] for e in sites)
    return x + added, Truth("wander", "baseline", detail, _half_ptp(added), _touched(added))


def _highpass_step(n: int, at: int, rise: int, tau_s: float) -> np.ndarray:
    """A unit step at sample `at` with a raised-cosine rise over `rise` samples, decaying as a
    first-order high-pass of time constant tau_s lets it (the recorder's low-frequency response)."""
    k = np.arange(n) - at
    edge = np.clip(k / max(rise, 1), 0, 1)
    rising = 0.5 - 0.5 * np.cos(np.pi * edge)
    return rising * np.exp(-np.clip(k, 0, None) / (tau_s * FS))


def step(x: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, Truth]:
    """Baseline step after a movement [SL 7.2.1]: the electrode's half-cell potential jumps by
    1-5 mV within 5-50 ms at a random time and the recorder's high-pass brings it back with the
    diagnostic 3.2 s [IEC25] or the monitoring 0.32 s [IEC27] time constant, or one between.
    Strength: half the peak-to-peak of the step in each lead."""
    n = x.shape[-1]
    tau = _loguniform(rng, 0.32, 3.2) if rng.random() < 0.5 else float(rng.choice([0.32, 3.2]))
    jump = rng.choice([-1, 1]) * rng.uniform(1.0, 5.0)
    shape = _highpass_step(n, int(rng.uniform(0.5, 9.5) * FS), int(rng.uniform(0.005, 0.05) * FS), tau)
    e = int(rng.integers(len(ELECTRODES)))
    y, per_lead = _electrode_noise(x, e, jump * shape)
    detail = f"{ELECTRODES[e]} {jump:+.1f} mV tau {tau:.2f} s"
    return y, Truth("step", "baseline", detail, _half_ptp(per_lead), _touched(per_lead))


def motion(x: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, Truth]:
    """Electrode motion artifact [NSTDB em; SL 7.2.3]: one to four transients of 0.15-1 s, each
    half a cycle to two cycles of a 0.5-6 Hz wave under a Hann window (it overlaps the QRS band and
    can mimic beats), 0.5-3 mV, on one electrode; after a third of them the skin stretch leaves a
    new level that the high-pass brings back. Strength: half the peak-to-peak in each lead."""
    n = x.shape[-1]
    t = _t(n)
    noise = np.zeros(n)
    for _ in range(int(rng.integers(1, 5))):
        width = rng.uniform(0.15, 1.0)
        centre = rng.uniform(width / 2, t[-1] - width / 2)
        cycles = rng.uniform(0.5, 2.0)
        inside = np.abs(t - centre) < width / 2
        window = np.where(inside, 0.5 + 0.5 * np.cos(2 * np.pi * (t - centre) / width), 0.0)
        wave = np.sin(2 * np.pi * cycles * (t - centre) / width + rng.uniform(0, 2 * np.pi))
        event = window * wave
        event *= rng.choice([-1, 1]) * _loguniform(rng, 0.5, 3.0) / (np.abs(event).max() or 1.0)
        if rng.random() < 1 / 3:
            after = int((centre + width / 2) * FS)
            event += rng.uniform(-1, 1) * _highpass_step(n, min(after, n - 1), 10, rng.uniform(0.32, 3.2))
        noise += event
    e = int(rng.integers(len(ELECTRODES)))
    y, per_lead = _electrode_noise(x, e, noise)
    return y, Truth("motion", "baseline", ELECTRODES[e], _half_ptp(per_lead), _touched(per_lead))


def _emg_noise(rng: np.random.Generator, n: int) -> np.ndarray:
    """Surface EMG [DeLuca]: Gaussian noise band-passed at 15-30 to 120-240 Hz, unit rms."""
    lo, hi = rng.uniform(15, 30), rng.uniform(120, 240)
    sos = butter(2, [lo, hi], btype="bandpass", fs=FS, output="sos")
    y = sosfilt(sos, rng.standard_normal(n + FS))[FS:]
    return y / np.sqrt(np.mean(y * y))


def _burst_rms(per_lead: np.ndarray, spans: list[tuple[int, int]]) -> np.ndarray:
    """Per lead, the largest rms over the full-strength part of the bursts."""
    return np.max([np.sqrt(np.mean(per_lead[:, a:b] ** 2, axis=-1)) for a, b in spans], axis=0)


def emg_burst(x: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, Truth]:
    """Muscle bursts [NSTDB ma; DeLuca]: one to three contractions of 0.3-2.5 s with 50-200 ms
    raised-cosine onsets and offsets (at most a third of the burst each), 0.05-0.3 mV rms, from the
    muscle under one electrode.
    Strength: the burst rms in each lead."""
    n = x.shape[-1]
    envelope = np.zeros(n)
    spans = []
    for _ in range(int(rng.integers(1, 4))):
        width = int(rng.uniform(0.3, 2.5) * FS)
        ramp = min(int(rng.uniform(0.05, 0.2) * FS), width // 3)
        start = int(rng.integers(0, n - width))
        shape = np.ones(width)
        rise = 0.5 - 0.5 * np.cos(np.pi * np.arange(ramp) / ramp)
        shape[:ramp], shape[-ramp:] = rise, rise[::-1]
        envelope[start : start + width] = np.maximum(envelope[start : start + width], shape)
        spans.append((start + ramp, start + width - ramp))
    noise = _loguniform(rng, 0.05, 0.3) * envelope * _emg_noise(rng, n)
    e = int(rng.integers(len(ELECTRODES)))
    y, per_lead = _electrode_noise(x, e, noise)
    return y, Truth("emg_burst", "emg", ELECTRODES[e], _burst_rms(per_lead, spans), _touched(per_lead))


def emg_tonic(x: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, Truth]:
    """Tonic muscle activity over the whole window [NSTDB ma; SL 7.2.2]: a tense or shivering
    patient, 0.05-0.2 mV rms with a slowly varying envelope, in a third of the draws modulated at
    4-7 Hz like a rest tremor. Strength: the rms over the window in each lead."""
    n = x.shape[-1]
    envelope = 1 + 0.3 * np.clip(_smooth_noise(rng, n, 1.0), -2, 2) / 2
    if rng.random() < 1 / 3:
        envelope *= 1 + 0.5 * np.sin(2 * np.pi * rng.uniform(4, 7) * _t(n))
    noise = envelope * _emg_noise(rng, n)
    noise *= _loguniform(rng, 0.05, 0.2) / np.sqrt(np.mean(noise * noise))
    e = int(rng.integers(len(ELECTRODES)))
    y, per_lead = _electrode_noise(x, e, noise)
    return y, Truth("emg_tonic", "emg", ELECTRODES[e], _burst_rms(per_lead, [(0, n)]), _touched(per_lead))


def _hum(rng: np.random.Generator, n: int, amplitude: float) -> tuple[np.ndarray, float, float]:
    """Mains hum [HW; EN50160]: 50 or 60 Hz off by up to 0.2 Hz, 2nd/3rd/4th harmonics at up to
    10/30/5 % (rectifier loads), amplitude swaying by up to 30 % at 0.05-0.5 Hz. Returns the hum,
    its combined sine amplitude (the root sum of squares over the harmonics) and the frequency."""
    t = _t(n)
    f0 = rng.choice([50.0, 60.0]) + rng.uniform(-0.2, 0.2)
    parts = [(1, 1.0), (2, rng.uniform(0, 0.1)), (3, rng.uniform(0, 0.3)), (4, rng.uniform(0, 0.05))]
    parts = [(h, a) for h, a in parts if h * f0 < FS / 2 - 5]
    hum = sum(a * np.sin(2 * np.pi * h * f0 * t + rng.uniform(0, 2 * np.pi)) for h, a in parts)
    sway = 1 + rng.uniform(0, 0.3) * np.sin(2 * np.pi * rng.uniform(0.05, 0.5) * t + rng.uniform(0, 6.3))
    combined = amplitude * np.sqrt(sum(a * a for _, a in parts))
    return amplitude * sway * hum, combined, f0


def mains(x: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, Truth]:
    """Mains interference [HW; EN50160]: the common-mode hum turned differential by one electrode's
    contact impedance, 0.05-0.5 mV. Strength: the combined sine amplitude in each lead."""
    n = x.shape[-1]
    hum, combined, f0 = _hum(rng, n, _loguniform(rng, 0.05, 0.5))
    e = int(rng.integers(len(ELECTRODES)))
    y, per_lead = _electrode_noise(x, e, hum)
    strength = np.abs(FIELD[:, e]) * combined
    return y, Truth("mains", "powerline", f"{ELECTRODES[e]} {f0:.1f} Hz", strength, _touched(per_lead))


def _derive_limb(x: np.ndarray) -> np.ndarray:
    """x with III, aVR, aVL, aVF recomputed from I and II, as a cart that records I and II does."""
    y = x.copy()
    i, ii = x[0], x[1]
    y[2], y[3], y[4], y[5] = ii - i, -(i + ii) / 2, i - ii / 2, ii - i / 2
    return y


def clip(x: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, Truth]:
    """Amplifier clipping at any level [IEC25]: electrode offset drift (0.5-3 mV at 0.05-0.3 Hz, in
    two thirds of the draws) carries a recorded channel into the amplifier's limit, upper, lower or
    both, which clips 10-50 % of the window flat at one level each time it is reached; in 30 % of the
    draws the limit is the format's extreme code (±32767 LSB of 1-5 µV: the lead sits at ±33-164 mV),
    else an amplifier limit anywhere inside the range. Samples are quantized to the LSB. A clipped I
    or II reaches the leads derived from it. Strength: the clipped share of the channel."""
    n = x.shape[-1]
    j = int(rng.choice(RECORDED))
    lsb = float(rng.choice([0.001, 0.0025, 0.00488, 0.005]))
    lead = x[j].copy()
    if rng.random() < 2 / 3:
        lead += _loguniform(rng, 0.5, 3.0) * np.sin(
            2 * np.pi * rng.uniform(0.05, 0.3) * _t(n) + rng.uniform(0, 2 * np.pi)
        )
    share = rng.uniform(0.1, 0.5)
    side = str(rng.choice(["upper", "lower", "both"]))
    hi = np.quantile(lead, 1 - share / (2 if side == "both" else 1)) if side != "lower" else np.inf
    lo = np.quantile(lead, share / (2 if side == "both" else 1)) if side != "upper" else -np.inf
    at_rail = rng.random() < 0.3
    if at_rail:  # the limit is the ADC's extreme code: the whole lead sits near it
        rail = 32767 * lsb
        shift = rail - hi if np.isfinite(hi) else -rail - lo
        lead, hi, lo = lead + shift, hi + shift, lo + shift
    clipped = np.round(np.clip(lead, lo, hi) / lsb) * lsb
    y = x.copy()
    y[j] = clipped
    if j in (0, 1):
        y = _derive_limb(y)
    strength = np.zeros(12)
    strength[j] = np.mean((clipped >= np.round(hi / lsb) * lsb) | (clipped <= np.round(lo / lsb) * lsb))
    detail = f"{CANONICAL_LEADS[j]} {side} at {'rail' if at_rail else 'amplifier'}"
    return y, Truth("clip", "saturation", detail, strength, np.abs(y - x).max(-1) > 0)


def leadoff_flat(x: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, Truth]:
    """Lead-off shown as a flat line (the Chapman records JS45542/44/51 hold such chest leads): a
    chest electrode's lead, or in a third of the draws every lead that uses a limb electrode, held
    at 0, at the last value or at an offset, in half of the draws with ±1 LSB (5 µV) of dither."""
    n = x.shape[-1]
    if rng.random() < 1 / 3:
        e = int(rng.integers(3))
        leads = np.flatnonzero(FIELD[:6, e] != 0)
    else:
        e = int(rng.integers(3, 9))
        leads = np.array([e + 3])
    y = x.copy()
    for j in leads:
        level = float(rng.choice([0.0, x[j, -1], rng.uniform(-2, 2)]))
        dither = rng.integers(-1, 2, n) * 0.005 if rng.random() < 0.5 else 0.0
        y[j] = level + dither
    strength = np.zeros(12)
    strength[leads] = 1.0
    return y, Truth("leadoff_flat", "flat", ELECTRODES[e], strength, strength > 0)


def leadoff_noise(x: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, Truth]:
    """A floating chest electrode [HW]: no ECG, mains hum of 0.1-2 mV and 0.02-0.3 mV rms of
    low-frequency-weighted (1/f) noise with a slow drift, as an open input picks them up."""
    n = x.shape[-1]
    hum, _, _ = _hum(rng, n, _loguniform(rng, 0.1, 2.0))
    pink = np.cumsum(rng.standard_normal(n))
    pink = pink - np.linspace(pink[0], pink[-1], n)
    pink *= _loguniform(rng, 0.02, 0.3) / (np.std(pink) or 1.0)
    e = int(rng.integers(3, 9))
    y = x.copy()
    y[e + 3] = hum + pink + rng.uniform(-1, 1)
    strength = np.zeros(12)
    strength[e + 3] = 1.0
    return y, Truth("leadoff_noise", "flat", ELECTRODES[e], strength, strength > 0)


def gain(x: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, Truth]:
    """A wrong per-lead scale [Formats]: one stored lead multiplied by 3-10 or divided by 3-10
    (log-uniform). Strength: the factor or its inverse."""
    j = int(rng.integers(12))
    g = _loguniform(rng, 3.0, 10.0)
    g = g if rng.random() < 0.5 else 1 / g
    y = x.copy()
    y[j] *= g
    strength = np.zeros(12)
    strength[j] = max(g, 1 / g)
    return y, Truth("gain", "amplitude", f"{CANONICAL_LEADS[j]} x{g:.2f}", strength, strength > 0)


def limb_swap_matrix(swap: str) -> np.ndarray:
    """(6, 6) M with the limb leads recorded after the cable swap = M @ the true limb leads: the
    electrode potentials trade places in the lead field; each recorded lead is then found among the
    true leads or their negatives."""
    a, b = (ELECTRODES.index(e) for e in swap.split("/"))
    perm = np.eye(3)
    perm[[a, b]] = perm[[b, a]]
    limb = FIELD[:6, :3]
    recorded = limb @ perm
    m = np.zeros((6, 6))
    for k, row in enumerate(recorded):
        for j, lead in enumerate(limb):
            for sign in (1.0, -1.0):
                if np.allclose(row, sign * lead):
                    m[k, j] = sign
    return m


def limb_swap(x: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, Truth]:
    """Limb cable interchange [Batch]: LA/RA, LA/LL or RA/LL. The chest leads do not change
    (Wilson's terminal is symmetric in the three). Strength 1 on each limb lead it changes."""
    swap = str(rng.choice(LIMB_SWAPS))
    m = limb_swap_matrix(swap)
    y = x.copy()
    y[:6] = m @ x[:6]
    changed = ~np.all(m == np.eye(6), axis=1)
    strength = np.zeros(12)
    strength[:6] = changed
    return y, Truth("limb_swap", "reversal", swap, strength, strength > 0)


def chest_swap(x: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, Truth]:
    """Precordial cable interchange [Batch]: two chest cables swapped, neighbours in 70 % of the
    draws (the commoner mistake), any two otherwise. Strength 1 on both leads."""
    if rng.random() < 0.7:
        a = int(rng.integers(5))
        pair = (a, a + 1)
    else:
        pair = tuple(int(k) for k in rng.choice(6, size=2, replace=False))
    i, j = (6 + k for k in pair)
    y = x.copy()
    y[[i, j]] = x[[j, i]]
    strength = np.zeros(12)
    strength[[i, j]] = 1.0
    pair = f"{CANONICAL_LEADS[i]}/{CANONICAL_LEADS[j]}"
    return y, Truth("chest_swap", "reversal", pair, strength, strength > 0)


KINDS: dict[str, Callable[[np.ndarray, np.random.Generator], tuple[np.ndarray, Truth]]] = {
    "wander": wander,
    "step": step,
    "motion": motion,
    "emg_burst": emg_burst,
    "emg_tonic": emg_tonic,
    "mains": mains,
    "clip": clip,
    "leadoff_flat": leadoff_flat,
    "leadoff_noise": leadoff_noise,
    "gain": gain,
    "limb_swap": limb_swap,
    "chest_swap": chest_swap,
}


def inject(x: np.ndarray, kind: str, rng: np.random.Generator) -> tuple[np.ndarray, Truth]:
    """One artifact of `kind` in a copy of one window x (12, samples) in mV at 500 Hz."""
    return KINDS[kind](np.asarray(x, dtype=np.float64).copy(), rng)
