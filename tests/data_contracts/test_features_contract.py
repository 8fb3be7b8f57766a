"""The Great Expectations contract of `features/` (run by Great Expectations itself) on rows
measured from real LUDB records: it passes them, and it names what breaks in a broken batch."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest

from data_contracts.feature_columns import FEATURES
from data_contracts.leads import CANONICAL_LEADS
from data_contracts.suites import validate
from tasks.features.contract import lead_view
from tasks.features.reference import read_ludb
from tasks.features.run import RecordMeta, feature_row, rows_table
from tests.conftest import LUDB


@pytest.fixture(scope="module")
def measured() -> pd.DataFrame:
    rows = [
        feature_row(
            read_ludb(LUDB / str(k)), RecordMeta(f"r{k}", f"{k}.hea", "pass", (True,) * 12, "F", 50.0)
        )
        for k in range(10, 22)
    ]
    frame = rows_table(rows, "ludb", datetime.now(UTC)).to_pandas()
    assert frame["skip_reason"].isna().all()
    return frame


def test_measured_rows_keep_the_contract(measured: pd.DataFrame) -> None:
    wide = validate("features", measured)
    leads = validate("feature_leads", lead_view(measured))
    assert wide.success and leads.success, wide.failed + leads.failed
    assert wide.evaluated >= 30 and leads.evaluated >= 20


def test_lead_view_has_one_row_per_record_and_lead(measured: pd.DataFrame) -> None:
    view = lead_view(measured)
    assert len(view) == len(measured) * len(CANONICAL_LEADS)
    row = view[(view["record_id"] == "r10") & (view["lead"] == "V2")].iloc[0]
    assert row["st_j"] == measured.loc[measured["record_id"] == "r10", "st_j_V2"].iloc[0]


@pytest.mark.parametrize(
    ("column", "value", "failed"),
    [
        ("hr_bpm", 1000.0, "expect_column_values_to_be_between(hr_bpm)"),
        ("qrs_ms", None, "expect_column_values_to_not_be_null(qrs_ms)"),
        ("feature_version", "features/0", "expect_column_values_to_be_in_set(feature_version)"),
        ("skip_reason", "quality_reject", "expect_column_values_to_be_null(skip_reason)"),
    ],
)
def test_broken_record_measures_are_named(
    measured: pd.DataFrame, column: str, value: object, failed: str
) -> None:
    broken = measured.assign(**{column: value})
    summary = validate("features", broken)
    assert not summary.success and failed in summary.failed


def test_broken_lead_measures_and_columns_are_named(measured: pd.DataFrame) -> None:
    broken = lead_view(measured.assign(st_j_V2=50.0, st_j_V3=50.0))
    summary = validate("feature_leads", broken)
    assert not summary.success and summary.failed == ["expect_column_values_to_be_between(st_j)"]
    missing = validate("features", measured.drop(columns=[FEATURES.names[-1]]))
    assert "expect_table_columns_to_match_set()" in missing.failed
