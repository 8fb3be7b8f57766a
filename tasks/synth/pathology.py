"""Myocardial infarction and its confounders as changes of the beat's dipole components.

Because every change acts on the 3-D dipole, all 12 leads stay consistent: ST elevation in the
territory leads comes with reciprocal depression in the opposite leads by projection alone.
- acute MI: an injury current along the territory direction during the ST segment (ST elevation
  where the lead faces the territory) and a hyperacute T wave;
- old MI: loss of the initial forces toward the territory (a broad Q component pointing away),
  loss of the R forces toward it (poor R progression), T inversion, and a fragmented QRS;
- confounders (LBBB, RBBB, LVH), for MI-negative records: edits of the named components and
  extra components, all in physiology.json.
Severity (0..1) scales every change, so that subtle cases exist.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from tasks.synth.dipole import BeatModel
from tasks.synth.resources import load_json

MI_TYPES: tuple[str, ...] = ("acute", "old")
NONE = "none"


def territories() -> dict[str, dict[str, Any]]:
    return load_json("physiology.json")["mi"]["territories"]


def confounders() -> dict[str, dict[str, Any]]:
    return load_json("physiology.json")["confounders"]["kinds"]


def _direction(territory: str) -> np.ndarray:
    d = np.asarray(territories()[territory]["direction"], dtype=float)
    return d / np.linalg.norm(d)


def apply_mi(model: BeatModel, mi_type: str, territory: str, severity: float) -> BeatModel:
    """The beat with an acute or old infarction of `territory` at `severity`."""
    mi = load_json("physiology.json")["mi"]
    d = _direction(territory)
    if mi_type == "acute":
        a = mi["acute"]
        t = model.index("T")
        vector = model.vector.copy()
        vector[t] += severity * a["hyperacute_t_mv"] * d
        injured = replace(model, vector=vector)
        return injured.with_component(
            "ST_injury", a["st_center_s"], a["st_width_s"], severity * a["st_mv"] * d
        )
    if mi_type != "old":
        raise ValueError(f"unknown MI type {mi_type!r}")
    o = mi["old"]
    vector = model.vector.copy()
    for name in ("R1", "R2"):
        i = model.index(name)
        vector[i] -= o["r_loss"] * severity * max(float(vector[i] @ d), 0.0) * d
    vector[model.index("T")] -= severity * o["t_inversion_mv"] * d
    scar = replace(model, vector=vector).with_component(
        "Q_scar", o["q_center_s"], o["q_width_s"], -severity * o["q_mv"] * d
    )
    for k, center in enumerate(o["frag_centers_s"]):
        sign = 1.0 if k % 2 == 0 else -1.0
        scar = scar.with_component(f"frag{k}", center, o["frag_width_s"], sign * severity * o["frag_mv"] * d)
    return scar


def apply_confounder(model: BeatModel, kind: str, severity: float) -> BeatModel:
    """The beat with a conduction or hypertrophy pattern (`kind` from physiology.json)."""
    spec = confounders()[kind]
    center, width, vector = model.center.copy(), model.width.copy(), model.vector.copy()
    for name, edit in spec["edit"].items():
        i = model.index(name)
        center[i] += severity * edit.get("center_shift_s", 0.0)
        width[i] *= 1.0 + severity * (edit.get("width_scale", 1.0) - 1.0)
        vector[i] = vector[i] * (1.0 + severity * (edit.get("vector_scale", 1.0) - 1.0))
        vector[i] += severity * np.asarray(edit.get("vector_add", (0.0, 0.0, 0.0)))
    qrs_end = max(model.qrs_end, spec.get("qrs_end_s", 0.0))
    edited = replace(model, center=center, width=width, vector=vector, qrs_end=qrs_end)
    for c in spec["add"]:
        edited = edited.with_component(
            c["name"], c["center_s"], c["width_s"], severity * np.asarray(c["vector"])
        )
    return edited


def scp_codes(mi_type: str, territory: str, confounder: str) -> dict[str, float]:
    """PTB-XL style statement likelihoods of one record."""
    if mi_type != NONE:
        t = territories()[territory]
        codes = {t["scp"]: 100.0}
        if mi_type == "acute":
            codes[t["injury_scp"]] = 100.0
    elif confounder != NONE:
        codes = {confounders()[confounder]["scp"]: 100.0}
    else:
        codes = {"NORM": 100.0}
    codes["SR"] = 0.0
    return codes
