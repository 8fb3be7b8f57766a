"""The driver of a quality run over a store: which windows need checking, shards of waveform part
files to the shard runner, validated commits of `quality/`.

The profile file the run checks with is kept as STORE/qc_profile.json (`profile_file`).
Incremental: a window is checked when it has no quality row of the current profile version, or
when its row is older than its ingest (the source changed). Rows that are stale or whose record
is gone are removed in the first commit, before any new row, so readers never see two rows for
one record. Workers read their part file in batches, write staged Parquet and hand back paths.
A part file that cannot be read is quarantined whole (`unreadable_waveforms`); should the gate
raise on a batch, each of its windows is judged on its own and one it raises on alone is
quarantined (`quality_error`, as `<part file>#<record_id>`) while the others get their rows.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from data_contracts.schemas import FLAG_COLUMNS, SITE_FIELD
from tasks import store as st
from tasks.quality.gate import QcProfile, QualityResult, assess, load_profile, result_table
from tasks.quality.profile_file import PROFILE_FILE, profile_bytes
from tasks.runner import Executor, run_sharded, worker_count
from tasks.settings import Settings
from tasks.store.commit import Committer, quarantine_row
from tasks.store.location import location


@dataclass(frozen=True)
class Shard:
    """Windows of one waveform part file to check (all of them when `record_ids` is None)."""

    path: Path
    site: str
    record_ids: frozenset[str] | None
    windows: int  # to check (0 when the file cannot be read here)


@dataclass
class ShardResult:
    moves: list[tuple[Path, Path]] = field(default_factory=list)
    verdicts: Counter = field(default_factory=Counter)  # (site, verdict) → windows
    flags: Counter = field(default_factory=Counter)  # (lead, flag) → windows
    problems: list[dict] = field(default_factory=list)  # quarantine rows (a part file or a window)
    rows: int = 0


@dataclass
class QualityTotals:
    """What a quality run did, for the summary."""

    qc_version: str = ""
    checked: int = 0
    up_to_date: int = 0
    removed: int = 0  # stale rows dropped (older profile, re-ingested source, record gone)
    verdicts: Counter = field(default_factory=Counter)  # (site, verdict) → windows
    flags: Counter = field(default_factory=Counter)  # (lead, flag) → windows
    quarantined: Counter = field(default_factory=Counter)  # reason → waveform part files

    def flag_totals(self) -> Counter:
        """Flagged leads per flag name, over all leads."""
        out: Counter = Counter()
        for (_, flag), n in self.flags.items():
            out[flag] += n
        return out


def check_shard(
    shard: Shard,
    profile: QcProfile,
    store: Path,
    batch_records: int,
    judge: Callable[[np.ndarray, QcProfile], QualityResult] = assess,
) -> ShardResult:
    """Assess the windows of one waveform part file and stage their quality rows (in a worker);
    `judge` is the gate (a parameter so that a test can make it fail on one window)."""
    result = ShardResult()
    tables = []
    where = str(shard.path.relative_to(store))
    try:
        reader = st.parquet_file(shard.path)
        for batch in reader.iter_batches(batch_size=batch_records, columns=["record_id", "signal"]):
            if shard.record_ids is not None:
                batch = batch.filter(pc.is_in(batch.column("record_id"), pa.array(sorted(shard.record_ids))))
            if not len(batch):
                continue
            ids = batch.column("record_id").to_pylist()
            judged, failed = _judged(ids, st.signals_of(batch.column("signal")), shard.site, profile, judge)
            tables += judged
            result.problems += [
                quarantine_row(f"{where}#{rid}", shard.site, "quality", "quality_error", detail)
                for rid, detail in failed
            ]
    except Exception as exc:  # an unreadable part file is quarantined whole; the run goes on
        detail = f"{type(exc).__name__}: {exc}"
        result.problems = [quarantine_row(where, shard.site, "quality", "unreadable_waveforms", detail)]
        return result
    if tables:
        rows = pa.concat_tables(tables)
        result.rows = rows.num_rows
        result.moves = st.stage_parts(store, "quality", rows)
        result.verdicts.update((shard.site, v) for v in rows["verdict"].to_pylist())
        for col in FLAG_COLUMNS:
            lead = col.removeprefix("flags_")
            for flags in rows[col].to_pylist():
                result.flags.update((lead, f) for f in flags.split(",") if f)
    return result


def _judged(
    ids: list[str],
    signals: np.ndarray,
    site: str,
    profile: QcProfile,
    judge: Callable[[np.ndarray, QcProfile], QualityResult],
) -> tuple[list[pa.Table], list[tuple[str, str]]]:
    """Quality rows of one batch; should `judge` raise on it, of each window on its own, and the
    (record_id, error) of those it raises on alone."""
    try:
        return [result_table(ids, [site] * len(ids), judge(signals, profile), profile.version)], []
    except Exception:
        tables, failed = [], []
        for rid, window in zip(ids, signals, strict=True):
            try:
                tables.append(result_table([rid], [site], judge(window[None], profile), profile.version))
            except Exception as exc:
                failed.append((rid, f"{type(exc).__name__}: {exc}"))
        return tables, failed


def plan(store: Path, version: str) -> tuple[list[Shard], list[Path], dict[Path, pa.Table], QualityTotals]:
    """Shards to check, quality part files to rewrite (path → rows kept) and to drop."""
    totals = QualityTotals(qc_version=version)
    records = st.read_table(store, "records", ["record_id", "ingested_at"])
    ingested = dict(zip(records["record_id"].to_pylist(), records["ingested_at"].to_pylist(), strict=True))
    current: set[str] = set()
    rewrite: dict[Path, pa.Table] = {}
    drop: list[Path] = []
    dset = st.dataset(store, "quality")
    for frag in dset.get_fragments() if dset is not None else []:
        path = st.fragment_file(store, frag)
        rows = st.read_table_file(path, columns=["record_id", "qc_version", "checked_at"])
        fresh = [
            rid in ingested and ver == version and checked >= ingested[rid]
            for rid, ver, checked in zip(
                rows["record_id"].to_pylist(),
                rows["qc_version"].to_pylist(),
                rows["checked_at"].to_pylist(),
                strict=True,
            )
        ]
        kept = rows.filter(pa.array(fresh, pa.bool_()))
        current.update(kept["record_id"].to_pylist())
        totals.removed += rows.num_rows - kept.num_rows
        if kept.num_rows == 0:
            drop.append(path)
        elif kept.num_rows < rows.num_rows:
            rewrite[path] = st.read_table_file(path).filter(pa.array(fresh, pa.bool_()))
    totals.up_to_date = len(current)
    shards = []
    waves = st.dataset(store, "waveforms")
    for frag in waves.get_fragments() if waves is not None else []:
        path = st.fragment_file(store, frag)
        site = st.site_of_part(path)
        try:
            ids = st.read_table_file(path, columns=["record_id"])["record_id"].to_pylist()
        except Exception:  # the worker meets the same error and quarantines the file
            shards.append(Shard(path, site, None, 0))
            continue
        todo = [rid for rid in ids if rid not in current]
        if todo:
            shards.append(Shard(path, site, None if len(todo) == len(ids) else frozenset(todo), len(todo)))
    return shards, drop, rewrite, totals


def _results(
    shards: list[Shard], profile: QcProfile, store: Path, settings: Settings, executor: Executor | None
) -> Iterator[ShardResult]:
    """Shard results in order. A local worker process costs seconds to start, so there is one per
    `qc_windows_per_worker` windows to check, at most `workers`; they fork from a server that
    imported this module once (numpy, scipy, pyarrow). An `executor`'s workers run already."""
    windows = sum(s.windows for s in shards)
    local = worker_count(settings.workers, len(shards), windows, settings.qc_windows_per_worker)
    workers = settings.workers if executor else local
    check = partial(check_shard, profile=profile, store=store, batch_records=settings.qc_batch_records)
    return run_sharded(shards, check, workers, executor=executor)


