"""The resumable, exactly-once runner of `msaic score`: OUT is a store directory.

The shard plan is derived from the archive walk alone: consecutive groups of `shard_size`
inputs, each named by a hash of its sites and source paths, with the shard size fixed in
OUT/score_run.json by the first run. A worker scores a shard and stages its rows (scores/,
quarantine/) and its ledger entry (OUT/ledger/<key>.json); the parent publishes the three in one
journaled `Commit` under the store lock. A shard is therefore done exactly when its ledger entry
exists, and a run killed at any moment is rolled forward by `recover` and continues with the
shards that have none. Inputs already in OUT (by site and source path) are never scored twice,
even if the plan changed. Workers return paths and counts, never signals, and at most two shards
per worker are in flight, so memory stays flat in archive size.
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from functools import cache, partial
from pathlib import Path
from typing import Any

import pyarrow as pa

from data_contracts.schemas import QUARANTINE, SCORES, SITE_FIELD
from tasks import store as st
from tasks.ingest import ptbxl
from tasks.ingest.archive import (
    ArchiveLimits,
    ArchiveProblem,
    RecordUnit,
    Skipped,
    TarArchive,
    expected_units,
    open_archive,
)
from tasks.ingest.records import IngestConfig, shards
from tasks.ingest.run import archive_name, site_of, walk_archive, workers_read
from tasks.quality.gate import load_profile
from tasks.quality.profile_file import scoring_profile
from tasks.runner import Executor, limit_threads, process_pool, run_sharded, worker_threads
from tasks.scoring.score import (
    SCORE_VERSION,
    ProbabilityModel,
    ScoreConfig,
    load_explainer,
    score_units,
)
from tasks.settings import Settings
from tasks.store.commit import Committer
from tasks.store.location import Location, inside, location
from tasks.store.model_files import ModelFiles, decision_threshold, read_model_files

RUN_FILE = "score_run.json"
SUMMARY_FILE = "score_summary.json"
LEDGER = "ledger"

Item = tuple[RecordUnit | ArchiveProblem, str]  # an input and its site


@dataclass(frozen=True)
class ShardJob:
    """One shard of the plan: its position, its key and its inputs (bytes read by the parent)."""

    index: int
    key: str
    items: list[Item]


@dataclass
class ShardDone:
    """What a worker hands back: the staged moves of its commit and counts, never signals."""

    index: int
    key: str
    moves: list[tuple[Path, Path]]
    counts: dict[str, int]
    quarantined: dict[str, int]  # "stage:reason" → inputs
    seconds: dict[str, float]


@dataclass
class ScoreTotals:
    """What a run did (this run's shards, plus what earlier runs had already done)."""

    model_id: str = ""
    qc_profile: dict[str, str] = field(default_factory=dict)  # version and sha256 of the profile applied
    qc_warning: str | None = None  # the profile applied is not the model's
    calibration: str | None = None  # the model's calibration method; None: scored without a risk
    counts: Counter = field(default_factory=Counter)  # records, windows, scored, calibrated, ...
    quarantined: Counter = field(default_factory=Counter)  # "stage:reason" → inputs
    skipped: Counter = field(default_factory=Counter)  # kind → files that hold no recording
    seconds: Counter = field(default_factory=Counter)  # read, quality, model, explain, write, walk
    shards_done: int = 0
    shards_resumed: int = 0  # shards found complete in the ledger
    records_resumed: int = 0  # inputs already in OUT, skipped
    wall_s: float = 0.0

    @property
    def records_per_s(self) -> float:
        return self.counts["records"] / self.wall_s if self.wall_s else 0.0


def shard_key(items: list[Item]) -> str:
    h = hashlib.sha256()
    for item, site in items:
        h.update(f"{site}\0{item.source_path}\n".encode())
    return h.hexdigest()[:32]


def plan(
    archive: Path,
    shard_size: int,
    settings: Settings,
    site: str | None = None,
    skipped: Counter | None = None,
    for_workers: bool = False,
) -> Iterator[ShardJob]:
    """The shard plan: the archive walk cut into consecutive shards (same archive, same plan);
    files that hold no recording are counted in `skipped` by kind; `for_workers` as in
    `walk_archive`."""
    default_site = archive_name(archive)

    def items() -> Iterator[Item]:
        for item in walk_archive(archive, settings, for_workers):
            if isinstance(item, Skipped):
                if skipped is not None:
                    skipped[item.kind] += 1
                continue
            extra = item.extra if isinstance(item, RecordUnit) else {}
            yield item, site_of(item.source_path, extra, site, default_site)

    work = shards(items(), shard_size, settings.shard_max_mb << 20, _item_bytes)
    for i, shard in enumerate(work):
        yield ShardJob(i, shard_key(shard), shard)


def _item_bytes(item: Item) -> int:
    return item[0].nbytes if isinstance(item[0], RecordUnit) else 0


def expected_inputs(archive: Path, settings: Settings) -> int | None:
    """How many records the walk will yield, from the member names (for the ETA); None for tar
    archives, which would need a pass of their own."""
    arch = open_archive(archive, ArchiveLimits.from_settings(settings))
    if isinstance(arch, TarArchive):
        return None
    names = arch.names()
    database = ptbxl.find_database(names)
    if database is not None:
        return len(ptbxl.header_index(arch, database))
    return expected_units(names)


@cache
def _resources(
    model_dir: str, threads: int, qc_profile: Location | None
) -> tuple[ProbabilityModel, Any, Any]:
    """The model, QC profile and explainer, loaded once per worker process."""
    from msaic_model.model.inference import for_cpu_scoring
    from msaic_model.training.registry import load_model

    limit_threads(threads)
    model = load_model(location(model_dir))
    if model.net is not None and next(model.net.parameters()).device.type == "cpu":
        for_cpu_scoring(model.net)  # inference only: the same probabilities to float rounding, faster
    return model, load_profile(qc_profile), load_explainer()


def check_model(model_dir: Location, settings: Settings) -> ModelFiles:
    """Refuse a broken model before any work: `msaic_model.training.registry.load_model` checks its files,
    threshold, weights, config and shapes. With local workers the check runs in a process forked
    from their forkserver, which has torch imported already, so that this parent never imports it."""
    files = read_model_files(model_dir)
    if settings.workers == 1:
        _check_loads(str(model_dir))
    else:
        with process_pool(1) as pool:
            pool.submit(_check_loads, str(model_dir)).result()
    return files


def _check_loads(model_dir: str) -> None:
    from msaic_model.training.registry import load_model

    load_model(location(model_dir), device="cpu")


def run_shard(job: ShardJob, cfg: ScoreConfig, out: Path) -> ShardDone:
    """Score one shard in a worker and stage its rows and ledger entry under OUT/.staging."""
    model, profile, explainer = _resources(str(cfg.model_dir), cfg.threads, cfg.qc_profile)
    result = score_units(job.items, cfg, model, profile, explainer)
    t0 = time.perf_counter()
    moves: list[tuple[Path, Path]] = []
    if result.rows:
        table = pa.Table.from_pylist(result.rows, schema=SCORES.append(SITE_FIELD))
        moves += st.stage_parts(out, "scores", table)
    if result.quarantine:
        table = pa.Table.from_pylist(result.quarantine, schema=QUARANTINE.append(SITE_FIELD))
        moves += st.stage_parts(out, "quarantine", table)
    scored = Counter(r["verdict"] for r in result.rows if r["probability"] is not None)
    verdicts = Counter(r["verdict"] for r in result.rows)
    counts = {
        "records": result.records,
        "windows": len(result.rows),
        "scored": sum(scored.values()),
        "calibrated": sum(r["risk"] is not None for r in result.rows),
        "flagged": sum(r["flagged"] for r in result.rows),
        "pass": scored["pass"],
        "limited": scored["limited"],
        "rejected": verdicts["reject"],
        "no_input": len(result.rows) - sum(scored.values()) - verdicts["reject"],
        "quarantined": len(result.quarantine),
    }
    quarantined = Counter(f"{q['stage']}:{q['reason']}" for q in result.quarantine)
    result.seconds["write"] += time.perf_counter() - t0
    entry = {"index": job.index, "key": job.key, "counts": counts, "quarantined": quarantined}
    entry["seconds"] = dict(result.seconds)
    staged = st.staging_dir(out) / f"{st.new_part_id()}.ledger.json"
    staged.write_text(json.dumps(entry))
    moves.append((staged, out / LEDGER / f"{job.key}.json"))
    return ShardDone(job.index, job.key, moves, counts, dict(quarantined), dict(result.seconds))


def _ledger(out: Path) -> dict[str, dict[str, Any]]:
    return {p.stem: json.loads(p.read_text()) for p in sorted((out / LEDGER).glob("*.json"))}


def _scored_inputs(out: Path) -> set[tuple[str, str]]:
    """(site, source_path) of every input OUT already holds, scored or quarantined."""
    done: set[tuple[str, str]] = set()
    for table in ("scores", "quarantine"):
        t = st.read_table(out, table, ["site", "source_path"])
        done.update(zip(t["site"].to_pylist(), t["source_path"].to_pylist(), strict=True))
    return done


def _run_file(out: Path, archive: Path, model_id: str, shard_size: int) -> int:
    """Fix the plan of OUT at its first run; a later run resumes with the same shard size and
    refuses another model, archive or scoring version (scores of two models, archives or versions
    never mix in one OUT)."""
    path = out / RUN_FILE
    if path.exists():
        meta = json.loads(path.read_text())
        if meta["model_id"] != model_id:
            raise ValueError(f"{out} holds scores of model {meta['model_id']}; use another --out")
        if meta["archive"] != str(archive.resolve()):
            raise ValueError(f"{out} holds scores of archive {meta['archive']}; use another --out")
        version = meta.get("score_version", "score/1")  # written from score/2 on
        if version != SCORE_VERSION:
            raise ValueError(f"{out} holds scores of {version}; use another --out")
        return int(meta["shard_size"])
    meta = {
        "archive": str(archive.resolve()),
        "model_id": model_id,
        "shard_size": shard_size,
        "score_version": SCORE_VERSION,
    }
    st.write_atomic(path, json.dumps(meta))
    return shard_size


def score_config(
    out: Path,
    model_dir: Location,
    settings: Settings,
    qc_profile: Location | None,
    threads: int | None = None,
) -> ScoreConfig:
    """The workers' configuration; `threads` BLAS and torch threads each (default: the CPUs shared out)."""
    ingest = IngestConfig.for_store(out, settings)
    return ScoreConfig(ingest, model_dir.resolve(), threads or worker_threads(settings.workers), qc_profile)


def score_archive_run(
    archive: Path,
    model_dir: Location,
    out: Path,
    settings: Settings,
    executor: Executor | None = None,
    on_progress: Callable[[int], None] | None = None,
    site: str | None = None,
) -> ScoreTotals:
    """Score every record of an archive into OUT, resuming whatever an earlier run left.

    `executor` runs shards elsewhere (Prefect tasks on Dask); by default they run in a pool of
    `settings.workers` local processes (in this process when workers is 1): `run_sharded`."""
    if not archive.exists():
        raise FileNotFoundError(f"archive {archive} does not exist")
    out = out.resolve()
    if archive.is_dir() and inside(out, archive.resolve()):
        raise ValueError("OUT may not lie inside the archive: archives are read-only")
    start = time.perf_counter()
    model = check_model(model_dir, settings)  # a broken model is refused before OUT is touched
    decision_threshold(model)
    profile = scoring_profile(model_dir, settings.qc_profile)  # given, else the model's, else packaged
    load_profile(profile.path)  # a broken profile is refused too
    out.mkdir(parents=True, exist_ok=True)
    # OUT/.pseudonym_key appears here, inputs checked
    # a Dask worker runs one shard per thread, one core each: one torch thread per shard
    cfg = score_config(out, model_dir, settings, profile.path, 1 if executor else None)
    method = model.calibration.method if model.calibration else None
    totals = ScoreTotals(
        model_id=model.model_id,
        qc_profile=asdict(profile.profile),
        qc_warning=profile.warning,
        calibration=method,
    )
    if profile.warning:
        warnings.warn(profile.warning, stacklevel=2)
    with st.store_lock(out):
        size = settings.shard_records(settings.score_shard_size, executor is not None)
        shard_size = _run_file(out, archive, totals.model_id, size)
        ledger = _ledger(out)
        done_inputs = _scored_inputs(out)

        def jobs() -> Iterator[ShardJob]:
            t = time.perf_counter()
            read_in_workers = workers_read(archive, executor, settings)
            for job in plan(archive, shard_size, settings, site, totals.skipped, read_in_workers):
                todo = [(item, s) for item, s in job.items if (s, item.source_path) not in done_inputs]
                skipped = len(job.items) - len(todo)
                if job.key in ledger or not todo:
                    totals.shards_resumed += job.key in ledger
                    totals.records_resumed += len(job.items)
                    if on_progress:
                        on_progress(len(job.items))
                    continue
                totals.records_resumed += skipped
                totals.seconds["walk"] += time.perf_counter() - t
                yield ShardJob(job.index, job.key, todo)
                t = time.perf_counter()

        committer = Committer(out, "scores")

        def collect(done: ShardDone) -> None:
            committer.publish(done.moves)
            totals.shards_done += 1
            totals.counts.update(done.counts)
            totals.seconds.update(done.seconds)
            totals.quarantined.update(done.quarantined)
            if on_progress:
                on_progress(done.counts["records"] + done.counts["quarantined"])

        work = partial(run_shard, cfg=cfg, out=out)
        for done in run_sharded(jobs(), work, settings.workers, executor=executor):
            collect(done)
    totals.wall_s = time.perf_counter() - start
    _write_summary(out, totals)
    return totals


def risk_note(totals: ScoreTotals) -> str:
    """What the `risk` column of this run holds, in one sentence for the summary."""
    if totals.calibration is None:
        return (
            f"risk and risk_band are null: model {totals.model_id} was registered without a calibration "
            "(before calibration/1); retrain it to get calibrated risks"
        )
    return f"risk: the model's log-odds calibrated on its validation part ({totals.calibration})"


def _write_summary(out: Path, totals: ScoreTotals) -> None:
    data = {
        "model_id": totals.model_id,
        "qc_profile": totals.qc_profile,
        "qc_warning": totals.qc_warning,
        "calibration": totals.calibration,
        "risk": risk_note(totals),
        "counts": dict(totals.counts),
        "quarantined": dict(totals.quarantined),
        "skipped": dict(totals.skipped),
        "seconds": dict(totals.seconds),
        "shards_done": totals.shards_done,
        "shards_resumed": totals.shards_resumed,
        "records_resumed": totals.records_resumed,
        "wall_s": totals.wall_s,
        "records_per_s": totals.records_per_s,
    }
    st.write_atomic(out / SUMMARY_FILE, json.dumps(data, indent=2, default=str))
