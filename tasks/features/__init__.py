"""Median-beat measurements of every record, for `features/` (issue 5).

Modules: `beats` (R peaks on all leads together, one median beat per lead), `delineate` (QRS
on/offset, T end, P, once per record on the median beats), `measure` (record and per-lead
measures), `criteria` (pathological Q, STEMI ST elevation, territories), `contract` (the data
contract of `features/`, checked per site before training reads it), `reference` (LUDB's
cardiologist annotations, for the delineation tests and bench), `run` (the store-level,
incremental, parallel driver). Column names, units and the schema: data_contracts/feature_columns.py.

For models: `FEATURE_COLUMNS` lists the numeric columns (float32/int16, null = not measurable),
`CRITERIA_COLUMNS` the boolean criteria (null = undecided).
"""

from __future__ import annotations

from data_contracts.feature_columns import CRITERIA_COLUMNS, FEATURE_COLUMNS, FEATURE_VERSION
from tasks.features.contract import validate_features
from tasks.features.run import FeatureTotals, build_features

__all__ = [
    "CRITERIA_COLUMNS",
    "FEATURE_COLUMNS",
    "FEATURE_VERSION",
    "FeatureTotals",
    "build_features",
    "validate_features",
]
