"""The driver of a features run over a store: plan the records that lack features at the current
`feature_version`, measure them in worker processes shard by shard (one shard = records of one
waveforms part file), and commit each shard's rows to `features/` under the store lock.

Records whose quality verdict is `reject` get a row with null features and `skip_reason`; records
without a quality row wait for `msaic qc`. A record that fails unexpectedly gets a row with
`skip_reason = "error"` and a quarantine entry (stage `features`); an unreadable waveforms part is
quarantined and its records wait; the run goes on. Rows of an older feature version, or computed
before their record was re-ingested or re-checked, are dropped and measured again.
"""

from __future__ import annotations

import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from data_contracts.feature_columns import FEATURE_VERSION, FEATURES
from data_contracts.schemas import FLAG_COLUMNS, SITE_FIELD
from tasks import store as st
from tasks.features.beats import FeatureSkip
from tasks.features.criteria import criteria
from tasks.features.measure import criteria_config, measure_record, usable_leads
from tasks.runner import Executor, run_sharded, worker_count
from tasks.settings import Settings
from tasks.store.commit import Committer, quarantine_row

STAGE = "features"
REJECT = "reject"


class QualityMissing(FileNotFoundError):
    """The store has no quality/ table yet: features come after `msaic qc`."""


@dataclass(frozen=True)
class RecordMeta:
    record_id: str
    source_path: str
    verdict: str
    usable: tuple[bool, ...]  # per canonical lead, False where quality flags it unusable
    sex: str | None
    age: float | None


@dataclass(frozen=True)
class Shard:
    part: Path  # the waveforms part file holding these records
    site: str
    records: tuple[RecordMeta, ...]


@dataclass
class ShardResult:
    moves: list[tuple[Path, Path]]
    measured: int
    skipped: Counter[str]
    quarantine: list[dict[str, Any]]
    site: str


@dataclass
class FeatureTotals:
    """What a run did, per site and per skip reason."""

    measured: Counter[str] = field(default_factory=Counter)
    skipped: Counter[tuple[str, str]] = field(default_factory=Counter)
    up_to_date: int = 0
    awaiting_qc: int = 0
    quarantined: int = 0
    stale_rows_removed: int = 0

    @property
    def written(self) -> int:
        return sum(self.measured.values()) + sum(self.skipped.values())


def feature_row(signal: np.ndarray, meta: RecordMeta) -> dict[str, Any]:
    """The features/ row of one record (without site, version and time stamps)."""
    row: dict[str, Any] = {"record_id": meta.record_id, "skip_reason": None}
    if meta.verdict == REJECT:
        return row | {"skip_reason": "quality_reject"}
    try:
        measures = measure_record(signal, np.asarray(meta.usable))
    except FeatureSkip as skip:
        return row | {"skip_reason": skip.reason}
    return row | measures | criteria(measures, meta.sex, meta.age, criteria_config())


def rows_table(rows: list[dict[str, Any]], site: str, computed_at: datetime) -> pa.Table:
    """Rows → a table in the features/ schema plus the `site` column; NaN becomes null."""
    constant = {
        "feature_version": FEATURE_VERSION,
        "criteria_version": criteria_config()["version"],
        "computed_at": computed_at,
    }
    arrays = []
    for f in FEATURES:
        if f.name in constant:
            arrays.append(pa.array([constant[f.name]] * len(rows), f.type))
        elif pa.types.is_floating(f.type) or pa.types.is_integer(f.type):
            values = np.array([r.get(f.name, np.nan) for r in rows], dtype=np.float64)
            arrays.append(pa.array(values, from_pandas=True).cast(f.type))
        else:
            arrays.append(pa.array([r.get(f.name) for r in rows], f.type))
    arrays.append(pa.array([site] * len(rows), pa.string()))
    return pa.Table.from_arrays(arrays, schema=FEATURES.append(SITE_FIELD.with_nullable(True)))


