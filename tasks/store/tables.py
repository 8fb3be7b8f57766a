"""The Parquet store: Hive-partitioned datasets under STORE/<table>/site=<name>/part-<id>.parquet.

Writers stage files under STORE/.staging and publish them with a commit journal: the journal
(the list of renames and deletions) is written atomically first, then carried out; a run that
dies half-way is rolled forward by `recover` before the next write. Readers therefore never see
half a commit, and nothing is written outside STORE.

On object storage (an `s3://` store, `tasks.store.location`) nothing can be renamed atomically and
nothing can be flock'ed, so the same steps are taken differently (see `_remote`): a commit's one
atomic step is the PUT of its journal under STORE/.journal/; readers take a consistent listing by
the store's commit counter; the lock is a lease object. The guarantees are in the README.

Each process stages in a folder of its own, STORE/.staging/<pid>-<random>/, on which it holds an
advisory lock while it lives. What a killed process staged is thus told apart from what a live one
is still writing (a model being registered, a report, a Dask worker's shard): a run that takes the
store lock finishes the orphans' half-done commits and deletes the rest (`clean_staging`), and
removes what it staged itself but did not commit when it ends, however it ends short of a kill.
"""

from __future__ import annotations

import atexit
import fcntl
import json
import os
import shutil
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, unquote

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from data_contracts.catalog import table as catalog_table
from data_contracts.schemas import SITE_FIELD
from tasks.store import remote
from tasks.store.location import Location, ObjectPath, filesystem_path, is_remote, location

STAGING = ".staging"
_JOURNAL_SUFFIX = ".commit.json"
SIGNAL_ROW_GROUP = 64
SIGNAL_MIN_VALUES = 1000  # a column with this many fixed values per row holds signals
# values the Parquet writer encodes per batch in tables of signals (pyarrow's default 1,024):
# a nested signal's levels cost per batch, and 2**18 writes a 47-s EDF record's 5 windows in
# 2.8 instead of 3.6 ms, same bytes, pages of about 1 MB (`bench/ingest.py`)
SIGNAL_WRITE_BATCH = 2**18
_PARTITIONING = ds.partitioning(pa.schema([SITE_FIELD]), flavor="hive")


def table_dir(store: Location, table: str) -> Location:
    return store / table


def part_path(store: Location, table: str, site: str, part_id: str) -> Location:
    """Where a committed part file lives; the site is URI-escaped as Hive readers expect."""
    return table_dir(store, table) / f"site={quote(site, safe='')}" / f"part-{part_id}.parquet"


def site_of_part(path: Location) -> str:
    """The site a committed part file belongs to (from its `site=` folder)."""
    return unquote(path.parent.name.removeprefix("site="))


def new_part_id() -> str:
    return uuid.uuid4().hex


# (store, pid) → this process's staging folder and the open descriptor that holds its lock
# (-1 on object storage, where nothing is locked)
_OWN_STAGING: dict[tuple[str, int], tuple[Location, int]] = {}


def _store_key(store: Location) -> tuple[str, int]:
    return (str(store) if is_remote(store) else os.path.realpath(store), os.getpid())


def staging_dir(store: Location) -> Location:
    """This process's staging folder in STORE/.staging, created (and locked) at its first use."""
    key = _store_key(store)
    held = _OWN_STAGING.get(key)
    if held is not None and (is_remote(store) or held[0].is_dir()):
        return held[0]
    if isinstance(store, ObjectPath):
        remote_folder = store / STAGING / remote.process_tag()
        _OWN_STAGING[key] = (remote_folder, -1)
        return remote_folder
    folder = Path(key[0]) / STAGING / f"{key[1]}-{uuid.uuid4().hex[:8]}"
    folder.mkdir(parents=True)
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    if not _OWN_STAGING:
        atexit.register(_remove_own_staging)
    if held is not None:
        os.close(held[1])
    _OWN_STAGING[key] = (folder, fd)
    return folder


def _own_folder(store: Location) -> Location | None:
    """This process's staging folder of `store`, if it made one."""
    held = _OWN_STAGING.get(_store_key(store))
    return held[0] if held is not None and (is_remote(store) or held[0].is_dir()) else None


def _remove_own_staging() -> None:
    """At exit: this process's staging folders go if they are empty (a pending journal stays)."""
    for (_, pid), (folder, _) in _OWN_STAGING.items():
        if pid == os.getpid() and isinstance(folder, Path):
            with suppress(OSError):
                folder.rmdir()


