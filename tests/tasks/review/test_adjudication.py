"""Adjudications are appended as new Parquet parts through the store's commit, the latest
decision per record counts, the reviewer is a keyed hash, and bad decisions or a busy store are
refused with a clear error."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from data_contracts.schemas import ADJUDICATIONS
from tasks import store as st
from tasks.review.adjudication import (
    AdjudicationError,
    Decision,
    StoreBusy,
    adjudication_row,
    append_decisions,
    latest_decisions,
    reviewer_key,
)

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def decision(record_id: str, what: str, territory: str | None = None, site: str = "a") -> Decision:
    return Decision(record_id, f"{site}/{record_id}.hea", site, what, territory, "model-1")


def test_latest_decision_per_record_wins(tmp_path: Path) -> None:
    store = tmp_path / "store"
    key = reviewer_key(b"k" * 32, "Dr. Ada Example")
    first = [
        adjudication_row(decision("r1", "mi", "inferior"), key, T0),
        adjudication_row(decision("r2", "unreadable", site="b"), key, T0),
    ]
    parts = append_decisions(store, first)
    # a later change of mind on r1, appended as a new part: nothing is rewritten
    later = append_decisions(
        store, [adjudication_row(decision("r1", "not_mi"), key, T0 + timedelta(hours=1))]
    )
    assert {p.parent.name for p in parts} == {"site=a", "site=b"}
    assert all(p.is_file() for p in [*parts, *later]) and not set(later) & set(parts)
    assert pq.read_schema(later[0]).names == ADJUDICATIONS.names
    latest = latest_decisions(store).set_index("record_id")
    assert list(latest.columns) == ["decision", "territory", "decided_at"]
    assert latest.loc["r1", "decision"] == "not_mi" and latest.loc["r1", "territory"] is None
    assert latest.loc["r2", "decision"] == "unreadable"
    assert latest.loc["r1", "decided_at"] == T0 + timedelta(hours=1)
    assert st.read_table(store, "adjudications").num_rows == 3  # the history stays


def test_no_adjudication_is_an_empty_frame(tmp_path: Path) -> None:
    latest = latest_decisions(tmp_path)
    assert latest.empty and list(latest.columns) == ["record_id", "decision", "territory", "decided_at"]


def test_reviewer_is_a_keyed_hash() -> None:
    a, b = reviewer_key(b"k" * 32, "Dr. Ada"), reviewer_key(b"j" * 32, "Dr. Ada")
    assert a == reviewer_key(b"k" * 32, " Dr. Ada ") and a != b and "Ada" not in a and len(a) == 32
    with pytest.raises(AdjudicationError, match="reviewer"):
        reviewer_key(b"k" * 32, "  ")


@pytest.mark.parametrize(
    ("what", "territory", "message"),
    [
        ("maybe", None, "unknown decision"),
        ("not_mi", "inferior", "only with a confirmed MI"),
        ("mi", "left-ish", "unknown territory"),
    ],
)
def test_bad_decisions_are_refused(what: str, territory: str | None, message: str) -> None:
    with pytest.raises(AdjudicationError, match=message):
        adjudication_row(decision("r1", what, territory), "key")


def test_label_vocabulary_territories_are_accepted() -> None:
    assert adjudication_row(decision("r1", "mi", "anteroseptal"), "key")["territory"] == "anteroseptal"


def test_a_busy_store_refuses_the_decision_and_writes_nothing(tmp_path: Path) -> None:
    store = tmp_path / "store"
    row = adjudication_row(decision("r1", "mi"), "key")
    with st.store_lock(store), pytest.raises(StoreBusy, match="not recorded"):
        append_decisions(store, [row], wait_s=0.2)
    assert latest_decisions(store).empty
    append_decisions(store, [row])  # the lock released: it lands
    assert latest_decisions(store)["record_id"].tolist() == ["r1"]
