"""The records a training or evaluation run may use, read from the store after its contracts hold.

Training needs the quality gate and the feature store to have run: `check_contracts` fails with
the command to run when `quality/` or `features/` is missing, and validates both tables with
their Great Expectations suites (`features/` as its own stage checks it: measured rows of the
current feature version, per site). `eligible_records`
keeps the windows the quality gate passed (`pass` or `limited`); `reject` windows and windows the
gate has not seen yet are left out and counted, never silently dropped. The reviewers' latest
adjudication of a record (STORE/adjudications/, `tasks.review.adjudication.latest_decisions`) replaces
its source label: "mi" → 1, "not_mi" → 0, "unreadable" → the record leaves training and
evaluation (counted as `adjudicated_unreadable`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds

from data_contracts.feature_columns import FEATURE_VERSION
from data_contracts.schemas import ADJUDICATION_DECISIONS
from data_contracts.suites import require_valid
from tasks import store as st
from tasks.features.contract import require_valid_features
from tasks.review.adjudication import latest_decisions
from tasks.store.location import Location

RECORD_COLUMNS = ["record_id", "patient_key", "site", "device", "mi_label", "strat_fold"]
USABLE_VERDICTS = ("pass", "limited")
ADJUDICATED_LABELS = {"mi": 1, "not_mi": 0}  # "unreadable" removes the record
_PREREQUISITES = {"quality": "msaic qc", "features": "msaic features"}


def check_contracts(store: Location) -> dict[str, Any]:
    """Validate quality/ and features/ against their suites: expectations evaluated per table, and
    the sites whose features were too few rows to check (`features_not_checked`)."""
    for table, command in _PREREQUISITES.items():
        if st.dataset(store, table) is None:
            raise FileNotFoundError(f"{store} has no {table}/ table: run `{command} --store {store}` first")
    quality = require_valid("quality", st.read_table(store, "quality").to_pandas())
    features = require_valid_features(store)
    return {
        "quality": quality.evaluated,
        "features": sum(r.evaluated for r in features.values()),
        "features_not_checked": sorted(site for site, r in features.items() if not r.evaluated),
    }


@dataclass(frozen=True)
class Eligible:
    """Windows usable for training and evaluation, how many were left out, by reason, and what
    the adjudications did (`adjudicated`)."""

    records: pd.DataFrame
    excluded: dict[str, int] = field(default_factory=dict)
    adjudications: dict[str, int] = field(default_factory=dict)


def adjudicated(records: pd.DataFrame, decisions: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """Records with the latest decision per record (record_id, decision) over their source
    `mi_label`, "unreadable" ones left out, and counts: `decisions`, `used` (those about these
    records), of which `changed_label` (a source label turned over), `labelled` (the source had
    none), `confirmed` (the same label) and `removed` (unreadable); `not_eligible` (about other
    records: not in the store, or not usable)."""
    unknown = set(decisions["decision"]) - set(ADJUDICATION_DECISIONS)
    if unknown or not decisions["record_id"].is_unique:
        raise ValueError(f"adjudications must be one known decision per record (found {sorted(unknown)})")
    decision = records["record_id"].map(decisions.set_index("record_id")["decision"])
    label, source = decision.map(ADJUDICATED_LABELS), records["mi_label"]
    relabelled, removed = label.notna(), decision == "unreadable"
    used = int(decision.notna().sum())
    counts = {
        "decisions": len(decisions),
        "used": used,
        "changed_label": int((relabelled & source.notna() & (source != label)).sum()),
        "labelled": int((relabelled & source.isna()).sum()),
        "confirmed": int((relabelled & (source == label)).sum()),
        "removed": int(removed.sum()),
        "not_eligible": len(decisions) - used,
    }
    return records.assign(mi_label=label.where(relabelled, source))[~removed], counts


def eligible_records(store: Location) -> Eligible:
    """Records joined with their quality verdict; `reject` and unchecked windows left out; the
    adjudicated labels applied (`adjudicated`). In record_id order: the store's part files have
    random names, and a training run that followed their order drew different batches from the
    same split on every rebuilt store."""
    records = st.read_table(store, "records", RECORD_COLUMNS).to_pandas()
    if records.empty:
        raise ValueError(f"{store} has no records: run `msaic ingest ARCHIVE --store {store}` first")
    verdicts = st.read_table(store, "quality", ["record_id", "verdict"]).to_pandas()
    merged = records.merge(verdicts, on="record_id", how="left", validate="one_to_one")
    usable = merged["verdict"].isin(USABLE_VERDICTS)
    labelled, adjudications = adjudicated(merged[usable], latest_decisions(store))
    excluded = {
        "quality_reject": int((merged["verdict"] == "reject").sum()),
        "quality_unchecked": int(merged["verdict"].isna().sum()),
        "adjudicated_unreadable": adjudications["removed"],
    }
    return Eligible(labelled.sort_values("record_id", ignore_index=True), excluded, adjudications)


def feature_matrix(store: Location, record_ids: list[str], columns: list[str]) -> np.ndarray:
    """Feature values (records × columns, float64; a boolean criterion as 0/1) of the current
    feature version, aligned with `record_ids`; a record the features stage skipped is all NaN,
    which the models handle."""
    wanted = ds.field("record_id").isin(record_ids) & (ds.field("feature_version") == FEATURE_VERSION)
    table = st.read_table(store, "features", ["record_id", *columns], wanted)
    numeric = pa.table({c: table[c].cast(pa.float64()) for c in columns})  # criteria: booleans as 0/1
    frame = numeric.to_pandas().set_index(pd.Index(table["record_id"].to_pylist()))
    return frame.reindex(record_ids)[columns].to_numpy(np.float64)
