"""Ingest: record units from an archive → harmonized, labelled rows staged as Parquet.

`process_shard` is the unit of parallel work: it runs in a worker process, decodes and
harmonizes each record, and writes one staged records file and one waveforms file per site. It
returns paths and quarantine rows, never signals, so the parent stays light. `Ingestor` runs in
the parent: it skips sources whose content is already stored, validates each batch against the
records contract and publishes it to the store in one commit.
"""

from __future__ import annotations

import hashlib
import posixpath
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from data_contracts.schemas import FS, RECORDS, SIGNAL_TYPE, WAVEFORMS, WINDOW_SAMPLES
from tasks import store as st
from tasks.ingest import readers
from tasks.ingest.archive import ArchiveProblem, RecordUnit
from tasks.ingest.errors import RecordError
from tasks.ingest.harmonize import Harmonized, HarmonizeError, harmonize
from tasks.ingest.header_meta import parse_comments
from tasks.ingest.labels import label_version
from tasks.ingest.record_meta import RecordMeta, from_export
from tasks.ingest.wfdb_reader import RawRecord, decode, read_header
from tasks.settings import Settings
from tasks.store.commit import Committer, quarantine_row
from tasks.store.pseudonym import keyed_hash, load_key

T = TypeVar("T")
INGEST_VERSION = "ingest/2"  # 2: hospital formats; dx holds codes and vocabulary terms only


@dataclass(frozen=True)
class IngestConfig:
    """What a worker needs; plain data so that it pickles to worker processes."""

    store: Path
    key: bytes
    min_duration_s: float
    max_duration_s: float

    @classmethod
    def for_store(cls, store: Path, settings: Settings) -> IngestConfig:
        """The harmonization settings and the pseudonym key of `store` (ingest and scoring alike,
        so that a scored record gets the record_id the store gives it)."""
        key = settings.pseudonym_key
        secret = key.get_secret_value() if key is not None else None  # an empty one is refused, not skipped
        return cls(
            store=store,
            key=load_key(store, secret),
            min_duration_s=settings.min_duration_s,
            max_duration_s=settings.max_duration_s,
        )


@dataclass(frozen=True)
class Task:
    """One record unit to ingest, with its site and the content hash already stored for it."""

    unit: RecordUnit
    site: str
    stored_sha: str | None


@dataclass
class ShardResult:
    staged: dict[str, tuple[Path, Path]] = field(default_factory=dict)  # site → (records, waveforms)
    quarantine: list[dict[str, Any]] = field(default_factory=list)
    unchanged: int = 0
    windows: int = 0
    replaced: list[tuple[str, str]] = field(default_factory=list)  # (site, source_path)


def content_sha256(files: dict[str, bytes]) -> str:
    """Hash of a record's bytes (header and signal files, by name), to detect changed sources."""
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(name.encode() + b"\0" + len(files[name]).to_bytes(8, "little"))
        h.update(files[name])
    return h.hexdigest()


def decode_unit(unit: RecordUnit, max_duration_s: float) -> tuple[RawRecord, RecordMeta]:
    """The signal and stated metadata of one unit, whatever its format (raises RecordError)."""
    if unit.format != "wfdb":
        decoded = readers.read(unit.format, unit.files[posixpath.basename(unit.header_path)])
        return decoded.raw, from_export(decoded)
    header_name = posixpath.basename(unit.header_path)
    header = read_header(unit.files, header_name)
    duration = header.duration_s
    if duration is not None and duration > max_duration_s:  # refuse before decoding hours of signal
        raise HarmonizeError("too_long", f"{duration:.0f} s is above the {max_duration_s:g} s maximum")
    raw = decode(unit.files, header, header_name)
    return raw, replace(parse_comments(raw.comments), recorded_at=header.recorded_at)


class HarmonizeLimits(Protocol):
    """The harmonization a run applies (`IngestConfig` and `Settings` both carry it): the
    durations it accepts; the rate and window length are the store's (`FS`, `WINDOW_SAMPLES`)."""

    min_duration_s: float
    max_duration_s: float


