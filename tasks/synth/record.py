"""One synthetic recording: its specification, the plan of a shard of recordings, and rendering.

A `RecordSpec` holds everything that decides a recording; rendering draws the rest from random
streams keyed by (seed, patient) and (seed, record), never by position in a run, so any record
can be rendered again alone, with or without its pathology or artifacts, for matched comparisons.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from tasks.synth.artifacts import ArtifactRow, inject
from tasks.synth.dipole import (
    MAX_HR_BPM,
    Patient,
    fibrillatory_waves,
    record_model,
    render_vcg,
    sample_patient,
    sample_rhythm,
)
from tasks.synth.ectopy import draw_ectopy, with_ectopy
from tasks.synth.leadfield import PLACEMENTS, lead_field, to_leads, to_measured
from tasks.synth.pathology import (
    MI_TYPES,
    NONE,
    apply_confounder,
    apply_fragmentation,
    apply_mi,
    confounders,
    fragmentation_config,
    mi_config,
    reader_calls_mi,
    territories,
)
from tasks.synth.resources import load_json
from tasks.synth.sites import SiteProfile, device_filter, site

# First entries of the spawn keys of the random streams (seed, stream, index).
_PLAN, _PATIENT, _RECORD = 0, 1, 2


@dataclass(frozen=True)
class RecordSpec:
    ecg_id: int
    patient_id: int
    seed: int
    site: str
    age: int
    female: bool
    strat_fold: int
    mi_type: str = NONE  # acute, old or none
    pattern: str = NONE  # how the infarct shows (pathology.py), none without one
    territory: str = NONE
    severity: float = 0.0
    grade: str = NONE  # subtle, moderate, severe or none
    confounder: str = NONE
    confounder_severity: float = 0.0
    fragmentation: str = NONE  # benign fragmented QRS: inferior, anterior, lateral or none
    fragmentation_mv: float = 0.0
    fragmentation_shift_s: float = 0.0
    placement: str = "standard"  # electrode placement (leadfield.PLACEMENTS)
    rhythm: str = "sinus"  # sinus or af (atrial fibrillation)
    ectopy: str = NONE  # premature beats: pvc, pac or none (ectopy.py)
    hrv_scale: float = 1.0  # heart rate variability against the normal, lower after an infarct
    statement: str = NONE  # the infarct territory the reader states, none when no infarct is stated


@dataclass(frozen=True)
class Rendered:
    signal: np.ndarray  # (n, 12) mV, NaN where a lead is missing
    artifacts: list[ArtifactRow]
    r_times: np.ndarray  # s
    qrs_end: float  # J point, s after each R peak
    hr_bpm: float


def _rng(seed: int, stream: int, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(stream, index)))


def recording_field(rng: np.random.Generator, patient: Patient, placement: str) -> np.ndarray:
    """The lead field of one recording: the patient's chest gains, a sideways shift of the chest
    electrodes, and the misplacement the spec names (every draw made whatever the placement, so
    that records differing only in placement are otherwise alike)."""
    r = load_json("physiology.json")["record"]
    p = r["placement"]
    shift = rng.normal(0.0, r["chest_shift_sd"])
    tilt = rng.uniform(*p["v1v2_high_tilt_deg"])
    axis, gain = rng.uniform(*p["mason_likar_axis_deg"]), rng.uniform(*p["mason_likar_inferior_gain"])
    if placement == "v1v2_high":
        return lead_field(patient.chest_gain, shift, v1v2_tilt_deg=tilt)
    if placement == "mason_likar":
        return lead_field(patient.chest_gain, shift, limb_axis_deg=axis, inferior_gain=gain)
    if placement != "standard":
        raise ValueError(f"unknown electrode placement {placement!r}")
    return lead_field(patient.chest_gain, shift)


def render(spec: RecordSpec, artifacts: bool = True, artifact_scale: float = 1.0) -> Rendered:
    """The 12-lead signal of a recording as the site's device would deliver it, before the ADC."""
    profile = site(spec.site)
    duration = load_json("physiology.json")["record"]["duration_s"]
    n = round(duration * profile.fs)
    patient = sample_patient(_rng(spec.seed, _PATIENT, spec.patient_id), spec.age, spec.female)
    beat = patient.model
    if spec.fragmentation != NONE:
        beat = apply_fragmentation(
            beat, spec.fragmentation, spec.fragmentation_mv, spec.fragmentation_shift_s
        )
    if spec.mi_type != NONE:
        beat = apply_mi(beat, spec.mi_type, spec.pattern, spec.territory, spec.severity)
    if spec.confounder != NONE:
        beat = apply_confounder(beat, spec.confounder, spec.confounder_severity)
    physio, art, noise, beats = (
        np.random.default_rng(s)
        for s in np.random.SeedSequence(spec.seed, spawn_key=(_RECORD, spec.ecg_id)).spawn(4)
    )
    af = spec.rhythm == "af"
    if af:  # no P wave: the atria fibrillate
        beat = replace(beat, vector=np.where(np.array(beat.group)[:, None] == "P", 0.0, beat.vector))
    beat, hr = record_model(physio, patient, beat)
    field = recording_field(physio, patient, spec.placement)
    hr = min(hr + profile.hr_shift_bpm, MAX_HR_BPM)
    rhythm = sample_rhythm(physio, hr, duration, af, spec.hrv_scale)
    if spec.ectopy != NONE:
        beat, rhythm = with_ectopy(physio, spec.ectopy, beat, rhythm, duration)
    vcg = render_vcg(beat, rhythm, profile.fs, n, beats)
    if af:
        vcg += fibrillatory_waves(beats, n, profile.fs)
    measured = device_filter(profile, to_measured(vcg, field))
    measured += noise.normal(0.0, profile.noise_floor_mv, measured.shape)
    rows: list[ArtifactRow] = []
    if artifacts:
        measured, rows = inject(art, measured, profile, artifact_scale)
    return Rendered(to_leads(measured), rows, rhythm.r_times, beat.qrs_end, hr)


