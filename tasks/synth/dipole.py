"""The 3-D cardiac dipole: a sum of Gaussian components per beat with heart-rate variability.

In the spirit of McSharry's ECGSYN, each beat is a sum of Gaussian waves (P, Q, R, S, ST, T), here
with a 3-D vector per wave so that every lead is a projection of the same dipole. The dipole is
evaluated for all samples at once: each sample takes the contributions of the beat before and
the beat after it, which covers every wave for heart rates up to the model's limit (130 bpm).
No two beats are alike: each wave's amplitude and timing vary a little from beat to beat, and
breathing swings the electrical axis and the amplitude (sources in physiology.json).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from tasks.synth.resources import load_json

MAX_HR_BPM = 130.0
MAX_COMPONENTS = 16  # beat-to-beat variation is drawn for this many, so a component's draws never
# depend on how many components follow it (a beat with an infarct keeps its normal waves' noise)


@dataclass(frozen=True)
class BeatModel:
    """Gaussian components of one beat; times in s relative to the R peak, vectors in mV."""

    names: tuple[str, ...]
    center: np.ndarray  # (c,)
    width: np.ndarray  # (c,)
    vector: np.ndarray  # (c, 3)
    rr_scaled: np.ndarray  # (c,) bool: timing scales with sqrt(RR) (repolarization)
    group: tuple[str, ...]  # P, QRS or T: how much the component varies from beat to beat
    qrs_end: float  # J point, s after the R peak

    def index(self, name: str) -> int:
        return self.names.index(name)

    def with_component(self, name: str, center: float, width: float, vector: np.ndarray) -> BeatModel:
        """A copy with one more component (not RR-scaled), in the group its timing falls into."""
        group = "P" if center < -self.qrs_end else "QRS" if center <= self.qrs_end else "T"
        return replace(
            self,
            names=(*self.names, name),
            center=np.append(self.center, center),
            width=np.append(self.width, width),
            vector=np.vstack([self.vector, vector]),
            rr_scaled=np.append(self.rr_scaled, False),
            group=(*self.group, group),
        )

    def rotated(self, rotation: np.ndarray) -> BeatModel:
        """A copy with every vector turned by `rotation` (3 x 3): heart orientation, electrode shift."""
        return replace(self, vector=self.vector @ rotation.T)


@dataclass(frozen=True)
class Patient:
    """What stays the same across a patient's recordings: normal beat, orientation, heart rate and
    the torso's gain on each chest lead."""

    model: BeatModel
    orientation: np.ndarray  # 3 x 3
    hr_bpm: float
    chest_gain: np.ndarray  # (6,) V1..V6


def rotation(frontal_deg: float, horizontal_deg: float) -> np.ndarray:
    """Rotation about the sagittal axis (frontal-plane axis shift), then about the vertical axis."""
    a, b = np.deg2rad(frontal_deg), np.deg2rad(horizontal_deg)
    frontal = np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])
    horizontal = np.array([[np.cos(b), 0.0, np.sin(b)], [0.0, 1.0, 0.0], [-np.sin(b), 0.0, np.cos(b)]])
    return horizontal @ frontal


def _st_scale(rng: np.random.Generator, p: dict, age: int, female: bool) -> float:
    """The normal ST segment's size: larger in young men, falling with age to the women's level."""
    male = 1.0 if female else max(1.0, p["st_male_young"] + p["st_male_per_year"] * (age - 25.0))
    return male * float(np.exp(rng.normal(0.0, p["st_log_sd"])))


def _own_waves(rng: np.random.Generator, p: dict, c: int) -> dict[str, np.ndarray]:
    """Each patient's own wave shapes: per component a small turn of its vector (c, 3, 3), a size
    factor, a width factor and a timing shift, so that no two hearts share one morphology."""
    angles = rng.normal(0.0, p["wave_turn_sd_deg"], (c, 2))
    return {
        "turn": np.stack([rotation(a, b) for a, b in angles]),
        "size": np.exp(rng.normal(0.0, p["wave_size_log_sd"], c)),
        "width": np.exp(rng.normal(0.0, p["wave_width_log_sd"], c)),
        "shift": rng.normal(0.0, p["wave_shift_sd_s"], c),
    }