def decode_harmonized(unit: RecordUnit, limits: HarmonizeLimits) -> tuple[Harmonized, RecordMeta]:
    """One unit decoded and harmonized as ingest, scoring and the review page all do it (raises
    RecordError)."""
    raw, meta = decode_unit(unit, limits.max_duration_s)
    h = harmonize(
        raw,
        target_fs=FS,
        window_s=WINDOW_SAMPLES / FS,
        min_duration_s=limits.min_duration_s,
        max_duration_s=limits.max_duration_s,
    )
    return h, meta


def record_rows(task: Task, sha: str, cfg: IngestConfig) -> tuple[list[dict[str, Any]], np.ndarray]:
    """Decode, harmonize and label one unit (raises RecordError: HeaderError, SignalError,
    ReaderError, HarmonizeError)."""
    unit = task.unit
    h, meta = decode_harmonized(unit, cfg)
    extra = unit.extra
    label = extra.get("label", meta.label)
    patient = extra.get("patient_id") or meta.patient_id or posixpath.splitext(unit.source_path)[0]
    now = datetime.now(UTC)
    rows = [
        {
            "record_id": keyed_hash(cfg.key, "record", task.site, unit.source_path, str(w)),
            "device": extra.get("device", meta.device),
            "format": unit.format,
            "institution": meta.institution,
            "recorded_at": extra.get("recorded_at") or meta.recorded_at,
            "patient_key": keyed_hash(
                cfg.key, "patient", extra.get("patient_namespace", task.site), str(patient)
            ),
            "source_path": unit.source_path,
            "window": w,
            "fs": FS,
            "n_samples": n_valid,
            "padded": n_valid < h.windows.shape[2],
            "source_fs": h.source_fs,
            "source_duration_s": h.source_duration_s,
            "leads_missing": h.leads_missing,
            "leads_dropped": h.leads_dropped,
            "leads_derived": meta.derived_leads,
            "age": extra.get("age", meta.age),
            "sex": extra.get("sex", meta.sex),
            "mi_label": label.mi_label,
            "mi_territory": label.mi_territory,
            "dx": extra.get("dx", meta.dx),
            "label_source": label.label_source,
            "label_version": label_version(),
            "strat_fold": extra.get("strat_fold"),
            "content_sha256": sha,
            "ingest_version": INGEST_VERSION,
            "ingested_at": now,
        }
        for w, n_valid in enumerate(h.n_valid)
    ]
    return rows, h.windows


def signal_array(windows: np.ndarray) -> pa.FixedSizeListArray:
    """n × 12 × 5000 float32 → the nested fixed-size-list column of `waveforms/`, zero-copy."""
    _, leads, samples = windows.shape
    flat = pa.array(np.ascontiguousarray(windows, dtype=np.float32).reshape(-1))
    return pa.FixedSizeListArray.from_arrays(pa.FixedSizeListArray.from_arrays(flat, samples), leads).cast(
        SIGNAL_TYPE
    )


def classify_error(exc: Exception) -> tuple[str, str, str]:
    """(stage, reason, detail) of a failed record for the quarantine table."""
    if isinstance(exc, HarmonizeError):
        return "harmonize", exc.reason, str(exc)
    if isinstance(exc, RecordError):
        return "read", exc.reason, str(exc)
    return "read", "unexpected_error", f"{type(exc).__name__}: {exc}"


