"""Clinical criteria derived from the measurements, with the rules and cut-points of the fourth
universal definition of myocardial infarction (thresholds in data_contracts/feature_criteria.json):

- `crit_q_<lead>`: pathological Q wave (duration and depth cut-points per lead; QS counts);
- `crit_ste_<lead>`: ST elevation at the J point at or above the STEMI cut-point of the lead, which
  in V2–V3 depends on sex and age;
- `crit_q_<territory>`, `crit_ste_<territory>`: the criterion in at least two leads of a
  contiguous-lead group (anterior V1–V4, lateral I, aVL, V5–V6, inferior II, III, aVF).

Three-valued: None where a measure is missing, or where the unknown sex/age leaves the cut-point
undecided (an elevation between the lowest and the highest possible cut-point).
"""

from __future__ import annotations

import math
from typing import Any

from data_contracts.feature_columns import lead_column
from data_contracts.leads import TERRITORIES


def _known(*values: float) -> bool:
    return all(v is not None and math.isfinite(v) for v in values)


def pathological_q(row: dict[str, float], lead: str, rule: dict[str, float]) -> bool | None:
    q_amp, q_dur = row[lead_column("q_amp", lead)], row[lead_column("q_dur", lead)]
    if not _known(q_amp, q_dur):
        return None
    return q_dur > 0 and q_dur >= rule["min_duration_s"] * 1000 and -q_amp >= rule["min_depth_mv"]


def ste_cutpoints(lead: str, sex: str | None, age: float | None, cfg: dict[str, Any]) -> list[float]:
    """The STEMI cut-points (mV) the lead may have for this patient; several when sex or age is unknown."""
    if lead not in cfg["sex_age_leads"]:
        return [cfg["default_mv"]]
    men = (
        [cfg["men_older_mv"] if age >= cfg["men_min_age"] else cfg["men_younger_mv"]]
        if _known(age)
        else [cfg["men_older_mv"], cfg["men_younger_mv"]]
    )
    return {"M": men, "F": [cfg["women_mv"]]}.get(sex or "", [*men, cfg["women_mv"]])


def st_elevation(row: dict[str, float], lead: str, cuts: list[float]) -> bool | None:
    st = row[lead_column("st_j", lead)]
    if not _known(st):
        return None
    if st >= max(cuts):
        return True
    return False if st < min(cuts) else None


def _at_least(flags: list[bool | None], n: int) -> bool | None:
    yes = sum(f is True for f in flags)
    if yes >= n:
        return True
    return None if yes + sum(f is None for f in flags) >= n else False


def criteria(
    row: dict[str, float], sex: str | None, age: float | None, cfg: dict[str, Any]
) -> dict[str, Any]:
    """Every `crit_*` column of one measured record."""
    out: dict[str, Any] = {
        f"crit_q_{lead}": pathological_q(row, lead, rule)
        for lead, rule in cfg["pathological_q"]["leads"].items()
    }
    ste = cfg["st_elevation"]
    out |= {
        f"crit_ste_{lead}": st_elevation(row, lead, ste_cutpoints(lead, sex, age, ste))
        for lead in ste["assessed_leads"]
    }
    n = cfg["territories"]["min_leads"]
    for name, leads in TERRITORIES.items():
        for kind in ("q", "ste"):
            assessed = [out[c] for lead in leads if (c := f"crit_{kind}_{lead}") in out]
            out[f"crit_{kind}_{name}"] = _at_least(assessed, n)
    return out