def read_signals(part: Path, wanted: set[str], batch_size: int = 64) -> Iterator[tuple[str, np.ndarray]]:
    """(record_id, leads × samples) of the wanted records of one waveforms part file, streamed."""
    remaining = set(wanted)
    with st.parquet_file(part) as fh:
        for batch in fh.iter_batches(batch_size=batch_size, columns=["record_id", "signal"]):
            keep = pc.is_in(batch.column("record_id"), pa.array(sorted(remaining), pa.string()))
            batch = batch.filter(keep)
            if batch.num_rows:
                signals = st.signals_of(batch.column("signal"))
                for rid, sig in zip(batch.column("record_id").to_pylist(), signals, strict=True):
                    remaining.discard(rid)
                    yield rid, sig
            if not remaining:
                return


def _problem(source_path: str, site: str, reason: str, exc: BaseException) -> dict[str, Any]:
    detail = "".join(traceback.format_exception_only(exc)).strip()
    return quarantine_row(source_path, site, STAGE, reason, detail)


def process_shard(shard: Shard, store: Path) -> ShardResult:
    """Measure one shard and stage its rows; returns the moves for the driver's commit."""
    meta = {m.record_id: m for m in shard.records}
    rows, quarantine = [], []
    try:
        for rid, signal in read_signals(shard.part, set(meta)):
            try:
                rows.append(feature_row(signal, meta[rid]))
            except Exception as exc:  # a bug or a pathological signal must not stop the run
                rows.append({"record_id": rid, "skip_reason": "error"})
                quarantine.append(_problem(meta[rid].source_path, shard.site, type(exc).__name__, exc))
    except Exception as exc:  # an unreadable waveforms part: its records wait, the run goes on
        rows = []
        where = str(shard.part.relative_to(store))
        quarantine = [_problem(where, shard.site, "unreadable_waveforms", exc)]
    skipped = Counter(r["skip_reason"] for r in rows if r["skip_reason"])
    moves = st.stage_parts(store, "features", rows_table(rows, shard.site, datetime.now(UTC))) if rows else []
    return ShardResult(moves, len(rows) - sum(skipped.values()), skipped, quarantine, shard.site)


def _quality(store: Path) -> dict[str, tuple[str, tuple[bool, ...], datetime]]:
    """record_id → (verdict, usable per lead, checked_at) from quality/."""
    if st.dataset(store, "quality") is None:
        raise QualityMissing(
            f"{store} has no quality/ table: run `msaic qc --store {store}` first "
            "(the pipeline order is ingest → qc → features)"
        )
    table = st.read_table(store, "quality", ["record_id", "verdict", "checked_at", *FLAG_COLUMNS]).to_pydict()
    flags = [table[c] for c in FLAG_COLUMNS]
    return {
        rid: (verdict, usable_leads([f[i] for f in flags]), checked)
        for i, (rid, verdict, checked) in enumerate(
            zip(table["record_id"], table["verdict"], table["checked_at"], strict=True)
        )
    }


def drop_stale_rows(store: Path, valid_since: dict[str, datetime]) -> tuple[set[str], st.Commit, int]:
    """Record ids with current features, the commit that removes every other features row, and how
    many rows it removes. Stale rows:
    an older feature version, a record gone from records/, or a record re-ingested or re-checked
    (`valid_since`: the later of ingested_at and checked_at) after its features were computed."""
    current: set[str] = set()
    commit, removed = st.Commit(), 0
    dset = st.dataset(store, "features")
    for fragment in dset.get_fragments() if dset is not None else []:
        path = st.fragment_file(store, fragment)
        rows = st.read_table_file(path, columns=["record_id", "feature_version", "computed_at"]).to_pydict()
        fresh = [
            version == FEATURE_VERSION and rid in valid_since and at >= valid_since[rid]
            for rid, version, at in zip(
                rows["record_id"], rows["feature_version"], rows["computed_at"], strict=True
            )
        ]
        current |= {rid for rid, ok in zip(rows["record_id"], fresh, strict=True) if ok}
        if all(fresh):
            continue
        removed += fresh.count(False)
        if any(fresh):
            kept = st.read_table_file(path).filter(pa.array(fresh))
            site = pa.array([st.site_of_part(path)] * kept.num_rows, pa.string())
            commit.moves += st.stage_parts(store, "features", kept.append_column(SITE_FIELD, site))
        commit.deletes.append(path)
    return current, commit, removed


