"""Adjudications: a reviewer's decision on a screened record, appended to STORE/adjudications/.

Each batch of decisions becomes new Parquet parts (partitioned by site, as every per-record table)
published through the store's journaled commit under the store lock; nothing is ever rewritten,
and the latest decision per record counts (`latest_decisions`, which training reads). The reviewer
is stored as a keyed hash of the name with the store's pseudonym key, never as the name.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from data_contracts import load_json
from data_contracts.leads import TERRITORIES
from data_contracts.schemas import ADJUDICATION_DECISIONS, ADJUDICATIONS, SITE_FIELD
from tasks import store as st
from tasks.store.pseudonym import keyed_hash

TABLE = "adjudications"
LATEST_COLUMNS = ["record_id", "decision", "territory", "decided_at"]
LOCK_WAIT_S = 3.0  # how long a decision waits for another run's store lock before it is refused


class AdjudicationError(ValueError):
    """A decision that cannot be recorded: unknown decision or territory, no reviewer."""


class StoreBusy(RuntimeError):
    """Another msaic run holds the store lock: the decision was not recorded, try again."""


@cache
def territories() -> tuple[str, ...]:
    """Territories a reviewer may name: the model's (leads.TERRITORIES) and the label vocabulary's."""
    words = load_json("mi_labels.json")["territory_words"].values()
    return tuple(sorted(set(TERRITORIES) | set(words)))


@dataclass(frozen=True)
class Decision:
    """What the reviewer decided on one record (as the worklist identifies it)."""

    record_id: str  # the record's id in the store the decision goes to
    source_path: str
    site: str
    decision: str  # one of ADJUDICATION_DECISIONS
    territory: str | None
    model_id: str | None  # the model whose call was reviewed


def reviewer_key(key: bytes, reviewer: str) -> str:
    """The pseudonymous reviewer: a keyed hash of the name, stable for one store key."""
    name = reviewer.strip()
    if not name:
        raise AdjudicationError("a reviewer name is needed (--reviewer NAME)")
    return keyed_hash(key, "reviewer", name)


def adjudication_row(decision: Decision, reviewer: str, at: datetime | None = None) -> dict[str, Any]:
    """One row of adjudications/ (plus `site`), checked: a known decision, a territory only for a
    confirmed MI and only from the vocabulary. `reviewer` is the reviewer's key, not the name."""
    if decision.decision not in ADJUDICATION_DECISIONS:
        raise AdjudicationError(
            f"unknown decision {decision.decision!r} (one of {', '.join(ADJUDICATION_DECISIONS)})"
        )
    territory = decision.territory or None
    if territory is not None and decision.decision != "mi":
        raise AdjudicationError("a territory is given only with a confirmed MI")
    if territory is not None and territory not in territories():
        raise AdjudicationError(f"unknown territory {territory!r} (one of {', '.join(territories())})")
    return {
        "record_id": decision.record_id,
        "source_path": decision.source_path,
        "decision": decision.decision,
        "territory": territory,
        "reviewer_key": reviewer,
        "model_id": decision.model_id,
        "decided_at": at or datetime.now(UTC),
        "site": decision.site,
    }


def append_decisions(store: Path, rows: list[dict[str, Any]], wait_s: float = LOCK_WAIT_S) -> list[Path]:
    """Append rows (from `adjudication_row`) to STORE/adjudications/ in one commit under the store
    lock, waiting up to `wait_s` for another run's lock (then `StoreBusy`); returns the new parts."""
    table = pa.Table.from_pylist(rows, schema=ADJUDICATIONS.append(SITE_FIELD))
    with ExitStack() as stack:
        _take_lock(stack, store, wait_s)
        moves = st.stage_parts(store, TABLE, table)
        st.Commit(moves=moves).publish(store)
    return [final for _, final in moves]


def _take_lock(stack: ExitStack, store: Path, wait_s: float) -> None:
    deadline = time.monotonic() + wait_s
    while True:
        try:
            stack.enter_context(st.store_lock(store))
            return
        except RuntimeError:  # store_lock: another run is writing
            if time.monotonic() >= deadline:
                raise StoreBusy(
                    f"another msaic run is writing to {store}: the decision was not recorded, try again"
                ) from None
            time.sleep(0.1)


def latest_decisions(store: Path) -> pd.DataFrame:
    """The latest decision per record_id (columns record_id, decision, territory, decided_at),
    empty when the store holds no adjudication."""
    df = st.read_table(store, TABLE, columns=LATEST_COLUMNS).to_pandas()
    df = df.sort_values("decided_at", kind="stable").drop_duplicates("record_id", keep="last")
    return df.reset_index(drop=True)[LATEST_COLUMNS]
