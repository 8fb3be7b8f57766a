"""Premature beats in sinus rhythm: ventricular (PVC) and atrial (PAC) extrasystoles.

Real recordings carry them (LUDB states extrasystoles in 14 of its 200 records), and more often
with an infarct; an archive without them teaches a model that every beat of a record looks alike.
A PVC comes early, has no P wave, a wide QRS of its own direction (the focus) and a T wave opposite
to it, and the next sinus beat comes on time (a full compensatory pause). A PAC is an early normal
QRS after a P wave of another direction, and the sinus node is reset (later beats shift with it).
The ectopic beat's components are added to the beat model and shown on the ectopic beats only
(`Rhythm.shown`); every number is in physiology.json `rhythm.ectopy`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from tasks.synth.dipole import MAX_HR_BPM, BeatModel, Rhythm, rotation
from tasks.synth.pathology import NONE
from tasks.synth.resources import load_json

KINDS: tuple[str, ...] = ("pvc", "pac")
PREFIX = "ECT_"  # names of the components only ectopic beats show


def ectopy_config() -> dict[str, Any]:
    return load_json("physiology.json")["rhythm"]["ectopy"]


def draw_ectopy(rng: np.random.Generator, mi: bool, sinus: bool) -> str:
    """A recording's premature beats: pvc, pac or none (one draw whatever the case); the rates are
    higher with an infarct (`mi`) and there are none outside sinus rhythm."""
    e = ectopy_config()
    u = rng.random() / (e["mi_factor"] if mi else 1.0)
    if not sinus:
        return NONE
    return "pvc" if u < e["pvc_rate"] else "pac" if u < e["pvc_rate"] + e["pac_rate"] else NONE


def _pvc(rng: np.random.Generator, model: BeatModel) -> BeatModel:
    """The wide QRS of a ventricular focus (two lagged Gaussians turning about its direction) and
    its opposite T wave."""
    e = ectopy_config()
    d = rng.normal(0.0, 1.0, 3)
    d /= np.linalg.norm(d)
    size, width = rng.uniform(*e["pvc_qrs_mv"]), rng.uniform(*e["pvc_qrs_width_s"])
    turn = rotation(*rng.uniform(-40.0, 40.0, 2))
    lag, t_ratio = e["pvc_qrs_lag_s"] / 2, rng.uniform(*e["pvc_t_ratio"])
    out = model.with_component(f"{PREFIX}R1", -lag, width, size * d)
    out = out.with_component(f"{PREFIX}R2", lag, width, size * (turn @ d))
    return out.with_component(f"{PREFIX}T", e["pvc_t_center_s"], e["pvc_t_width_s"], -t_ratio * size * d)


def _pac(rng: np.random.Generator, model: BeatModel) -> BeatModel:
    """A P wave of another atrial focus: the sinus P turned in the frontal plane."""
    p = model.index("P")
    turn = rotation(rng.uniform(*ectopy_config()["pac_p_turn_deg"]), 0.0)
    return model.with_component(f"{PREFIX}P", model.center[p], model.width[p], turn @ model.vector[p])


def with_ectopy(
    rng: np.random.Generator, kind: str, model: BeatModel, rhythm: Rhythm, duration: float
) -> tuple[BeatModel, Rhythm]:
    """The beat model with the ectopic components and the rhythm with `kind`'s premature beats
    (between 1 and 3 inside the record), each coming at a fraction of the RR interval before it
    (never shorter than at the model's highest rate)."""
    if kind not in KINDS:
        raise ValueError(f"unknown ectopy {kind!r}")
    e = ectopy_config()
    ectopic = (_pvc if kind == "pvc" else _pac)(rng, model)
    t = rhythm.r_times.copy()
    inside = np.flatnonzero((t > 0.5) & (t < duration - 0.5))
    count = min(int(rng.integers(e["count"][0], e["count"][1] + 1)), len(inside))
    chosen = np.sort(rng.choice(inside, count, replace=False))
    coupling = rng.uniform(*e[f"{kind}_coupling"], count)
    for k, c in zip(chosen, coupling, strict=True):
        early = t[k] - t[k - 1] - max(c * (t[k] - t[k - 1]), 60.0 / MAX_HR_BPM)
        t[k : k + 1 if kind == "pvc" else None] -= early  # PVC: compensatory pause; PAC: reset
    own = np.array([n.startswith(PREFIX) for n in ectopic.names])
    replaced = ~own if kind == "pvc" else np.array([n == "P" for n in ectopic.names])
    premature = np.isin(np.arange(len(t)), chosen)[:, None]
    shown = np.where(premature, ~replaced, ~own).astype(float)
    return ectopic, replace(rhythm, r_times=t, shown=shown)