def _choose(rng: np.random.Generator, weights: dict[str, float]) -> str:
    names = sorted(weights)
    p = np.array([weights[k] for k in names], dtype=float)
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def _uniform(rng: np.random.Generator, bounds: list[float]) -> float:
    return round(float(rng.uniform(*bounds)), 3)


def _confounder(rng: np.random.Generator, weights: dict[str, float]) -> dict[str, object]:
    kind = _choose(rng, weights)
    return {"confounder": kind, "confounder_severity": _uniform(rng, confounders()[kind]["severity"])}


def _fragmentation(rng: np.random.Generator) -> dict[str, object]:
    """A patient's benign fragmented QRS: its territory (none for most), size and timing."""
    f = fragmentation_config()
    u, size, shift = rng.random(), _uniform(rng, f["mv"]), float(rng.uniform(*f["shift_s"]))
    bounds = np.cumsum([f["rates"][k] for k in sorted(f["rates"])])
    k = int(np.searchsorted(bounds, u, side="right"))
    if k == len(bounds):
        return {}
    return {
        "fragmentation": sorted(f["rates"])[k],
        "fragmentation_mv": size,
        "fragmentation_shift_s": round(shift, 4),
    }


def _recording(rng: np.random.Generator, profile: SiteProfile, patient: dict) -> dict[str, str]:
    """What differs between a patient's recordings: electrode placement, the reader's statement
    (the true territory, a mimic's look-alike territory or a drawn one for a false call, or none)
    and premature beats."""
    high = load_json("physiology.json")["record"]["placement"]["v1v2_high_rate"]
    shares = {"v1v2_high": high, "mason_likar": profile.mason_likar_rate}
    placement = _choose(rng, {p: shares.get(p, 1.0 - sum(shares.values())) for p in PLACEMENTS})
    grade, confounder = patient.get("grade", NONE), patient.get("confounder", NONE)
    statement = NONE
    if reader_calls_mi(rng, grade, patient.get("pattern", NONE), confounder):
        if grade != NONE:
            statement = patient["territory"]
        elif confounder != NONE:
            statement = confounders()[confounder]["reads_as"]
        else:
            statement = _choose(rng, _territory_weights())
    ectopy = draw_ectopy(rng, grade != NONE, patient["rhythm"] == "sinus")
    return {"placement": placement, "statement": statement, "ectopy": ectopy}


def _territory_weights() -> dict[str, float]:
    return {k: v["weight"] for k, v in territories().items()}


def plan_shard(
    seed: int,
    shard: int,
    shard_size: int,
    n_records: int,
    sites: tuple[str, ...],
    mi_prevalence: dict[str, float],
) -> list[RecordSpec]:
    """Specs of records shard*shard_size+1 .. (shard+1)*shard_size (capped at n_records), in ecg_id
    order. Patients live within one shard; their recordings are spread over its ecg_ids."""
    rng = _rng(seed, _PLAN, shard)
    first = shard * shard_size
    count = min(shard_size, n_records - first)
    profiles: list[SiteProfile] = [site(s) for s in sites]
    mi = mi_config()
    conf = load_json("physiology.json")["confounders"]
    rhythm = load_json("physiology.json")["rhythm"]
    weights = np.array([p.weight for p in profiles])
    specs: list[dict] = []
    patient_id = first
    while len(specs) < count:
        patient_id += 1
        p = profiles[int(rng.choice(len(profiles), p=weights / weights.sum()))]
        patient = {
            "patient_id": patient_id,
            "seed": seed,
            "site": p.name,
            "age": int(np.clip(round(rng.normal(p.age_mean, p.age_sd)), 18, 95)),
            "female": bool(rng.random() < p.female_share),
            "strat_fold": int(rng.integers(1, 11)),
        }
        fibrillation = rng.random()  # atrial fibrillation, more common with an infarct
        if rng.random() < mi_prevalence[p.name]:
            grade = _choose(rng, mi["grade_shares"])
            mi_type = MI_TYPES[0] if rng.random() < mi["acute_share"] else MI_TYPES[1]
            patient |= {
                "mi_type": mi_type,
                "pattern": _choose(rng, mi["patterns"][mi_type]),
                "territory": _choose(rng, _territory_weights()),
                "grade": grade,
                "severity": _uniform(rng, mi["grades"][grade]),
                "hrv_scale": load_json("physiology.json")["record"]["hrv_scale_mi"],
            }
            if rng.random() < mi["confounder_rate"]:
                patient |= _confounder(rng, mi["confounder_weights"])
        elif rng.random() < conf["rate_in_negatives"]:
            patient |= _confounder(rng, {k: v["weight"] for k, v in confounders().items()})
        patient |= _fragmentation(rng)
        af_rate = rhythm["af_rate_mi"] if "mi_type" in patient else rhythm["af_rate"]
        patient["rhythm"] = "af" if fibrillation < af_rate else "sinus"
        recordings = 1 + int(rng.poisson(p.extra_recordings_mean))
        specs += [patient | _recording(rng, p, patient) for _ in range(min(recordings, count - len(specs)))]
    ids = first + 1 + rng.permutation(count)
    return sorted(
        (RecordSpec(ecg_id=int(i), **s) for i, s in zip(ids, specs, strict=True)), key=lambda r: r.ecg_id
    )
