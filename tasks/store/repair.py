"""`msaic store check` and `msaic store repair`: what keeps a store from being read, set aside.

Two kinds of debris stop or burden every command on a store and no run clears them by itself:
- a part file that pyarrow cannot read (a disk that filled, a copy cut short): each read of its
  table fails, so each command on the store stops;
- what processes that died had staged (a run deletes it at its next start, but a store nobody
  writes to any more keeps it, and a half-done commit waits in it), and on object storage the
  model directories whose registration died half-way (`model_files.incomplete_models`).
`check_store` lists them. `repair_store` takes the store lock (which finishes the half-done
commits), then moves the rest to STORE/lost+found/<time>/ under the same relative paths, with
LOST.json saying what each entry was, why it was moved, and its size. What depends on a lost
part goes with it, so that the next runs make the store whole again:
- the records/ and waveforms/ parts of one ingest commit share their part id: the other half of
  a lost one is moved too, and the next ingest of the archive stores those records again;
- in a scoring OUT (it has ledger/), a lost scores/ or quarantine/ part takes the ledger with it:
  the next `msaic score` re-plans every shard and scores the inputs OUT no longer holds (those
  it still holds are never scored twice).
Lost quality/, features/ and quarantine/ rows are made again by the next qc, features or ingest
run, for the records that lack them.
"""

from __future__ import annotations

import json
import shutil
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa

from data_contracts.schemas import TABLES
from tasks.store import tables as st
from tasks.store.location import Location, ObjectPath, location
from tasks.store.model_files import incomplete_models

LOST_FOUND = "lost+found"
LOST_FILE = "LOST.json"
LEDGER = "ledger"  # tasks.scoring.run.LEDGER, named here without importing the scoring runner
PAIRED = {"records": "waveforms", "waveforms": "records"}  # tables whose parts share a part id
SCORING_TABLES = ("scores", "quarantine")


@dataclass(frozen=True)
class Finding:
    """One entry of a store that blocks or burdens it: `path` relative to the store."""

    path: str
    kind: str  # unreadable_part, paired_part, ledger, orphan_staging, pending_commit, incomplete_model
    detail: str


@dataclass(frozen=True)
class Repair:
    folder: Path | None  # STORE/lost+found/<time>/, None when nothing was moved
    moved: list[Finding]


def part_problem(path: Path, table: str) -> str | None:
    """Why a part file cannot serve its table (one line), or None. Reads the footer and every
    column but the signals, whose pages would take a full read of the waveforms to decode, and
    checks that the columns cast to the table's schema."""
    try:
        part = st.parquet_file(path)
        names = [n for n in part.schema_arrow.names if n != "signal"]
        rows = part.read(columns=names)
        common = [n for n in names if n in TABLES[table].names]
        rows.select(common).cast(pa.schema([TABLES[table].field(n) for n in common]))
    except Exception as exc:  # pyarrow raises several types for damaged files
        return " ".join(str(exc).split())[:300] or type(exc).__name__
    return None


def _parts(store: Path, table: str) -> list[Path]:
    folder = st.table_dir(store, table)
    return sorted(folder.rglob("*.parquet")) if folder.is_dir() else []


def check_store(store: Path) -> list[Finding]:
    """Every unreadable part (with what depends on it), half-done commit and orphan staging entry."""
    store = location(store)
    lost = {
        path: (table, why)
        for table in TABLES
        for path in _parts(store, table)
        if (why := part_problem(path, table))
    }
    found = [Finding(_rel(store, p), "unreadable_part", why) for p, (_, why) in lost.items()]
    for path, (table, _) in lost.items():
        if table not in PAIRED:
            continue
        other = st.part_path(store, PAIRED[table], st.site_of_part(path), path.stem.removeprefix("part-"))
        if other.is_file() and other not in lost:
            detail = f"the other half of {_rel(store, path)}: the next ingest stores these records again"
            found.append(Finding(_rel(store, other), "paired_part", detail))
    scoring_loss = any(table in SCORING_TABLES for table, _ in lost.values())
    if scoring_loss and (store / LEDGER).is_dir():
        detail = "the next `msaic score` re-plans every shard and scores what OUT no longer holds"
        found.append(Finding(LEDGER, "ledger", detail))
    found += [
        Finding(
            _rel(store, j), "pending_commit", "a commit a killed run left half done: the next run finishes it"
        )
        for j in st.pending_journals(store)
    ]
    found += [
        Finding(_rel(store, e), "orphan_staging", f"{_size(e)} bytes staged by a process that died")
        for e in st.orphan_staging(store)
    ]
    found += [
        Finding(_rel(store, m), "incomplete_model", "a model registration that died before its config.json")
        for m in incomplete_models(store)
    ]
    return found


def repair_store(store: Path) -> Repair:
    """Finish half-done commits and move every other finding to STORE/lost+found/<time>/ (with
    LOST.json), under the store lock, so that the next run goes on."""
    store = location(store)
    with st.store_lock(store, keep_orphans=True):
        moved = [f for f in check_store(store) if f.kind != "pending_commit"]
        if not moved:
            return Repair(None, [])
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        folder = store / LOST_FOUND / f"{stamp}-{uuid.uuid4().hex[:6]}"
        records = []
        for finding in moved:
            source, target = store / finding.path, folder / finding.path
            size = _size(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(source, ObjectPath) and isinstance(target, ObjectPath):
                source.move(target)
            else:
                shutil.move(source, target)
            records.append(asdict(finding) | {"bytes": size})
        lost = {"at": datetime.now(UTC).isoformat(), "store": str(store.resolve()), "moved": records}
        (folder / LOST_FILE).write_text(json.dumps(lost, indent=2))
    return Repair(folder, moved)


def _rel(store: Path, path: Path) -> str:
    return str(path.relative_to(store))


def _size(path: Location) -> int:
    if isinstance(path, ObjectPath):
        return sum(i.size for i in path.files()) if path.is_dir() else max(path.info().size or 0, 0)
    if path.is_dir() and not path.is_symlink():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())
    return path.lstat().st_size if path.exists() or path.is_symlink() else 0
