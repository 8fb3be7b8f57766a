"""Columns of `features/`: one row per record, one column per record measure, one column per lead
and measure (`<measure>_<lead>`, e.g. `st_j_V2`, `q_amp_II`), and one boolean column per clinical
criterion (`crit_q_<lead>`, `crit_ste_<lead>`, `crit_q_<territory>`, `crit_ste_<territory>`).

Flat columns suit SQL users (DuckDB, Spark) and pandas alike; every field carries its unit and
meaning in the Parquet field metadata. Null means "not measurable" (rejected record, unusable
lead, wave not found), never zero. The criteria leads and territories come from the versioned
`feature_criteria.json`.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from data_contracts import load_json
from data_contracts.leads import CANONICAL_LEADS, TERRITORIES

# 2: a lead's own missing stretches are left out of its median beat (they were bridged into it),
# and no lead is cut short where another lead ends
FEATURE_VERSION = "features/2"

# name: (unit, meaning); float32 unless listed in INT_MEASURES.
RECORD_MEASURES: dict[str, tuple[str, str]] = {
    "n_beats": ("count", "beats in the median beat (dominant morphology)"),
    "hr_bpm": ("1/min", "heart rate from the median RR interval"),
    "rr_sdnn_ms": ("ms", "standard deviation of normal-to-normal RR intervals"),
    "rr_rmssd_ms": ("ms", "root mean square of successive NN differences"),
    "p_dur_ms": ("ms", "P wave duration (null without a measurable P)"),
    "pr_ms": ("ms", "P onset to QRS onset"),
    "qrs_ms": ("ms", "global QRS onset to offset, all leads together"),
    "qt_ms": ("ms", "global QRS onset to T end (median of the leads' T ends)"),
    "qtc_bazett_ms": ("ms", "QT / sqrt(RR in s)"),
    "qtc_fridericia_ms": ("ms", "QT / cbrt(RR in s)"),
    "qrs_axis_deg": ("deg", "frontal QRS axis from the net QRS areas of I and aVF"),
    "t_axis_deg": ("deg", "frontal T axis from the T areas of I and aVF"),
}
LEAD_MEASURES: dict[str, tuple[str, str]] = {
    "q_amp": ("mV", "initial negative deflection (0 without Q; a QS complex counts as Q)"),
    "q_dur": ("ms", "Q onset to its return to baseline (0 without Q; QRS duration for QS)"),
    "r_amp": ("mV", "largest positive QRS deflection (0 without R)"),
    "s_amp": ("mV", "most negative QRS deflection after the R peak (0 without S)"),
    "r_peak_time": ("ms", "QRS onset to R peak (null without R)"),
    "st_j": ("mV", "ST level at the J point (QRS offset) against the PR baseline"),
    "st_60": ("mV", "ST level 60 ms after the J point"),
    "t_amp": ("mV", "largest T deflection, signed"),
    "frag_count": ("count", "QRS deflections beyond a triphasic q-R-S (fragmentation)"),
    "template_corr": ("1", "median correlation of the beats with the median beat"),
}
INT_MEASURES = frozenset({"n_beats", "frag_count"})


def lead_column(measure: str, lead: str) -> str:
    return f"{measure}_{lead}"


def _criteria() -> dict:
    return load_json("feature_criteria.json")


def criteria_columns() -> dict[str, str]:
    """Boolean criterion columns and their rule, from the versioned criteria file."""
    crit = _criteria()
    cols = {f"crit_q_{lead}": f"pathological Q in {lead}" for lead in crit["pathological_q"]["leads"]}
    cols |= {
        f"crit_ste_{lead}": f"ST elevation at J meeting the STEMI cut-point of {lead}"
        for lead in crit["st_elevation"]["assessed_leads"]
    }
    for name, leads in TERRITORIES.items():
        n = crit["territories"]["min_leads"]
        cols[f"crit_q_{name}"] = f"pathological Q in >= {n} of {', '.join(leads)}"
        cols[f"crit_ste_{name}"] = f"STEMI ST elevation in >= {n} of {', '.join(leads)}"
    return cols


LEAD_COLUMNS: list[str] = [lead_column(m, lead) for m in LEAD_MEASURES for lead in CANONICAL_LEADS]
CRITERIA_COLUMNS: list[str] = list(criteria_columns())
# The numeric columns a model may use (criteria are booleans, listed apart).
FEATURE_COLUMNS: list[str] = [*RECORD_MEASURES, *LEAD_COLUMNS]


def _measure_field(name: str, measure: str, unit: str, meaning: str) -> pa.Field:
    kind = pa.int16() if measure in INT_MEASURES else pa.float32()
    return pa.field(name, kind, metadata={"unit": unit, "description": meaning})


FEATURES = pa.schema(
    [
        pa.field("record_id", pa.string(), nullable=False),
        pa.field("feature_version", pa.string(), nullable=False),
        pa.field("skip_reason", pa.string(), metadata={"description": "why features are null"}),
        *[_measure_field(m, m, *spec) for m, spec in RECORD_MEASURES.items()],
        *[
            _measure_field(lead_column(m, lead), m, unit, f"{meaning}, lead {lead}")
            for m, (unit, meaning) in LEAD_MEASURES.items()
            for lead in CANONICAL_LEADS
        ],
        *[pa.field(c, pa.bool_(), metadata={"description": rule}) for c, rule in criteria_columns().items()],
        pa.field("criteria_version", pa.string(), nullable=False),
        pa.field("computed_at", pa.timestamp("us", tz="UTC"), nullable=False),
    ]
)


def features_expectations(gxe: Any) -> list[Any]:
    """The GX suite of `features/` (wide, one row per record), for one site's measured rows
    (skip_reason null): columns, types, ranges and least non-null shares of the record measures
    (thresholds in feature_criteria.json). Per-lead measures: `feature_leads_expectations`."""
    contract = _criteria()["contract"]
    mostly = contract["range_mostly"]
    return [
        gxe.ExpectTableColumnsToMatchSet(column_set=[*FEATURES.names, "site"], exact_match=True),
        gxe.ExpectColumnValuesToNotBeNull(column="record_id"),
        gxe.ExpectColumnValuesToBeUnique(column="record_id"),
        gxe.ExpectColumnValuesToBeInSet(column="feature_version", value_set=[FEATURE_VERSION]),
        gxe.ExpectColumnValuesToBeNull(column="skip_reason"),
        *[gxe.ExpectColumnValuesToBeInTypeList(column=c, type_list=_NUMERIC) for c in RECORD_MEASURES],
        *[
            gxe.ExpectColumnValuesToBeBetween(column=c, min_value=lo, max_value=hi, mostly=mostly)
            for c, (lo, hi) in contract["record_ranges"].items()
        ],
        *[gxe.ExpectColumnValuesToNotBeNull(column=c, mostly=m) for c, m in contract["min_not_null"].items()],
    ]


def feature_leads_expectations(gxe: Any) -> list[Any]:
    """The GX suite of the per-lead view of `features/` (one row per record and lead, one column per
    lead measure: `tasks.features.contract.lead_view`), for one site's measured rows."""
    contract = _criteria()["contract"]
    mostly = contract["range_mostly"]
    return [
        gxe.ExpectTableColumnsToMatchSet(column_set=["record_id", "lead", *LEAD_MEASURES], exact_match=True),
        gxe.ExpectColumnValuesToBeInSet(column="lead", value_set=list(CANONICAL_LEADS)),
        gxe.ExpectCompoundColumnsToBeUnique(column_list=["record_id", "lead"]),
        *[gxe.ExpectColumnValuesToBeInTypeList(column=m, type_list=_NUMERIC) for m in LEAD_MEASURES],
        *[
            gxe.ExpectColumnValuesToBeBetween(column=m, min_value=lo, max_value=hi, mostly=mostly)
            for m, (lo, hi) in contract["lead_ranges"].items()
        ],
    ]


_NUMERIC = ["float32", "float64", "int16", "Int16"]
