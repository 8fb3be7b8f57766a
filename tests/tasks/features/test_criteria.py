"""The clinical criteria (4th universal definition of MI) on hand-set measurements, and the row and
table shape of `features/` (skips, NaN → null, schema)."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pytest

from data_contracts.feature_columns import (
    CRITERIA_COLUMNS,
    FEATURE_COLUMNS,
    FEATURE_VERSION,
    FEATURES,
    LEAD_MEASURES,
    lead_column,
)
from data_contracts.leads import CANONICAL_LEADS
from tasks.features.criteria import criteria
from tasks.features.measure import criteria_config
from tasks.features.reference import read_ludb
from tasks.features.run import RecordMeta, feature_row, rows_table
from tests.conftest import LUDB


def _row(**values: float) -> dict[str, float]:
    """A measured row with no Q and no ST shift anywhere, then the given values."""
    row = {lead_column(m, lead): 0.0 for m in LEAD_MEASURES for lead in CANONICAL_LEADS}
    return row | values


def _crit(row: dict[str, float], sex: str | None = "M", age: float | None = 60) -> dict:
    return criteria(row, sex, age, criteria_config())


@pytest.mark.parametrize(
    ("st_v2", "sex", "age", "expected"),
    [
        (0.18, "M", 60, False),  # men >= 40: 0.2 mV
        (0.22, "M", 60, True),
        (0.22, "M", 30, False),  # men < 40: 0.25 mV
        (0.26, "M", 30, True),
        (0.16, "F", 30, True),  # women: 0.15 mV
        (0.14, "F", 70, False),
        (0.22, "M", None, None),  # 0.2 or 0.25: undecided without the age
        (0.18, None, None, None),  # 0.15, 0.2 or 0.25
        (0.30, None, None, True),
        (0.10, None, None, False),
    ],
)
def test_stemi_cut_points_in_v2_depend_on_sex_and_age(
    st_v2: float, sex: str | None, age: float | None, expected: bool | None
) -> None:
    assert _crit(_row(st_j_V2=st_v2), sex, age)["crit_ste_V2"] is expected


def test_other_leads_use_one_millimetre() -> None:
    crit = _crit(_row(st_j_II=0.1, st_j_III=0.09, st_j_V5=0.12), "F", 30)
    assert (crit["crit_ste_II"], crit["crit_ste_III"], crit["crit_ste_V5"]) == (True, False, True)


def test_pathological_q_by_lead() -> None:
    crit = _crit(
        _row(
            q_dur_V2=24.0, q_amp_V2=-0.05,  # any Q > 20 ms in V2-V3
            q_dur_II=24.0, q_amp_II=-0.3,  # too short for II (30 ms)
            q_dur_aVF=40.0, q_amp_aVF=-0.05,  # too shallow (0.1 mV)
            q_dur_V5=36.0, q_amp_V5=-0.15,
        )
    )  # fmt: skip
    assert (crit["crit_q_V2"], crit["crit_q_II"], crit["crit_q_aVF"], crit["crit_q_V5"]) == (
        True,
        False,
        False,
        True,
    )
    assert "crit_q_III" not in crit and "crit_q_aVR" not in crit  # not assessed by the definition


def test_territories_need_two_contiguous_leads_and_stay_undecided_on_missing_leads() -> None:
    one = _crit(_row(st_j_II=0.2))
    assert one["crit_ste_inferior"] is False
    two = _crit(_row(st_j_II=0.2, st_j_aVF=0.15))
    assert two["crit_ste_inferior"] is True and two["crit_ste_anterior"] is False
    unknown = _crit(_row(st_j_II=0.2, st_j_aVF=float("nan")))
    assert unknown["crit_ste_aVF"] is None and unknown["crit_ste_inferior"] is None
    lateral_q = _crit(_row(q_dur_I=40.0, q_amp_I=-0.2, q_dur_aVL=40.0, q_amp_aVL=-0.2))
    assert lateral_q["crit_q_lateral"] is True and lateral_q["crit_q_inferior"] is False


def _meta(verdict: str) -> RecordMeta:
    return RecordMeta("r1", "src/1.hea", verdict, (True,) * len(CANONICAL_LEADS), "F", 51.0)


def test_rejected_records_get_a_reason_and_no_values() -> None:
    row = feature_row(read_ludb(LUDB / "5"), _meta("reject"))
    assert row == {"record_id": "r1", "skip_reason": "quality_reject"}


def test_rows_table_has_the_schema_and_nulls_not_nans() -> None:
    measured = feature_row(read_ludb(LUDB / "5"), _meta("pass"))
    assert measured["skip_reason"] is None and set(CRITERIA_COLUMNS) <= set(measured)
    flat = feature_row(np.zeros((len(CANONICAL_LEADS), 5000)), _meta("limited"))
    assert flat["skip_reason"] == "too_few_beats"
    table = rows_table([measured, flat], "ludb", datetime.now(UTC))
    assert table.schema.remove(table.schema.get_field_index("site")).equals(FEATURES)
    for col in FEATURE_COLUMNS:
        values = table.column(col)
        assert values.null_count >= 1  # the skipped row
        if pa.types.is_floating(values.type):
            assert not any(isinstance(v, float) and math.isnan(v) for v in values.to_pylist())
    assert table.column("hr_bpm")[0].as_py() > 0
    assert table.column("feature_version").to_pylist() == [FEATURE_VERSION] * 2