def _orphaned(entry: Path) -> bool:
    """Whether a STORE/.staging entry belongs to no live process: a loose file (none is staged
    there), or a folder whose owner's lock can be taken because its owner is gone (a folder of
    this very process is locked through another descriptor, so it counts as live)."""
    if entry.is_symlink() or not entry.is_dir():
        return True
    try:
        fd = os.open(entry, os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)  # also releases the lock just taken: the folder's owner is dead
    return True


def orphan_staging(store: Location) -> list[Location]:
    """The STORE/.staging entries left by processes that died (killed runs, full disks)."""
    if isinstance(store, ObjectPath):
        return list(remote.orphan_folders(store, STAGING, _own_folder(store)))
    stage = Path(store) / STAGING
    return [e for e in sorted(stage.iterdir()) if _orphaned(e)] if stage.is_dir() else []


def clean_staging(store: Location) -> list[Location]:
    """Delete the orphans of STORE/.staging; returns them. One that holds a commit journal is
    kept: `recover` rolls it forward first."""
    removed = [e for e in orphan_staging(store) if not _holds_journal(e)]
    for entry in removed:
        _remove(entry)
    return removed


def _holds_journal(entry: Location) -> bool:
    if entry.is_dir() and not entry.is_symlink():
        return any(entry.glob(f"*{_JOURNAL_SUFFIX}"))
    return entry.name.endswith(_JOURNAL_SUFFIX)


def _remove(entry: Location) -> None:
    if isinstance(entry, ObjectPath):
        entry.rmtree()
        entry.unlink(missing_ok=True)
    elif entry.is_dir() and not entry.is_symlink():
        shutil.rmtree(entry, ignore_errors=True)
    else:
        entry.unlink(missing_ok=True)


def _discard_uncommitted(store: Location) -> None:
    """Empty this process's staging folder of `store` unless a commit journal in it still waits
    to be rolled forward (then `recover` needs the files it names)."""
    own = _own_folder(store)
    if own is None or _holds_journal(own):
        return
    for entry in own.iterdir():
        _remove(entry)


def write_atomic(path: Location, data: str | bytes) -> Location:
    """Write a whole file under a temporary name of this process and thread, then rename it into
    place: a reader sees the old file or the new one, never part of it (on object storage one
    PUT does the same)."""
    if isinstance(path, ObjectPath):
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        return path
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")
    tmp.write_bytes(data.encode() if isinstance(data, str) else data)
    tmp.replace(path)
    return path


def append_line(path: Location, line: str) -> None:
    """Append one line to a text log (STORE/models/promotions.jsonl). Object storage cannot
    append, so there the object is read and written back whole by one PUT: callers hold the
    store lock, which makes the read and the write one step."""
    if isinstance(path, ObjectPath):
        try:
            before = path.read_bytes()
        except FileNotFoundError:
            before = b""
        path.write_bytes(before + line.encode() + b"\n")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with Path(path).open("a") as log:
        log.write(line + "\n")


def write_parquet(table: pa.Table, path: Location) -> Location:
    """Write one Parquet file; it is complete on disk before it is ever renamed into a dataset.
    LZ4 throughout: on 12-lead waveforms it writes about twice and reads about 1.5× as fast as
    zstd level 3, for files about a fifth larger (0.48 vs 0.39 of raw float32, LUDB). Flat float
    columns (features, indices) use byte-stream-split; nested signals stay plain, where
    byte-stream-split on their leaf wrote 15 % slower for files 13 % smaller (0.42 of raw) and
    read no faster. Tables of signals get row groups of `SIGNAL_ROW_GROUP` rows (about 15 MB),
    so that a reader after a few records decodes a few row groups, not the whole file. Signals
    carry no min/max statistics, which no reader can filter on and which cost a tenth of the
    write (0.25 of 2.3 ms CPU per 47-s EDF record); the other flat columns keep theirs (row-group
    pruning by record_id; a nested column beside a signal would lose its own, as pyarrow names
    leaf paths, and no table has one). Tables of signals are encoded in batches of
    `SIGNAL_WRITE_BATCH` values."""
    path.parent.mkdir(parents=True, exist_ok=True)
    float_cols = [f.name for f in table.schema if pa.types.is_floating(f.type)]
    signals = {
        f.name for f in table.schema if _is_float(f.type) and _fixed_values(f.type) >= SIGNAL_MIN_VALUES
    }
    fs, where = filesystem_path(path)
    pq.write_table(
        table,
        where,
        filesystem=fs,
        row_group_size=SIGNAL_ROW_GROUP if signals else None,
        write_batch_size=SIGNAL_WRITE_BATCH if signals else None,
        compression="lz4",
        use_byte_stream_split=float_cols or False,
        use_dictionary=[f.name for f in table.schema if pa.types.is_string(f.type)],
        write_statistics=[n for n in table.schema.names if n not in signals] if signals else True,
    )
    return path


