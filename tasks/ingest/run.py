"""The driver of an ingest run: open the archive, name each record's site, stream shards to a
shard runner, and commit batches as they come back. Memory stays flat: at most a few shards are
in flight, and workers hand back file paths, not signals."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

from data_contracts.suites import warm_up
from tasks import store as st
from tasks.ingest import ptbxl
from tasks.ingest.archive import ArchiveLimits, ArchiveProblem, Item, Skipped, open_archive
from tasks.ingest.records import (
    IngestConfig,
    Ingestor,
    IngestTotals,
    ShardResult,
    Task,
    process_shard,
    shards,
)
from tasks.runner import Executor, run_sharded
from tasks.settings import Settings
from tasks.store.location import Location, ObjectPath, inside


def archive_name(path: Location) -> str:
    name = path.resolve().name
    for suffix in (".tar.gz", ".tgz", ".tar", ".zip"):
        name = name.removesuffix(suffix)
    return name


def site_of(source_path: str, extra: dict[str, Any], override: str | None, default: str) -> str:
    """--site wins; then the site the metadata states; then the first folder under the archive
    root; records at the root belong to a site named after the archive."""
    if override:
        return override
    if extra.get("site"):
        return str(extra["site"])
    head, _, rest = source_path.partition("/")
    return head if rest else default


def workers_read(archive_path: Location, executor: Executor | None, settings: Settings) -> bool:
    """Whether shard workers read their records' files themselves rather than being handed the
    bytes: on the local pool, wherever the archive lies on object storage, and on a cluster whose
    workers see this machine's archive path (`workers_see_archive`: a shared file system, or a
    local cluster). Other clusters' workers get the bytes inside the shards."""
    return executor is None or isinstance(archive_path, ObjectPath) or settings.workers_see_archive


def walk_archive(archive_path: Location, settings: Settings, for_workers: bool = False) -> Iterator[Item]:
    """Every file of the archive as a record unit, a skipped file or a problem; in the PTB-XL
    layout only the ECGs its database lists, with their metadata. `for_workers`: units of a
    directory or prefix carry where their files are, for the workers to read (`workers_read`)."""
    archive = open_archive(archive_path, ArchiveLimits.from_settings(settings), for_workers)
    database = ptbxl.find_database(archive.names())
    if database is None:
        return archive.units(lambda _name: {})
    index = ptbxl.header_index(archive, database)
    return archive.units(index.get)


def _task_bytes(task: Task) -> int:
    return task.unit.nbytes


def _ingest_shard(job: tuple[list[Task], str], cfg: IngestConfig, staging: Location) -> ShardResult:
    """One shard in a worker: (its tasks, its id) → staged parts and counts. Each attempt stages
    under names of its own: a shard run again after its worker was lost (Dask) never writes over,
    nor hands back, the files of the lost attempt, which the parent never commits."""
    shard, shard_id = job
    return process_shard(shard, cfg, staging, f"{shard_id}-{st.new_part_id()[:8]}")


def ingest_archive(
    archive_path: Location,
    store: Location,
    settings: Settings,
    site: str | None = None,
    on_progress: Callable[[int], None] | None = None,
    executor: Executor | None = None,
) -> IngestTotals:
    """Ingest every record of an archive into the store; returns what the run did. `executor`
    runs the shards elsewhere (Prefect tasks on Dask) instead of the local pool."""
    if not archive_path.exists():
        raise FileNotFoundError(f"archive {archive_path} does not exist")
    store = store.resolve()
    if inside(store, archive_path.resolve()) and archive_path.is_dir():
        raise ValueError("the store may not lie inside the archive: archives are read-only")
    cfg = IngestConfig.for_store(store, settings)
    default_site = archive_name(archive_path)
    # The records contract is needed at the first commit; load Great Expectations (seconds of
    # imports) beside the first shards instead of before them.
    warm = threading.Thread(target=warm_up, args=("records",), daemon=True)
    warm.start()
    with st.store_lock(store):
        ingestor = Ingestor(store)
        staging = st.staging_dir(store)

        def tasks() -> Iterator[Task]:
            for item in walk_archive(archive_path, settings, workers_read(archive_path, executor, settings)):
                if isinstance(item, Skipped):
                    ingestor.totals.skipped[item.kind] += 1
                    continue
                if isinstance(item, ArchiveProblem):
                    ingestor.add_problem(item, site_of(item.source_path, {}, site, default_site))
                    continue
                s = site_of(item.source_path, item.extra, site, default_site)
                yield Task(item, s, ingestor.stored_sha(s, item.source_path))

        def collect(result: ShardResult) -> None:
            ingestor.add(result)
            if on_progress:
                on_progress(result.windows)
            if ingestor.pending_windows >= settings.commit_records:
                ingestor.commit()

        run_id = st.new_part_id()[:8]
        size = settings.shard_records(settings.shard_size, executor is not None)
        work = shards(tasks(), size, settings.shard_max_mb << 20, _task_bytes)
        jobs = ((shard, f"{run_id}-{i}") for i, shard in enumerate(work))
        shard_fn = partial(_ingest_shard, cfg=cfg, staging=staging)
        for result in run_sharded(jobs, shard_fn, settings.workers, executor=executor):
            collect(result)
        ingestor.commit()
        return ingestor.totals
