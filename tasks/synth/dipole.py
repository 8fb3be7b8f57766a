"""The 3-D cardiac dipole: a sum of Gaussian components per beat with heart-rate variability.

In the spirit of McSharry's ECGSYN, each beat is a sum of Gaussian waves (P, Q, R, S, T), here
with a 3-D vector per wave so that every lead is a projection of the same dipole. The dipole is
evaluated for all samples at once: each sample takes the contributions of the beat before and
the beat after it, which covers every wave for heart rates up to the model's limit (130 bpm).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from tasks.synth.resources import load_json

MAX_HR_BPM = 130.0


@dataclass(frozen=True)
class BeatModel:
    """Gaussian components of one beat; times in s relative to the R peak, vectors in mV."""

    names: tuple[str, ...]
    center: np.ndarray  # (c,)
    width: np.ndarray  # (c,)
    vector: np.ndarray  # (c, 3)
    rr_scaled: np.ndarray  # (c,) bool: timing scales with sqrt(RR) (repolarization)
    qrs_end: float  # J point, s after the R peak

    def index(self, name: str) -> int:
        return self.names.index(name)

    def with_component(self, name: str, center: float, width: float, vector: np.ndarray) -> BeatModel:
        """A copy with one more component (not RR-scaled)."""
        return replace(
            self,
            names=(*self.names, name),
            center=np.append(self.center, center),
            width=np.append(self.width, width),
            vector=np.vstack([self.vector, vector]),
            rr_scaled=np.append(self.rr_scaled, False),
        )

    def rotated(self, rotation: np.ndarray) -> BeatModel:
        """A copy with every vector turned by `rotation` (3 x 3): heart orientation, electrode shift."""
        return replace(self, vector=self.vector @ rotation.T)


@dataclass(frozen=True)
class Patient:
    """What stays the same across a patient's recordings: normal beat, orientation, heart rate."""

    model: BeatModel
    orientation: np.ndarray  # 3 x 3
    hr_bpm: float


def rotation(frontal_deg: float, horizontal_deg: float) -> np.ndarray:
    """Rotation about the sagittal axis (frontal-plane axis shift), then about the vertical axis."""
    a, b = np.deg2rad(frontal_deg), np.deg2rad(horizontal_deg)
    frontal = np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])
    horizontal = np.array([[np.cos(b), 0.0, np.sin(b)], [0.0, 1.0, 0.0], [-np.sin(b), 0.0, np.cos(b)]])
    return horizontal @ frontal


def sample_patient(rng: np.random.Generator, age: int, female: bool) -> Patient:
    """A normal heart for one patient, with age and sex effects on amplitude, axis, intervals, rate."""
    phys = load_json("physiology.json")
    p = phys["patient"]
    comps = phys["components"]
    d_age = age - 50.0
    amp = np.exp(rng.normal(0.0, p["amp_log_sd"])) * (1.0 + p["amp_age_per_year"] * d_age)
    amp *= p["amp_female"] if female else 1.0
    qrs = (1.0 + rng.normal(0.0, p["qrs_scale_sd"])) * (p["qrs_female"] if female else 1.0)
    qt = p["qt_female"] if female else 1.0
    pr = rng.normal(p["pr_mean_s"], p["pr_sd_s"]) + p["pr_age_per_year_s"] * d_age
    frontal = rng.normal(p["frontal_axis_age_deg_per_year"] * d_age, p["frontal_axis_sd_deg"])
    horizontal = rng.normal(0.0, p["horizontal_axis_sd_deg"])
    hr = rng.normal(p["hr_mean"] + p["hr_age_per_year"] * d_age, p["hr_sd"])

    group = np.array([c["group"] for c in comps])
    timing = np.select([group == "QRS", group == "T"], [qrs, qt], 1.0)
    center = np.array([c["center_s"] for c in comps]) * timing
    center[group == "P"] = -pr
    model = BeatModel(
        names=tuple(c["name"] for c in comps),
        center=center,
        width=np.array([c["width_s"] for c in comps]) * timing,
        vector=np.array([c["vector"] for c in comps]) * amp,
        rr_scaled=group == "T",
        qrs_end=phys["qrs_end_s"] * qrs,
    )
    return Patient(model, rotation(frontal, horizontal), float(np.clip(hr, *p["hr_range"])))


@dataclass(frozen=True)
class Rhythm:
    """Beat times and the per-record modulation of one recording."""

    r_times: np.ndarray  # s, starting before 0 and ending after the record
    resp_hz: float
    resp_amp: float
    resp_phase: float


def sample_rhythm(rng: np.random.Generator, hr_bpm: float, duration: float) -> Rhythm:
    """RR series with LF (Mayer wave) and HF (respiratory sinus arrhythmia) modulation plus jitter;
    `hr_bpm` must not exceed MAX_HR_BPM, and no RR interval gets shorter than at that rate."""
    r = load_json("physiology.json")["record"]
    rr0 = 60.0 / hr_bpm
    n = int(np.ceil((duration + 2.0) / (rr0 * 0.8))) + 3
    resp_hz = rng.uniform(*r["resp_hz"])
    phases = rng.uniform(0.0, 2 * np.pi, 3)
    k = np.arange(n) * rr0
    rr = rr0 * (
        1.0
        + rng.uniform(*r["lf_frac"]) * np.sin(2 * np.pi * r["lf_hz"] * k + phases[0])
        + rng.uniform(*r["hf_frac"]) * np.sin(2 * np.pi * resp_hz * k + phases[1])
        + rng.normal(0.0, r["jitter_frac"], n)
    )
    rr = np.maximum(rr, 60.0 / MAX_HR_BPM)
    start = -rng.uniform(1.0, 2.0) * rr0
    return Rhythm(
        start + np.concatenate([[0.0], np.cumsum(rr)]), resp_hz, rng.uniform(*r["resp_amp"]), phases[2]
    )


def render_vcg(model: BeatModel, rhythm: Rhythm, fs: int, n: int) -> np.ndarray:
    """The dipole (n, 3) in mV sampled at `fs`, all beats at once."""
    t = np.arange(n) / fs
    beats = rhythm.r_times
    rr = np.diff(beats, prepend=beats[0] - (beats[1] - beats[0]))
    scale = np.where(model.rr_scaled, np.sqrt(rr)[:, None], 1.0)  # (beats, c)
    centers, widths = model.center * scale, model.width * scale
    prev = np.searchsorted(beats, t, side="right") - 1
    out = np.zeros((n, 3))
    for k in (prev, prev + 1):
        z = ((t - beats[k])[:, None] - centers[k]) / widths[k]
        out += np.exp(-0.5 * z * z) @ model.vector
    out *= (1.0 + rhythm.resp_amp * np.sin(2 * np.pi * rhythm.resp_hz * t + rhythm.resp_phase))[:, None]
    return out


def record_model(rng: np.random.Generator, patient: Patient, model: BeatModel) -> tuple[BeatModel, float]:
    """The beat of one recording: patient orientation plus a small electrode-placement jitter and
    amplitude change, and this recording's heart rate."""
    r = load_json("physiology.json")["record"]
    jitter = rotation(*rng.normal(0.0, r["rotation_sd_deg"], 2))
    amp = np.exp(rng.normal(0.0, r["amp_log_sd"]))
    hr = patient.hr_bpm * np.exp(rng.normal(0.0, r["hr_log_sd"]))
    turned = model.rotated(jitter @ patient.orientation)
    return replace(turned, vector=turned.vector * amp), float(hr)
