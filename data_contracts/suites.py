"""Great Expectations suites for the store tables, and the check that runs them at a boundary.

One ephemeral GX context per process holds one validation definition per table; a batch is a
pandas DataFrame. `require_valid` raises `ContractError` listing every failed expectation, so a
bad batch fails loudly before anything is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from threading import Lock
from typing import Any

import pandas as pd
import pyarrow as pa

from data_contracts.feature_columns import feature_leads_expectations, features_expectations
from data_contracts.schemas import (
    FLAG_COLUMNS,
    QC_FLAGS,
    QC_VERDICTS,
    QUALITY,
    RECORDS,
    SITE_FIELD,
    SOURCE_FORMATS,
)


class ContractError(ValueError):
    """A batch that breaks its table's data contract."""


@dataclass(frozen=True)
class ValidationSummary:
    table: str
    success: bool
    evaluated: int
    failed: list[str]


def _records_expectations(gxe: Any) -> list[Any]:
    columns = [*RECORDS.names, SITE_FIELD.name]
    return [
        gxe.ExpectTableColumnsToMatchSet(column_set=columns, exact_match=True),
        *[gxe.ExpectColumnValuesToNotBeNull(column=c) for c in columns if not _nullable(c)],
        gxe.ExpectColumnValuesToBeUnique(column="record_id"),
        gxe.ExpectColumnValueLengthsToEqual(column="record_id", value=32),
        gxe.ExpectColumnValueLengthsToEqual(column="patient_key", value=32),
        gxe.ExpectColumnValueLengthsToEqual(column="content_sha256", value=64),
        gxe.ExpectColumnValuesToBeInSet(column="fs", value_set=[500]),
        gxe.ExpectColumnValuesToBeBetween(column="window", min_value=0, max_value=10_000),
        gxe.ExpectColumnValuesToBeBetween(column="n_samples", min_value=1, max_value=5000),
        gxe.ExpectColumnValuesToBeBetween(column="source_fs", min_value=50, max_value=20_000),
        gxe.ExpectColumnValuesToBeBetween(column="age", min_value=0, max_value=120),
        gxe.ExpectColumnValuesToBeInSet(column="sex", value_set=["M", "F"]),
        gxe.ExpectColumnValuesToBeInSet(column="format", value_set=list(SOURCE_FORMATS)),
        gxe.ExpectColumnValuesToMatchRegex(
            column="recorded_at", regex=r"^\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2})?"
        ),
        gxe.ExpectColumnValuesToBeInSet(column="mi_label", value_set=[0, 1]),
        gxe.ExpectColumnValuesToBeBetween(column="strat_fold", min_value=1, max_value=10),
        gxe.ExpectColumnValuesToMatchRegex(column="site", regex=r"^\S.*$"),
    ]


def _nullable(column: str) -> bool:
    return column != SITE_FIELD.name and RECORDS.field(column).nullable


def _quality_expectations(gxe: Any) -> list[Any]:
    flag = f"(?:{'|'.join(QC_FLAGS)})"
    scalar = [c for c in QUALITY.names if not pa.types.is_list(QUALITY.field(c).type)]
    return [
        gxe.ExpectTableColumnsToMatchSet(column_set=[*QUALITY.names, SITE_FIELD.name], exact_match=True),
        *[gxe.ExpectColumnValuesToNotBeNull(column=c) for c in [*scalar, SITE_FIELD.name]],
        gxe.ExpectColumnValuesToBeUnique(column="record_id"),
        gxe.ExpectColumnValuesToBeInSet(column="verdict", value_set=list(QC_VERDICTS)),
        *[
            gxe.ExpectColumnValuesToMatchRegex(column=c, regex=rf"^(?:{flag}(?:,{flag})*)?$")
            for c in FLAG_COLUMNS
        ],
        gxe.ExpectColumnValuesToMatchRegex(column="qc_version", regex=r"^qc/\d+$"),
        gxe.ExpectColumnValuesToMatchRegex(column="site", regex=r"^\S.*$"),
    ]


SUITES = {
    "records": _records_expectations,
    "quality": _quality_expectations,
    "features": features_expectations,
    "feature_leads": feature_leads_expectations,
}


_build_lock = Lock()


def _validation(table: str) -> Any:
    with _build_lock:  # the warm-up thread and the first commit may ask at the same time
        return _build_validation(table)


@cache
def _build_validation(table: str) -> Any:
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    # In memory only: no temporary Data Docs site on disk (nothing is written outside STORE).
    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False)
    )
    context = gx.get_context(mode="ephemeral", project_config=config)
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch = context.data_sources.add_pandas(f"{table}_source").add_dataframe_asset(table)
    definition = batch.add_batch_definition_whole_dataframe(f"{table}_batch")
    suite = context.suites.add(gx.ExpectationSuite(name=f"{table}_contract"))
    for expectation in SUITES[table](gx.expectations):
        suite.add_expectation(expectation)
    return context.validation_definitions.add(
        gx.ValidationDefinition(name=f"{table}_validation", data=definition, suite=suite)
    )


def warm_up(table: str) -> None:
    """Build the table's validation ahead of its first batch (imports take seconds)."""
    _validation(table)


def validate(table: str, frame: pd.DataFrame) -> ValidationSummary:
    """Run the table's suite on one batch."""
    result = _validation(table).run(batch_parameters={"dataframe": frame})
    failed = [
        f"{r.expectation_config.type}({r.expectation_config.kwargs.get('column', '')})"
        for r in result.results
        if not r.success
    ]
    return ValidationSummary(
        table, bool(result.success), int(result.statistics["evaluated_expectations"]), failed
    )


def require_valid(table: str, frame: pd.DataFrame) -> ValidationSummary:
    """Validate and raise ContractError when any expectation fails."""
    summary = validate(table, frame)
    if not summary.success:
        raise ContractError(
            f"{table}: batch of {len(frame)} rows breaks its contract: {', '.join(summary.failed)}"
        )
    return summary