def stage_parts(store: Location, table: str, rows: pa.Table) -> list[tuple[Location, Location]]:
    """Write rows that carry a `site` column as one staged part file per site (cast to the
    table's schema); returns the (staged, final) moves to put in a `Commit`. A row without a site
    is refused before anything is written: the site is the partition folder and may not be null
    (`SITE_FIELD`), and every stage names one (ingest falls back to a default)."""
    missing = rows[SITE_FIELD.name].null_count
    if missing:
        raise ValueError(
            f"{table}: {missing} of {rows.num_rows} rows have no site, which partitions the store"
        )
    moves = []
    sites = pc.unique(rows[SITE_FIELD.name]).to_pylist()
    for site in sites:
        # one site: the rows as they are (filtering would copy every signal)
        part = rows if len(sites) == 1 else rows.filter(pc.equal(rows[SITE_FIELD.name], site))
        part = part.drop_columns([SITE_FIELD.name])
        schema = catalog_table(table).schema
        part = part.select(schema.names).cast(schema)
        part_id = new_part_id()
        staged = write_parquet(part, staging_dir(store) / f"{part_id}.{table}.parquet")
        moves.append((staged, part_path(store, table, site, part_id)))
    return moves


def signals_of(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """The `signal` column of `waveforms/` (fixed-size lists of leads of samples) as float32
    (rows, leads, samples), without a copy when the column is one chunk."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    flat = column.flatten().flatten().to_numpy(zero_copy_only=False)
    return flat.reshape(len(column), column.type.list_size, column.type.value_type.list_size)


def read_table_file(path: Location, columns: list[str] | None = None) -> pa.Table:
    """One Parquet file as written (no partition columns)."""
    fs, where = filesystem_path(path)
    return pq.read_table(where, columns=columns, filesystem=fs)


def parquet_file(path: Location) -> pq.ParquetFile:
    """One Parquet file opened for reading in batches (on object storage by ranged GETs)."""
    fs, where = filesystem_path(path)
    return pq.ParquetFile(where, filesystem=fs)


def fragment_file(store: Location, fragment: ds.Fragment) -> Location:
    """The part file of a fragment of a store's dataset, as a location of the store's kind."""
    path = fragment.path  # type: ignore[attr-defined]
    return ObjectPath(f"s3://{path}") if is_remote(store) else Path(path)


def row_count(path: Location) -> int:
    fs, where = filesystem_path(path)
    with fs.open_input_file(where) as fh:
        return pq.ParquetFile(fh).metadata.num_rows


def _fixed_values(t: pa.DataType) -> int:
    """Values per row of nested fixed-size lists (1 for anything else)."""
    n = 1
    while pa.types.is_fixed_size_list(t):
        n, t = n * t.list_size, t.value_type
    return n


def _is_float(t: pa.DataType) -> bool:
    while pa.types.is_list(t) or pa.types.is_fixed_size_list(t):
        t = t.value_type
    return pa.types.is_floating(t)


def dataset(store: Location, table: str) -> ds.Dataset | None:
    """The committed dataset of a table (named in the catalog), or None before its first commit."""
    schema = catalog_table(table).schema.append(SITE_FIELD)
    path = table_dir(store, table)
    if isinstance(store, ObjectPath) and isinstance(path, ObjectPath):
        files = _committed_files(store, path)
        if not files:
            return None
        return ds.dataset(
            files,
            filesystem=store.fs,
            format="parquet",
            partitioning=_PARTITIONING,
            partition_base_dir=path.key,
            schema=schema,
        )
    if not path.is_dir() or not any(path.rglob("*.parquet")):
        return None
    return ds.dataset(path, format="parquet", partitioning=_PARTITIONING, schema=schema)


def _committed_files(store: ObjectPath, folder: ObjectPath) -> list[str]:
    """`remote.committed_files`; a commit whose writer died is first finished here, under the
    store lock (unless a writer has taken the lock meanwhile: then this waits for it)."""
    try:
        return remote.committed_files(store, folder)
    except remote.OrphanedCommitError:
        with suppress(RuntimeError), store_lock(store):
            pass
    return remote.committed_files(store, folder)


def read_table(
    store: Location, table: str, columns: list[str] | None = None, filter: ds.Expression | None = None
) -> pa.Table:
    """A table (or some of its columns), empty with the right schema when nothing is stored."""
    dset = dataset(store, table)
    if dset is None:
        schema = catalog_table(table).schema.append(SITE_FIELD)
        empty = schema.empty_table()
        return empty.select(columns) if columns else empty
    return dset.to_table(columns=columns, filter=filter)


@dataclass
class Commit:
    """Renames (staged → final) and deletions to carry out as one unit."""

    moves: list[tuple[Location, Location]] = field(default_factory=list)
    deletes: list[Location] = field(default_factory=list)

    def publish(self, store: Location) -> None:
        """Carry the commit out through a journal, so that a crash is rolled forward."""
        if not self.moves and not self.deletes:
            return
        folder = store / remote.JOURNALS if is_remote(store) else staging_dir(store)
        journal = folder / f"{uuid.uuid4().hex}{_JOURNAL_SUFFIX}"
        payload = {
            "moves": [[str(a), str(b)] for a, b in self.moves],
            "deletes": [str(p) for p in self.deletes],
        }
        write_atomic(journal, json.dumps(payload))
        _apply(journal)


def _apply(journal: Location) -> None:
    """Carry out a journal's steps; each can be repeated, so a journal is applied again whole
    after a crash. On object storage the store's commit counter moves before the journal goes."""
    payload = json.loads(journal.read_text())
    for src, dst in payload["moves"]:
        source, target = location(src), location(dst)
        if source.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            source.replace(target)  # type: ignore[arg-type]
    for path in payload["deletes"]:
        location(path).unlink(missing_ok=True)
    if isinstance(journal, ObjectPath):
        remote.count_commit(journal.parent.parent)
    journal.unlink()


def pending_journals(store: Location) -> list[Location]:
    """Commit journals that no live process is carrying out: those of dead processes' folders
    (and loose ones), and this process's own (a commit of it that failed half-way). On object
    storage, every journal in STORE/.journal (the lock holder is the one writer)."""
    if isinstance(store, ObjectPath):
        return list(remote.journals(store))
    stage = Path(store) / STAGING
    if not stage.is_dir():
        return []
    own = _own_folder(store)
    folders = [e for e in orphan_staging(store) if e.is_dir()] + ([own] if own is not None else [])
    loose = stage.glob(f"*{_JOURNAL_SUFFIX}")
    return sorted([*loose, *(j for f in folders for j in f.glob(f"*{_JOURNAL_SUFFIX}"))])


def recover(store: Location) -> int:
    """Finish any commit a crashed run left half done; returns how many were rolled forward."""
    journals = pending_journals(store)
    for journal in journals:
        _apply(journal)
    return len(journals)


@contextmanager
def store_lock(store: Location, keep_orphans: bool = False) -> Iterator[None]:
    """One writer at a time per store (an advisory lock on STORE/.lock; a lease on object
    storage). On entry it finishes the commits dead runs left half done and deletes the rest of
    what they staged (`keep_orphans`: left for `msaic store repair` to move aside); on exit it
    removes what this run staged and did not commit, and the folders of its workers that have
    ended."""
    if isinstance(store, ObjectPath):
        with remote.lease(store), _held(store, keep_orphans):
            yield
        return
    store.mkdir(parents=True, exist_ok=True)
    with (store / ".lock").open("a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(f"another msaic run is writing to {store}") from None
        try:
            with _held(store, keep_orphans):
                yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextmanager
def _held(store: Location, keep_orphans: bool) -> Iterator[None]:
    """What the holder of the store lock does on entry and on exit (see `store_lock`)."""
    try:
        recover(store)
        if not keep_orphans:
            clean_staging(store)
        yield
    finally:
        with suppress(OSError):  # a read-only or full disk must not hide the run's own error
            _discard_uncommitted(store)
            clean_staging(store)
