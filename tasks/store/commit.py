"""The one committer of every stage: staged parts → validated with the table's Great Expectations
suite → the stage's quarantine rows → published together in one journalled `Commit`.

Workers stage part files (`stage_parts`) and hand back their (staged, final) moves; the parent,
which holds the store lock, commits them here. A batch that fails its suite is refused whole: its
staged files are removed and nothing is published. An input is quarantined once per (site,
source_path, stage, reason, content hash), however many runs meet it. Quarantine rows are built
by `quarantine_row` only, so every stage writes the same columns.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from data_contracts.catalog import table as catalog_table
from data_contracts.schemas import QUARANTINE, SITE_FIELD
from data_contracts.suites import require_valid
from tasks.store.tables import Commit, read_table, read_table_file, row_count, site_of_part, stage_parts

Move = tuple[Path, Path]  # (staged, final)
_KEY = ["site", "source_path", "stage", "reason", "content_sha256"]
DETAIL_CHARS = 2000


def quarantine_row(
    source_path: str, site: str, stage: str, reason: str, detail: str, sha: str | None = None
) -> dict[str, Any]:
    """A row of `quarantine/`: the input, where it failed, why (`reason`, a short name; `detail`,
    cut to `DETAIL_CHARS`), its content hash when known, and when."""
    return {
        "source_path": source_path,
        "site": site,
        "stage": stage,
        "reason": reason,
        "detail": detail[:DETAIL_CHARS],
        "content_sha256": sha,
        "at": datetime.now(UTC),
    }


def _key(row: dict[str, Any]) -> tuple[str, ...]:
    return tuple(row[k] or "" for k in _KEY)


def staged_batch(moves: Iterable[Move], table: str) -> pa.Table | None:
    """The staged rows of `table` among `moves`, each with its `site` column (None when there are
    none)."""
    parts = [
        read_table_file(staged).append_column(
            SITE_FIELD.name, pa.array([site_of_part(final)] * row_count(staged), pa.string())
        )
        for staged, final in moves
        if final.parent.parent.name == table
    ]
    return pa.concat_tables(parts) if parts else None


class Committer:
    """Commits of one stage into one store (see the module docstring). `table` is the stage's
    output table, validated with the suites the catalog names for it; `validate` False leaves
    them to the stage (features are checked whole after the run)."""

    def __init__(self, store: Path, table: str, validate: bool = True) -> None:
        self.store, self.table = store, table
        self.suites = catalog_table(table).suites if validate else ()
        known = read_table(store, "quarantine", _KEY)
        self._quarantined = {_key(r) for r in known.to_pylist()}

    def fresh(self, rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        """The quarantine rows whose input is not quarantined yet for that stage and reason."""
        out = []
        for row in rows:
            key = _key(row)
            if key not in self._quarantined:
                self._quarantined.add(key)
                out.append(row)
        return out

    def publish(
        self,
        moves: list[Move],
        quarantine: Iterable[dict[str, Any]] = (),
        commit: Commit | None = None,
    ) -> pa.Table | None:
        """Validate the staged rows of the table among `moves`, stage the fresh `quarantine` rows,
        and publish them with `commit`'s own renames and deletions in one journalled commit.
        Returns the validated batch (None when `moves` hold no rows of the table)."""
        commit = commit or Commit()
        try:
            batch = staged_batch(moves, self.table) if self.suites else None
            if batch is not None:
                frame = batch.to_pandas()
                for suite in self.suites:
                    require_valid(suite, frame)
            commit.moves += moves
            fresh = self.fresh(quarantine)
            if fresh:
                rows = pa.Table.from_pylist(fresh, schema=QUARANTINE.append(SITE_FIELD))
                commit.moves += stage_parts(self.store, "quarantine", rows)
        except Exception:
            for staged, _ in moves:
                staged.unlink(missing_ok=True)
            raise
        commit.publish(self.store)
        return batch
