"""One rule for a stated age, whatever the source: a WFDB/CinC header, PTB-XL's table (300 means
over 89) or a hospital export (years, or a birth date before the recording)."""

from __future__ import annotations

import math

import numpy as np

from tasks.ingest.header_meta import parse_comments
from tasks.ingest.ptbxl import _age as ptbxl_age
from tasks.ingest.readers.base import MAX_AGE_YEARS, Decoded, age_at, plausible_age
from tasks.ingest.record_meta import from_export
from tasks.ingest.wfdb_reader import RawRecord


def _export_age(age: float | None) -> float | None:
    raw = RawRecord(np.zeros((5000, 0), np.float32), [], [], 500.0, [])
    return from_export(Decoded(raw=raw, format="muse", age=age)).age


def test_an_age_is_kept_from_0_to_120_years_and_is_unknown_otherwise() -> None:
    for age, kept in [(0.0, 0.0), (0.5, 0.5), (63.0, 63.0), (120.0, 120.0), (120.5, None), (150.0, None),
                      (-1.0, None), (math.nan, None), (None, None)]:  # fmt: skip
        assert plausible_age(age) == kept, age
        assert _export_age(age) == kept, age
    assert MAX_AGE_YEARS == 120
    assert parse_comments(["Age: 63"]).age == 63.0 and parse_comments(["Age: 130"]).age is None
    assert ptbxl_age(300) == 90.0 and ptbxl_age(45) == 45.0 and ptbxl_age(130) is None


def test_an_age_from_a_birth_date_is_judged_by_the_same_rule() -> None:
    from datetime import date

    assert age_at(date(1950, 6, 2), date(2020, 6, 1)) == 69.0  # completed years
    assert _export_age(age_at(date(1850, 1, 1), date(2020, 1, 1))) is None  # a birth date typo