def plan(
    store: Path, shard_size: int, totals: FeatureTotals
) -> tuple[list[Shard], st.Commit, list[ShardResult]]:
    """Shards of the records that have a quality verdict and no current features, the commit that
    drops stale features rows, and the quarantine entries of unreadable waveforms parts."""
    quality = _quality(store)
    records = st.read_table(
        store, "records", ["record_id", "source_path", "sex", "age", "ingested_at"]
    ).to_pylist()
    valid_since = {
        r["record_id"]: max(r["ingested_at"], quality[r["record_id"]][2])
        for r in records
        if r["record_id"] in quality
    }
    current, cleanup, totals.stale_rows_removed = drop_stale_rows(store, valid_since)
    meta: dict[str, RecordMeta] = {}
    for r in records:
        if r["record_id"] in current:
            totals.up_to_date += 1
        elif r["record_id"] not in quality:
            totals.awaiting_qc += 1
        else:
            verdict, usable, _ = quality[r["record_id"]]
            meta[r["record_id"]] = RecordMeta(
                r["record_id"], r["source_path"], verdict, usable, r["sex"], r["age"]
            )
    shards: list[Shard] = []
    unreadable: list[ShardResult] = []
    waveforms = st.dataset(store, "waveforms")
    for fragment in waveforms.get_fragments() if waveforms is not None and meta else []:
        part = st.fragment_file(store, fragment)
        try:
            stored = st.read_table_file(part, columns=["record_id"]).column(0).to_pylist()
        except Exception as exc:  # unreadable: quarantined by the driver, its records wait
            site = st.site_of_part(part)
            problem = _problem(str(part.relative_to(store)), site, "unreadable_waveforms", exc)
            unreadable.append(ShardResult([], 0, Counter(), [problem], site))
            continue
        ids = [rid for rid in stored if rid in meta]
        for start in range(0, len(ids), shard_size):
            chunk = tuple(meta[rid] for rid in ids[start : start + shard_size])
            shards.append(Shard(part, st.site_of_part(part), chunk))
    return shards, cleanup, unreadable


def _commit(committer: Committer, result: ShardResult, totals: FeatureTotals) -> None:
    committer.publish(list(result.moves), result.quarantine)
    totals.measured[result.site] += result.measured
    for reason, n in result.skipped.items():
        totals.skipped[(result.site, reason)] += n
    totals.quarantined += len(result.quarantine)


def build_features(
    store: Path,
    settings: Settings,
    on_progress: Callable[[int], None] | None = None,
    executor: Executor | None = None,
) -> FeatureTotals:
    """Measure every record of the store that lacks current features; returns what the run did.
    `executor` runs the shards elsewhere (Prefect tasks on Dask) instead of the local pool, whose
    size is capped by the shards to run (an executor's workers run already)."""
    store = store.resolve()
    if st.dataset(store, "records") is None:
        raise FileNotFoundError(
            f"{store} holds no records/: run `msaic ingest ARCHIVE --store {store}` first"
        )
    totals = FeatureTotals()
    with st.store_lock(store):
        size = settings.shard_records(settings.shard_size, executor is not None)
        shards, cleanup, unreadable = plan(store, size, totals)
        cleanup.publish(store)
        committer = Committer(store, "features", validate=False)  # checked whole after the run
        for problem in unreadable:
            _commit(committer, problem, totals)
        work = partial(process_shard, store=store)
        workers = settings.workers if executor else worker_count(settings.workers, len(shards))
        for result in run_sharded(shards, work, workers, executor=executor):
            _commit(committer, result, totals)
            if on_progress:
                on_progress(result.measured + sum(result.skipped.values()))
    return totals