def sample_patient(rng: np.random.Generator, age: int, female: bool) -> Patient:
    """A normal heart for one patient, with age and sex effects on amplitude, axis, intervals, rate,
    the normal ST segment and septal q waves, its own shape of every wave, and the torso's gain on
    each chest lead."""
    phys = load_json("physiology.json")
    p = phys["patient"]
    comps = phys["components"]
    d_age = age - 50.0
    amp = np.exp(rng.normal(0.0, p["amp_log_sd"])) * (1.0 + p["amp_age_per_year"] * d_age)
    amp *= p["amp_female"] if female else 1.0
    qrs = (1.0 + rng.normal(0.0, p["qrs_scale_sd"])) * (p["qrs_female"] if female else 1.0)
    qt = (1.0 + rng.normal(0.0, p["qt_scale_sd"])) * (p["qt_female"] if female else 1.0)
    pr = rng.normal(p["pr_mean_s"], p["pr_sd_s"]) + p["pr_age_per_year_s"] * d_age
    frontal_mean = p["frontal_axis_mean_deg"] + p["frontal_axis_age_deg_per_year"] * d_age
    frontal = rng.normal(frontal_mean, p["frontal_axis_sd_deg"])
    horizontal = rng.normal(0.0, p["horizontal_axis_sd_deg"])
    hr = rng.normal(p["hr_mean"] + p["hr_age_per_year"] * d_age, p["hr_sd"])
    p_width = np.exp(rng.normal(0.0, p["p_width_log_sd"]))
    septal_q = np.exp(rng.normal(0.0, p["septal_q_log_sd"]))
    st = _st_scale(rng, p, age, female)
    chest_gain = p["chest_gain_median"] * np.exp(rng.normal(0.0, p["chest_gain_log_sd"], 6))

    names = tuple(c["name"] for c in comps)
    group = np.array([c["group"] for c in comps])
    timing = np.select([group == "QRS", group == "T"], [qrs, qt], 1.0)
    own = _own_waves(rng, p, len(comps))
    center = np.array([c["center_s"] for c in comps]) * timing + own["shift"]
    center[group == "P"] = -pr
    width = np.array([c["width_s"] for c in comps]) * timing * np.where(group == "P", p_width, own["width"])
    vector = (
        np.einsum("cij,cj->ci", own["turn"], np.array([c["vector"] for c in comps])) * own["size"][:, None]
    )
    vector *= amp
    vector[names.index("Q")] *= septal_q
    vector[names.index("ST")] *= st
    model = BeatModel(
        names=names,
        center=center,
        width=width,
        vector=vector,
        rr_scaled=group == "T",
        group=tuple(group),
        qrs_end=phys["qrs_end_s"] * qrs,
    )
    return Patient(model, rotation(frontal, horizontal), float(np.clip(hr, *p["hr_range"])), chest_gain)


@dataclass(frozen=True)
class Rhythm:
    """Beat times and the per-record modulation of one recording."""

    r_times: np.ndarray  # s, starting before 0 and ending after the record
    resp_hz: float
    resp_amp: float
    resp_axis_deg: float
    resp_phase: float
    shown: np.ndarray | None = None  # (beats, c) 0/1: the components each beat shows (ectopic beats)


def sample_rhythm(
    rng: np.random.Generator, hr_bpm: float, duration: float, af: bool = False, hrv_scale: float = 1.0
) -> Rhythm:
    """RR series with LF (Mayer wave) and HF (respiratory sinus arrhythmia) modulation plus jitter,
    all scaled by `hrv_scale` (lower after an infarct), or in atrial fibrillation (`af`) irregularly
    irregular (independent log-normal RR); `hr_bpm` must not exceed MAX_HR_BPM, and no RR interval
    gets shorter than at that rate."""
    r = load_json("physiology.json")["record"]
    rr0 = 60.0 / hr_bpm
    n = int(np.ceil((duration + 2.0) / (60.0 / MAX_HR_BPM))) + 3
    resp_hz = rng.uniform(*r["resp_hz"])
    phases = rng.uniform(0.0, 2 * np.pi, 3)
    k = np.arange(n) * rr0
    rr = rr0 * (
        1.0
        + hrv_scale
        * (
            rng.uniform(*r["lf_frac"]) * np.sin(2 * np.pi * r["lf_hz"] * k + phases[0])
            + rng.uniform(*r["hf_frac"]) * np.sin(2 * np.pi * resp_hz * k + phases[1])
            + rng.normal(0.0, r["jitter_frac"], n)
        )
    )
    irregular = rr0 * np.exp(rng.normal(0.0, load_json("physiology.json")["rhythm"]["af_rr_log_sd"], n))
    rr = np.maximum(irregular if af else rr, 60.0 / MAX_HR_BPM)
    start = -rng.uniform(1.0, 2.0) * rr0
    return Rhythm(
        start + np.concatenate([[0.0], np.cumsum(rr)]),
        resp_hz,
        rng.uniform(*r["resp_amp"]),
        rng.uniform(*r["resp_axis_deg"]),
        phases[2],
    )