def run_quality(
    store: Path,
    settings: Settings,
    profile: QcProfile | None = None,
    on_progress: Callable[[int], None] | None = None,
    executor: Executor | None = None,
) -> QualityTotals:
    """Check every window of the store that has no current quality row; returns what the run did.
    `executor` runs the shards elsewhere (Prefect tasks on Dask) instead of the local pool."""
    store = location(store).resolve()
    if not (store / "records").is_dir():
        raise FileNotFoundError(f"{store} holds no ingested records (run `msaic ingest` first)")
    given = profile
    profile = profile or load_profile(settings.qc_profile)
    with st.store_lock(store):
        shards, drop, rewrite, totals = plan(store, profile.version)
        first = st.Commit(deletes=[*drop, *rewrite])
        if given is None:  # the profile file the rows are checked with, kept beside them
            staged = st.staging_dir(store) / f"{st.new_part_id()}.{PROFILE_FILE}"
            staged.write_bytes(profile_bytes(settings.qc_profile))
            first.moves.append((staged, store / PROFILE_FILE))
        for path, kept in rewrite.items():
            site = st.site_of_part(path)
            first.moves += st.stage_parts(
                store, "quality", kept.append_column(SITE_FIELD.name, pa.array([site] * kept.num_rows))
            )
        committer, pending = Committer(store, "quality"), []

        def commit() -> None:
            nonlocal first
            results, pending[:] = list(pending), []
            problems = [row for r in results for row in r.problems]
            for row in problems:
                totals.quarantined[row["reason"]] += 1
            committer.publish([m for r in results for m in r.moves], problems, first)
            first = st.Commit()

        for result in _results(shards, profile, store, settings, executor):
            pending.append(result)
            totals.verdicts.update(result.verdicts)
            totals.flags.update(result.flags)
            totals.checked += result.rows
            if on_progress:
                on_progress(result.rows)
            if sum(r.rows for r in pending) >= settings.qc_commit_records:
                commit()
        commit()
    return totals
