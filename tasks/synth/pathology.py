"""Myocardial infarction, its mimics and the reader's statements, as changes of the beat's dipole.

Because every change acts on the 3-D dipole, all 12 leads stay consistent: ST elevation in the
territory leads comes with reciprocal depression in the opposite leads by projection alone, and a
posterior infarct shows in V1–V3 as the mirror image (ST depression, tall R).
Each infarct has a type and a pattern (how it shows on the ECG):
- acute `stemi`: an injury current along the territory direction during the ST segment (ST
  elevation where the lead faces the territory) and a hyperacute T wave;
- acute `stemi_q`: the same with the Q wave and the loss of R forces that about half of acute
  ST-elevation infarcts already show on the first ECG (an evolving infarct);
- acute `nstemi`: subendocardial injury, diffuse ST depression (toward the base, elevation in
  aVR) and a shallower T inversion in the territory;
- acute `t_wave`: T inversion in the territory alone (Wellens-like), no ST shift;
- old `q_wave`: loss of the initial forces toward the territory (a broad Q component pointing
  away), loss of the R forces toward it (poor R progression; for the anterior walls toward the
  leads that face them, V1-V4), T inversion, a fragmented QRS;
- old `small_q`: the same with a small, narrow Q (a regressing Q wave) and milder R loss;
- old `non_q`: R loss, T inversion and fragmentation without a Q component.
Every infarct also flattens the normal T wave as a whole (lower T where it is tallest, in I and
V4-V6, less negative in aVR) and prolongs repolarization: its ST and T components come later and
last longer (QTc about 25-35 ms longer after an infarct).
A benign fragmented QRS (`apply_fragmentation`: a terminal R'), a normal variant mostly of the
inferior leads, is drawn for every patient whatever the infarct, so that fragmentation alone does
not tell one.
Confounders (physiology.json `confounders`) are edits of the named components and extra
components: mimics in MI-negative records, and bundle branch block or LVH with an infarct.
Severity (0..1) scales every change, so that subtle cases exist. The archive's statements are a
reader's calls (`reader_calls_mi`), who misses subtle infarcts and calls some mimics infarcts.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from tasks.synth.dipole import BeatModel, rotation
from tasks.synth.resources import load_json

MI_TYPES: tuple[str, ...] = ("acute", "old")
NONE = "none"


def mi_config() -> dict[str, Any]:
    return load_json("physiology.json")["mi"]


def territories() -> dict[str, dict[str, Any]]:
    return mi_config()["territories"]


def confounders() -> dict[str, dict[str, Any]]:
    return load_json("physiology.json")["confounders"]["kinds"]


def _unit(v: list[float]) -> np.ndarray:
    d = np.asarray(v, dtype=float)
    return d / np.linalg.norm(d)


def _with_vectors(model: BeatModel, changes: dict[str, np.ndarray]) -> BeatModel:
    vector = model.vector.copy()
    for name, delta in changes.items():
        vector[model.index(name)] += delta
    return replace(model, vector=vector)


def _r_direction(territory: str) -> np.ndarray:
    """The direction of the R forces an infarct of `territory` removes: the leads that face the
    wall (`r_direction`, for the anterior walls V1-V4), else the territory's own direction."""
    t = territories()[territory]
    return _unit(t.get("r_direction", t["direction"]))


def _r_loss(model: BeatModel, u: np.ndarray, s: float) -> dict[str, np.ndarray]:
    """The loss of the R forces along `u` toward the infarcted wall (the changes of R1 and R2)."""
    loss = mi_config()["old"]["r_loss"] * s
    return {name: -loss * max(float(model.vector[model.index(name)] @ u), 0.0) * u for name in ("R1", "R2")}


def _q_scar(model: BeatModel, d: np.ndarray, s: float, width_scale: float = 1.0) -> BeatModel:
    """A Q component pointing away from the territory."""
    o = mi_config()["old"]
    return model.with_component("Q_scar", o["q_center_s"], o["q_width_s"] * width_scale, -s * o["q_mv"] * d)


def _acute(model: BeatModel, pattern: str, d: np.ndarray, u: np.ndarray, s: float) -> BeatModel:
    a = mi_config()["acute"]
    if pattern in ("stemi", "stemi_q"):
        t = {"T": s * a["hyperacute_t_mv"] * d}
        injured = _with_vectors(model, t | _r_loss(model, u, s) if pattern == "stemi_q" else t)
        injured = injured.with_component("ST_injury", a["st_center_s"], a["st_width_s"], s * a["st_mv"] * d)
        return _q_scar(injured, d, s) if pattern == "stemi_q" else injured
    if pattern == "nstemi":
        ischaemic = _with_vectors(model, {"T": -0.5 * s * a["ischaemic_t_mv"] * d})
        st = s * a["subendocardial_st_mv"] * _unit(a["subendocardial_direction"])
        return ischaemic.with_component("ST_injury", a["st_center_s"], a["st_width_s"], st)
    if pattern == "t_wave":
        return _with_vectors(model, {"T": -s * a["ischaemic_t_mv"] * d})
    raise ValueError(f"unknown acute MI pattern {pattern!r}")