def process_shard(tasks: list[Task], cfg: IngestConfig, staging: Path, shard_id: str) -> ShardResult:
    """Ingest one shard in a worker; every failure becomes a quarantine row, never an exception."""
    result = ShardResult()
    rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
    signals: dict[str, list[np.ndarray]] = defaultdict(list)
    for task in tasks:
        sha = None
        try:
            sha = content_sha256(task.unit.files)  # the files are read here (`ArchiveFiles`)
            if sha == task.stored_sha:
                result.unchanged += 1
                continue
            unit_rows, windows = record_rows(task, sha, cfg)
        except Exception as exc:  # a decoder bug must not stop the archive either: keep the evidence
            stage, reason, detail = classify_error(exc)
            result.quarantine.append(
                quarantine_row(task.unit.source_path, task.site, stage, reason, detail, sha)
            )
            continue
        if task.stored_sha is not None:
            result.replaced.append((task.site, task.unit.source_path))
        rows[task.site].extend(unit_rows)
        signals[task.site].append(windows)
        result.windows += len(unit_rows)
    for site, site_rows in rows.items():
        records = pa.Table.from_pylist(site_rows, schema=RECORDS)
        waves = pa.Table.from_arrays(
            [records["record_id"], signal_array(np.concatenate(signals[site]))], schema=WAVEFORMS
        )
        key = f"{shard_id}-{keyed_hash(b'site', site, length=8)}"
        result.staged[site] = (
            st.write_parquet(records, staging / f"{key}.records.parquet"),
            st.write_parquet(waves, staging / f"{key}.waveforms.parquet"),
        )
    return result


@dataclass
class IngestTotals:
    """What a run did, for the summary table."""

    windows: Counter = field(default_factory=Counter)  # site → windows written
    records: Counter = field(default_factory=Counter)  # site → source records written
    labels: Counter = field(default_factory=Counter)  # (site, positive/negative/unknown) → records
    quarantined: Counter = field(default_factory=Counter)  # (stage, reason) → inputs
    formats: Counter = field(default_factory=Counter)  # source format → records written
    skipped: Counter = field(default_factory=Counter)  # kind → files that hold no recording
    unchanged: int = 0
    replaced: int = 0


def _remember(
    index: dict[tuple[str, str], tuple[str, set[str]]], site: str, path: str, sha: str, part: Path
) -> None:
    """Note in the index that a part file holds windows of (site, source_path) at this hash."""
    index.setdefault((site, path), (sha, set()))[1].add(part.stem.removeprefix("part-"))


