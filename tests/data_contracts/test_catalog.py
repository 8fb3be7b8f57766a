"""The table catalog names every store table with its schema, partitioning and suite, and the
store reads tables only through it."""

from __future__ import annotations

from pathlib import Path

import pytest

from data_contracts.catalog import CATALOG, table
from data_contracts.schemas import TABLES
from data_contracts.suites import SUITES
from tasks import store as st


def test_every_table_is_in_the_catalog_with_a_known_suite() -> None:
    assert set(CATALOG) == set(TABLES)
    for spec in CATALOG.values():
        assert spec.schema.equals(TABLES[spec.name]) and spec.partitioning == ("site",)
    assert {suite for s in CATALOG.values() for suite in s.suites} == set(SUITES)


def test_a_misspelt_table_name_fails_instead_of_reading_nothing(tmp_path: Path) -> None:
    assert st.read_table(tmp_path, "records").num_rows == 0  # known, empty
    with pytest.raises(KeyError, match="no table 'record'"):
        st.read_table(tmp_path, "record")
    with pytest.raises(KeyError):
        table("scores ")
