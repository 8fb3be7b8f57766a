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


def test_small_sites_are_checked_together_and_never_block_alone(measured: pd.DataFrame) -> None:
    """Shares of a handful of rows say nothing: a site of one bradycardic record without QT or PR
    (a real LUDB record's row with them taken out) passes alone with nothing checked, and its
    neighbours' check decides once the small sites together reach `min_rows`; a large site is
    still checked alone and named when it breaks."""
    from tasks.features.contract import validate_feature_rows

    slow = measured.iloc[[0]].assign(site="tiny", record_id="slow", qt_ms=None, pr_ms=None, hr_bpm=21.0)
    big = measured.assign(site="big")
    result = validate_feature_rows(pd.concat([big, slow], ignore_index=True), min_rows=len(measured))
    assert result["big"].success and result["big"].evaluated > 0
    assert result["tiny"].success and result["tiny"].evaluated == 0  # not checked, not failed
    assert not validate_feature_rows(pd.concat([big, slow]), min_rows=1)["tiny"].success  # what it was
    # small sites pooled: 12 good rows and the slow one are checked together and keep the contract
    pooled = validate_feature_rows(pd.concat([measured.assign(site="a"), slow]), min_rows=len(measured) + 1)
    assert pooled["a"] is pooled["tiny"] and pooled["a"].evaluated > 0 and pooled["a"].success
    assert pooled["a"].table == f"features[sites under {len(measured) + 1} rows: a, tiny]"
    broken = big.assign(qrs_ms=900.0)
    failed = validate_feature_rows(pd.concat([broken, slow]), min_rows=len(measured))
    assert not failed["big"].success and any("qrs_ms" in f for f in failed["big"].failed)
    assert failed["tiny"].evaluated == 0