class Ingestor:
    """The parent side of an ingest run over one store: knows what is stored, publishes batches."""

    def __init__(self, store: Path) -> None:
        self.store = store
        self.totals = IngestTotals()
        self._stored = self._load_index()
        self._committer = Committer(store, "records")
        self._pending: list[ShardResult] = []
        self._problems: list[dict[str, Any]] = []

    def _load_index(self) -> dict[tuple[str, str], tuple[str, set[str]]]:
        """(site, source_path) → (content hash, ids of the part files holding its windows), from
        one scan of records/ (the file name of each row comes with it)."""
        index: dict[tuple[str, str], tuple[str, set[str]]] = {}
        dset = st.dataset(self.store, "records")
        if dset is not None:
            table = dset.to_table(columns=["site", "source_path", "content_sha256", "__filename"])
            for site, path, sha, fname in zip(
                *(table[c].to_pylist() for c in ("site", "source_path", "content_sha256")),
                pc.cast(table["__filename"], pa.string()).to_pylist(),
                strict=True,
            ):
                _remember(index, site, path, sha, Path(fname))
        return index

    def stored_sha(self, site: str, source_path: str) -> str | None:
        entry = self._stored.get((site, source_path))
        return entry[0] if entry else None

    def add_problem(self, problem: ArchiveProblem, site: str) -> None:
        self._problems.append(
            quarantine_row(problem.source_path, site, "archive", problem.reason, problem.detail, None)
        )

    def add(self, result: ShardResult) -> None:
        self._pending.append(result)

    @property
    def pending_windows(self) -> int:
        return sum(r.windows for r in self._pending)

    def commit(self) -> None:
        """Validate the pending batch against the records contract, then publish it whole, with
        the rewrites of replaced sources and the quarantine rows, in one commit."""
        results, self._pending = self._pending, []
        problems, self._problems = self._problems, []
        moves = []
        for r in results:
            for site, (rec_path, wav_path) in r.staged.items():
                part = st.new_part_id()
                moves += [
                    (wav_path, st.part_path(self.store, "waveforms", site, part)),
                    (rec_path, st.part_path(self.store, "records", site, part)),
                ]
        commit = st.Commit()
        quarantine = [q for r in results for q in r.quarantine] + problems
        for row in quarantine:
            self.totals.quarantined[(row["stage"], row["reason"])] += 1
        try:
            self._drop_replaced([key for r in results for key in r.replaced], commit)
        except Exception:
            for staged, _ in moves:
                staged.unlink(missing_ok=True)
            raise
        batch = self._committer.publish(moves, quarantine, commit)
        if batch is not None:
            self._count(batch)
        self._index_commit(commit)
        self.totals.unchanged += sum(r.unchanged for r in results)

    def _index_commit(self, commit: st.Commit) -> None:
        """Bring the in-memory index up to date from what this commit published (no re-scan)."""
        for old in commit.deletes:
            part = old.stem.removeprefix("part-")
            for key, (_, parts) in list(self._stored.items()):
                if part in parts:
                    parts.discard(part)
                    if not parts:
                        del self._stored[key]
        for _, dst in commit.moves:
            if dst.parent.parent.name != "records":
                continue
            site = st.site_of_part(dst)
            table = st.read_table_file(dst).select(["source_path", "content_sha256"])
            for path, sha in zip(
                table["source_path"].to_pylist(), table["content_sha256"].to_pylist(), strict=True
            ):
                _remember(self._stored, site, path, sha, dst)

    def _count(self, batch: pa.Table) -> None:
        t = self.totals
        for row in batch.select(["site", "window", "mi_label", "format"]).to_pylist():
            t.windows[row["site"]] += 1
            if row["window"] == 0:
                t.records[row["site"]] += 1
                t.formats[row["format"]] += 1
                state = {1: "positive", 0: "negative"}.get(row["mi_label"], "unknown")
                t.labels[(row["site"], state)] += 1

    def _drop_replaced(self, keys: list[tuple[str, str]], commit: st.Commit) -> None:
        """Rewrite the part files that hold old versions of changed sources without them."""
        if not keys:
            return
        self.totals.replaced += len(keys)
        by_part: dict[tuple[str, str], set[str]] = defaultdict(set)
        for site, path in keys:
            for part in self._stored[(site, path)][1]:
                by_part[(site, part)].add(path)
        for (site, part), paths in by_part.items():
            old_records = st.part_path(self.store, "records", site, part)
            records = st.read_table_file(old_records)
            keep = pc.invert(pc.is_in(records["source_path"], pa.array(sorted(paths))))
            kept = records.filter(keep)
            old_waves = st.part_path(self.store, "waveforms", site, part)
            waves = st.read_table_file(old_waves)
            kept_waves = waves.filter(pc.is_in(waves["record_id"], kept["record_id"]))
            commit.deletes += [old_records, old_waves]
            if kept.num_rows:
                new = st.new_part_id()
                stage = st.staging_dir(self.store)
                commit.moves += [
                    (
                        st.write_parquet(kept_waves, stage / f"{new}.w.parquet"),
                        st.part_path(self.store, "waveforms", site, new),
                    ),
                    (
                        st.write_parquet(kept, stage / f"{new}.r.parquet"),
                        st.part_path(self.store, "records", site, new),
                    ),
                ]


def shards(items: Iterable[T], size: int, max_bytes: int, nbytes: Callable[[T], int]) -> Iterator[list[T]]:
    """Consecutive lists of at most `size` items and, past the first item, at most `max_bytes`
    of input bytes, drawn lazily from a stream: the bytes a shard carries to a worker stay bounded
    whatever the archive's files weigh."""
    shard: list[T] = []
    held = 0
    for item in items:
        weight = nbytes(item)
        if shard and held + weight > max_bytes:
            yield shard
            shard, held = [], 0
        shard.append(item)
        held += weight
        if len(shard) >= size:
            yield shard
            shard, held = [], 0
    if shard:
        yield shard
