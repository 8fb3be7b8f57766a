"""The data contract of `features/`, checked per site: what the training flow runs before it reads.

Two suites (data_contracts/feature_columns.py, registered in data_contracts/suites.py) apply to
the measured rows at the current feature version (skipped rows carry nulls by design): `features`
on the wide table (record measures), `feature_leads` on its per-lead view (one row per record and
lead, one column per lead measure), which checks 10 columns instead of 120.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.compute as pc

from data_contracts import load_json
from data_contracts.feature_columns import FEATURE_VERSION, LEAD_MEASURES, lead_column
from data_contracts.leads import CANONICAL_LEADS
from data_contracts.suites import ContractError, ValidationSummary, validate
from tasks import store as st


def lead_view(frame: pd.DataFrame) -> pd.DataFrame:
    """Wide features → one row per record and lead with columns record_id, lead, <measures>."""
    parts = []
    for lead in CANONICAL_LEADS:
        part = frame[[lead_column(m, lead) for m in LEAD_MEASURES]]
        part.columns = list(LEAD_MEASURES)
        parts.append(part.assign(record_id=frame["record_id"].to_numpy(), lead=lead))
    return pd.concat(parts, ignore_index=True)[["record_id", "lead", *LEAD_MEASURES]]


def _merge(site: str, wide: ValidationSummary, leads: ValidationSummary) -> ValidationSummary:
    return ValidationSummary(
        f"features[{site}]",
        wide.success and leads.success,
        wide.evaluated + leads.evaluated,
        wide.failed + leads.failed,
    )


def validate_feature_rows(frame: pd.DataFrame, min_rows: int) -> dict[str, ValidationSummary]:
    """Both suites on measured rows, by site: a site with at least `min_rows` rows alone, the
    smaller sites together, since the suites' shares (a range held by 95 % of the rows, QT
    measured in 80 %) say nothing of a handful of rows: one bradycardic record without a QT failed
    a one-record site, and training on the whole store with it. Smaller sites holding fewer than
    `min_rows` rows together are not checked (evaluated 0). Every site maps to its group's result."""
    sizes = frame.groupby("site", observed=True).size()
    groups = [[str(site)] for site, n in sizes.items() if n >= min_rows]
    small = sorted(str(site) for site, n in sizes.items() if n < min_rows)
    out: dict[str, ValidationSummary] = {}
    for sites in [*groups, small] if small else groups:
        rows = frame[frame["site"].astype(str).isin(sites)]
        name = sites[0] if sites in groups else "sites under " + str(min_rows) + " rows: " + ", ".join(sites)
        if len(rows) < min_rows:
            summary = ValidationSummary(f"features[{name}]", True, 0, [])
        else:
            summary = _merge(name, validate("features", rows), validate("feature_leads", lead_view(rows)))
        out |= dict.fromkeys(sites, summary)
    return out


def validate_features(store: Path) -> dict[str, ValidationSummary]:
    """`validate_feature_rows` on the store's measured rows; empty when nothing is measured yet."""
    measured = (pc.field("feature_version") == FEATURE_VERSION) & pc.field("skip_reason").is_null()
    frame = st.read_table(store, "features", filter=measured).to_pandas()
    return validate_feature_rows(frame, int(load_json("feature_criteria.json")["contract"]["min_rows"]))


def require_valid_features(store: Path) -> dict[str, ValidationSummary]:
    """`validate_features`, raising ContractError that names every failing site and expectation."""
    results = validate_features(store)
    failed = sorted({f"{r.table}: {', '.join(r.failed)}" for r in results.values() if not r.success})
    if failed:
        raise ContractError("features/ breaks its contract: " + "; ".join(failed))
    return results
