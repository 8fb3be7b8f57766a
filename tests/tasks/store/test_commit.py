"""The one committer: a batch is validated with its table's suite before anything is published,
a refused batch leaves nothing staged, and an input is quarantined once."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from data_contracts.schemas import FLAG_COLUMNS, N_LEADS, QUALITY
from data_contracts.suites import ContractError
from tasks import store as st
from tasks.store.commit import Committer, quarantine_row


def _quality_rows(ids: list[str], verdict: str = "pass") -> pa.Table:
    nan = [np.nan] * N_LEADS
    rows = [
        {
            "record_id": rid,
            "verdict": verdict,
            "reasons": [],
            **dict.fromkeys(FLAG_COLUMNS, ""),
            **{c: nan for c in ("powerline", "baseline", "emg", "template_corr", "kurtosis")},
            "qc_version": "qc/3",
            "checked_at": datetime.now(UTC),
            "site": "a",
        }
        for rid in ids
    ]
    return pa.Table.from_pylist(rows, schema=QUALITY.append(pa.field("site", pa.string())))


def test_a_valid_batch_and_its_quarantine_are_published_together(tmp_path: Path) -> None:
    with st.store_lock(tmp_path):
        committer = Committer(tmp_path, "quality")
        moves = st.stage_parts(tmp_path, "quality", _quality_rows(["r1", "r2"]))
        problem = quarantine_row("x/1.hea", "a", "quality", "unreadable_waveforms", "E" * 5000)
        batch = committer.publish(moves, [problem])
        assert batch is not None and batch.num_rows == 2 and batch["site"].to_pylist() == ["a", "a"]
        # the same input, stage and reason again: not a second row
        committer.publish([], [quarantine_row("x/1.hea", "a", "quality", "unreadable_waveforms", "again")])
    assert sorted(st.read_table(tmp_path, "quality", ["record_id"])["record_id"].to_pylist()) == ["r1", "r2"]
    quarantine = st.read_table(tmp_path, "quarantine").to_pylist()
    assert len(quarantine) == 1 and len(quarantine[0]["detail"]) == 2000
    # a new committer (a later run) knows it from the store
    with st.store_lock(tmp_path):
        assert Committer(tmp_path, "quality").fresh([problem]) == []


@pytest.mark.parametrize("sites", [[None, None], ["a", None]])
def test_rows_without_a_site_are_refused_before_anything_is_staged(
    tmp_path: Path, sites: list[str | None]
) -> None:
    rows = _quality_rows(["r1", "r2"])
    rows = rows.set_column(rows.schema.get_field_index("site"), "site", pa.array(sites, pa.string()))
    with pytest.raises(ValueError, match=f"quality: {sites.count(None)} of 2 rows have no site"):
        st.stage_parts(tmp_path, "quality", rows)
    assert not list(tmp_path.rglob("*.parquet"))


def test_a_batch_failing_its_suite_publishes_nothing_and_leaves_nothing_staged(tmp_path: Path) -> None:
    with st.store_lock(tmp_path):
        committer = Committer(tmp_path, "quality")
        moves = st.stage_parts(tmp_path, "quality", _quality_rows(["r1"], verdict="great"))
        problem = quarantine_row("x/2.hea", "a", "quality", "unreadable_waveforms", "detail")
        with pytest.raises(ContractError):
            committer.publish(moves, [problem], st.Commit(deletes=[tmp_path / "not-deleted"]))
        assert not any(staged.exists() for staged, _ in moves)
    assert st.read_table(tmp_path, "quality").num_rows == 0
    assert st.read_table(tmp_path, "quarantine").num_rows == 0
