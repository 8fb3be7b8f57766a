"""The Great Expectations contract on quality/: rows made by the gate from real LUDB records pass,
broken verdicts, flag names, versions and keys fail loudly."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import wfdb

from data_contracts.suites import ContractError, require_valid, validate
from tasks.quality.gate import assess, load_profile, result_table
from tests.conftest import LUDB


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    x = np.stack([wfdb.rdrecord(str(LUDB / n)).p_signal.T for n in ("1", "2", "3")]).astype(np.float32)
    x[2, 7] = 0.0  # a flat V2, so that one flag cell is not empty
    profile = load_profile()
    res = assess(x, profile)
    ids = [f"{i:032x}" for i in range(3)]
    return result_table(ids, ["ludb"] * 3, res, profile.version).to_pandas()


def test_rows_from_the_gate_pass(frame: pd.DataFrame) -> None:
    summary = validate("quality", frame)
    assert summary.success and summary.evaluated > 25, summary.failed
    assert "flat" in frame.loc[2, "flags_V2"]


def test_broken_rows_fail_with_their_columns_named(frame: pd.DataFrame) -> None:
    bad = frame.copy()
    bad.loc[0, "verdict"] = "maybe"
    bad.loc[1, "flags_V1"] = "flat,bogus"
    bad.loc[2, "record_id"] = bad.loc[0, "record_id"]
    bad["qc_version"] = "v1"
    with pytest.raises(ContractError) as err:
        require_valid("quality", bad)
    for name in ("verdict", "flags_V1", "record_id", "qc_version"):
        assert name in str(err.value)
    with pytest.raises(ContractError, match="expect_table_columns_to_match_set"):
        require_valid("quality", frame.drop(columns=["flags_aVR"]))