def fibrillatory_waves(rng: np.random.Generator, n: int, fs: int) -> np.ndarray:
    """Atrial fibrillatory waves (n, 3): a sine at a drawn rate whose phase wanders, along the
    atrial direction, largest in V1."""
    a = load_json("physiology.json")["rhythm"]
    t = np.arange(n) / fs
    wander = np.cumsum(rng.normal(0.0, 2.0 / np.sqrt(fs), n))  # radians: a random walk of the phase
    wave = np.sin(2 * np.pi * rng.uniform(*a["f_wave_hz"]) * t + rng.uniform(0, 2 * np.pi) + wander)
    direction = np.asarray(a["f_wave_direction"]) / np.linalg.norm(a["f_wave_direction"])
    return rng.uniform(*a["f_wave_mv"]) * wave[:, None] * direction


def beat_variation(rng: np.random.Generator, model: BeatModel, beats: int) -> tuple[np.ndarray, np.ndarray]:
    """Per beat and component (beats, c): an amplitude factor and a timing shift (s), with the
    spread of the component's group."""
    r = load_json("physiology.json")["record"]
    c = len(model.group)
    if c > MAX_COMPONENTS:
        raise ValueError(f"a beat of {c} components exceeds the model's {MAX_COMPONENTS}")
    amp_sd = np.array([r["beat_amp_log_sd"][g] for g in model.group])
    time_sd = np.array([r["beat_time_sd_s"][g] for g in model.group])
    z = rng.standard_normal((2, beats, MAX_COMPONENTS))[:, :, :c]
    return np.exp(z[0] * amp_sd), z[1] * time_sd


def render_vcg(model: BeatModel, rhythm: Rhythm, fs: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """The dipole (n, 3) in mV sampled at `fs`, all beats at once; each beat's waves vary in size
    and timing (and show only the components `rhythm.shown` gives them, where ectopic beats
    differ), and breathing scales the dipole and turns it in the frontal plane. The Gaussians
    are evaluated in float32 (half the cost; far below a microvolt of error)."""
    t = np.arange(n) / fs
    beats = rhythm.r_times
    rr = np.diff(beats, prepend=beats[0] - (beats[1] - beats[0]))
    scale = np.where(model.rr_scaled, np.sqrt(rr)[:, None], 1.0)  # (beats, c)
    gain, shift = beat_variation(rng, model, len(beats))
    if rhythm.shown is not None:
        gain = gain * rhythm.shown
    at = (beats[:, None] + model.center * scale + shift).astype(np.float32)  # (beats, c) absolute times
    inverse_width = (1.0 / (model.width * scale)).astype(np.float32)
    gain, vector, t32 = gain.astype(np.float32), model.vector.astype(np.float32), t.astype(np.float32)
    prev = np.searchsorted(beats, t, side="right") - 1
    out = np.zeros((n, 3))
    for k in (prev, prev + 1):
        z = (t32[:, None] - at[k]) * inverse_width[k]
        out += (np.exp(-0.5 * z * z) * gain[k]) @ vector
    breath = np.sin(2 * np.pi * rhythm.resp_hz * t + rhythm.resp_phase)
    out *= (1.0 + rhythm.resp_amp * breath)[:, None]
    angle = np.deg2rad(rhythm.resp_axis_deg) * breath
    cos, sin = np.cos(angle), np.sin(angle)
    x, y = out[:, 0].copy(), out[:, 1].copy()
    out[:, 0], out[:, 1] = x * cos - y * sin, x * sin + y * cos
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
