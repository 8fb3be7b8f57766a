"""The records a training or evaluation run may use, read from the store after its contracts hold.

Training needs the quality gate and the feature store to have run: `check_contracts` fails with
the command to run when `quality/` or `features/` is missing, and validates both tables with
their Great Expectations suites (`features/` as its own stage checks it: measured rows of the
current feature version, per site). `eligible_records`
keeps the windows the quality gate passed (`pass` or `limited`); `reject` windows and windows the
gate has not seen yet are left out and counted, never silently dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.dataset as ds

from data_contracts.feature_columns import FEATURE_VERSION
from data_contracts.suites import require_valid
from tasks import store as st
from tasks.features.contract import require_valid_features

RECORD_COLUMNS = ["record_id", "patient_key", "site", "device", "mi_label", "strat_fold"]
USABLE_VERDICTS = ("pass", "limited")
_PREREQUISITES = {"quality": "msaic qc", "features": "msaic features"}


def check_contracts(store: Path) -> dict[str, int]:
    """Validate quality/ and features/ against their suites; rows checked per table."""
    for table, command in _PREREQUISITES.items():
        if st.dataset(store, table) is None:
            raise FileNotFoundError(f"{store} has no {table}/ table: run `{command} --store {store}` first")
    quality = require_valid("quality", st.read_table(store, "quality").to_pandas())
    features = require_valid_features(store)
    return {"quality": quality.evaluated, "features": sum(r.evaluated for r in features.values())}


@dataclass(frozen=True)
class Eligible:
    """Windows usable for training and evaluation, and how many were left out, by reason."""

    records: pd.DataFrame
    excluded: dict[str, int] = field(default_factory=dict)


def eligible_records(store: Path) -> Eligible:
    """Records joined with their quality verdict; `reject` and unchecked windows left out. In
    record_id order: the store's part files have random names, and a training run that followed
    their order drew different batches from the same split on every rebuilt store."""
    records = st.read_table(store, "records", RECORD_COLUMNS).to_pandas()
    if records.empty:
        raise ValueError(f"{store} has no records: run `msaic ingest ARCHIVE --store {store}` first")
    verdicts = st.read_table(store, "quality", ["record_id", "verdict"]).to_pandas()
    merged = records.merge(verdicts, on="record_id", how="left", validate="one_to_one")
    usable = merged["verdict"].isin(USABLE_VERDICTS)
    excluded = {
        "quality_reject": int((merged["verdict"] == "reject").sum()),
        "quality_unchecked": int(merged["verdict"].isna().sum()),
    }
    return Eligible(merged[usable].sort_values("record_id", ignore_index=True), excluded)


def feature_matrix(store: Path, record_ids: list[str], columns: list[str]) -> np.ndarray:
    """Feature values (records × columns, float64) of the current feature version, aligned with
    `record_ids`; a record the features stage skipped is all NaN, which the baselines handle."""
    wanted = ds.field("record_id").isin(record_ids) & (ds.field("feature_version") == FEATURE_VERSION)
    table = st.read_table(store, "features", ["record_id", *columns], wanted)
    frame = table.to_pandas().set_index("record_id")
    return frame.reindex(record_ids)[columns].to_numpy(np.float64)