def _old(model: BeatModel, pattern: str, d: np.ndarray, u: np.ndarray, s: float) -> BeatModel:
    o = mi_config()["old"]
    if pattern not in ("q_wave", "small_q", "non_q"):
        raise ValueError(f"unknown old MI pattern {pattern!r}")
    small = o["small_q_scale"] if pattern == "small_q" else 1.0
    changes = _r_loss(model, u, small * s) | {"T": -small * s * o["t_inversion_mv"] * d}
    scar = _with_vectors(model, changes)
    if pattern != "non_q":
        scar = _q_scar(scar, d, small * s, o["small_q_width_scale"] if pattern == "small_q" else 1.0)
    if pattern == "small_q":
        return scar
    for k, center in enumerate(o["frag_centers_s"]):
        sign = 1.0 if k % 2 == 0 else -1.0
        scar = scar.with_component(f"frag{k}", center, o["frag_width_s"], sign * s * o["frag_mv"] * d)
    return scar


def _longer_qt(model: BeatModel, s: float) -> BeatModel:
    """Repolarization prolonged: the components that scale with QT (ST and T) later and wider by
    1 + s * qt_prolongation."""
    f = np.where(model.rr_scaled, 1.0 + s * mi_config()["qt_prolongation"], 1.0)
    return replace(model, center=model.center * f, width=model.width * f)


def _flatter_t(model: BeatModel, s: float) -> BeatModel:
    """The normal T wave smaller by s * t_flattening in every direction (before the territory's
    own T change)."""
    return _with_vectors(model, {"T": -s * mi_config()["t_flattening"] * model.vector[model.index("T")]})


def apply_mi(model: BeatModel, mi_type: str, pattern: str, territory: str, severity: float) -> BeatModel:
    """The beat with an infarction of `territory` of the given type and pattern at `severity`."""
    d, u = _unit(territories()[territory]["direction"]), _r_direction(territory)
    flat = _flatter_t(model, severity)
    if mi_type == "acute":
        return _longer_qt(_acute(flat, pattern, d, u, severity), severity)
    if mi_type == "old":
        return _longer_qt(_old(flat, pattern, d, u, severity), severity)
    raise ValueError(f"unknown MI type {mi_type!r}")


def apply_confounder(model: BeatModel, kind: str, severity: float) -> BeatModel:
    """The beat with a conduction, hypertrophy, repolarization or pre-excitation pattern (`kind`
    from physiology.json)."""
    spec = confounders()[kind]
    center, width, vector = model.center.copy(), model.width.copy(), model.vector.copy()
    for name, edit in spec.get("edit", {}).items():
        i = model.index(name)
        center[i] += severity * edit.get("center_shift_s", 0.0)
        width[i] *= 1.0 + severity * (edit.get("width_scale", 1.0) - 1.0)
        vector[i] = vector[i] * (1.0 + severity * (edit.get("vector_scale", 1.0) - 1.0))
        vector[i] = rotation(severity * edit.get("frontal_turn_deg", 0.0), 0.0) @ vector[i]
        vector[i] += severity * np.asarray(edit.get("vector_add", (0.0, 0.0, 0.0)))
    qrs_end = max(model.qrs_end, spec.get("qrs_end_s", 0.0))
    edited = replace(model, center=center, width=width, vector=vector, qrs_end=qrs_end)
    for c in spec.get("add", []):
        edited = edited.with_component(
            c["name"], c["center_s"], c["width_s"], severity * np.asarray(c["vector"])
        )
    return edited


def fragmentation_config() -> dict[str, Any]:
    return load_json("physiology.json")["fragmentation"]


def apply_fragmentation(model: BeatModel, territory: str, size_mv: float, shift_s: float) -> BeatModel:
    """The beat with a benign fragmented QRS in the leads of `territory` (inferior, anterior or
    lateral): a terminal R' of `size_mv` along the territory's lead direction, at the configured
    time moved by `shift_s`."""
    f = fragmentation_config()
    d = size_mv * _unit(f["directions"][territory])
    return model.with_component("fqrs", f["center_s"] + shift_s, f["width_s"], d)


def reader_calls_mi(rng: np.random.Generator, grade: str, pattern: str, confounder: str) -> bool:
    """Whether the reader states an infarct: for an infarct (grade != none) with its grade's and
    pattern's sensitivity, otherwise with the false-positive rate of the record's confounder."""
    r = load_json("physiology.json")["reader"]
    if grade != NONE:
        p = r["sensitivity"][grade] * r["pattern_factor"][pattern]
    else:
        p = r["false_positive"][confounder]
    return bool(rng.random() < p)


def _diagnostic_codes() -> set[str]:
    return {s["code"] for s in load_json("physiology.json")["scp_statements"] if s["diagnostic"]}


def scp_codes(mi_type: str, pattern: str, statement: str, confounder: str, rhythm: str) -> dict[str, float]:
    """PTB-XL style statement likelihoods of one record as its reader wrote them: the infarct of
    territory `statement` (none: no infarct stated; an acute infarct with ST change also as
    injury), the confounder's statement, NORM when no diagnostic statement is made, and the rhythm
    (SR, or AFIB for atrial fibrillation)."""
    codes: dict[str, float] = {}
    if statement != NONE:
        t = territories()[statement]
        codes[t["scp"]] = 100.0
        if mi_type == "acute" and pattern in ("stemi", "stemi_q", "nstemi"):
            codes[t["injury_scp"]] = 100.0
    if confounder != NONE and (code := confounders()[confounder]["scp"]) != "NORM":
        codes[code] = 100.0
    if not set(codes) & _diagnostic_codes():
        codes["NORM"] = 100.0
    codes["AFIB" if rhythm == "af" else "SR"] = 100.0 if rhythm == "af" else 0.0
    return codes
