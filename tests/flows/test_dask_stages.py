"""Every stage on a real local Dask cluster (distributed.LocalCluster, two single-threaded worker
processes) through prefect-dask's DaskTaskRunner, reporting to the session's Prefect API:

- ingest, qc and features give the same store as one process;
- a worker process killed (SIGKILL) while shards of ingest or score are in flight: Dask runs
  the lost shards again, the run completes, and every record is in the store exactly once;
- what a lost attempt staged is never committed, and is gone when the run ends.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest
from prefect import flow

from flows.cluster import DaskCluster, on_cluster, run_stage
from tasks import store as st
from tasks.ingest import IngestTotals
from tasks.scoring import ScoreTotals
from tasks.settings import Settings

RECORDS = 32


@pytest.fixture(scope="module")
def small_archive(tmp_path_factory: pytest.TempPathFactory, prefect_harness: None) -> Path:
    """A synthetic archive of `RECORDS` records at two sites."""
    from flows.synth import synth

    archive = tmp_path_factory.mktemp("dask-archive") / "archive"
    synth(out=archive, records=RECORDS, sites=2, seed=5, workers=2)
    return archive


@pytest.fixture(scope="module")
def cluster(prefect_harness: None) -> Iterator[DaskCluster]:
    """A local cluster of two worker processes (one thread each, no dashboard, on 127.0.0.1)."""
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, host="127.0.0.1"
    ) as local:
        yield DaskCluster(address=local.scheduler_address)


def _rows(store: Path, table: str, key: list[str]) -> pd.DataFrame:
    """A table's rows without their run times (timestamps), sorted by `key`."""
    t = st.read_table(store, table)
    kept = [f.name for f in t.schema if not pa.types.is_timestamp(f.type)]
    return t.select(kept).to_pandas().sort_values(key).reset_index(drop=True)


def _pipeline(archive: Path, store: Path, settings: Settings, cluster: DaskCluster | None) -> None:
    from flows.features import features
    from flows.ingest import ingest
    from flows.quality import quality

    for the_flow, args in ((ingest, (archive, store)), (quality, (store,)), (features, (store,))):
        with on_cluster(the_flow, cluster) as run:
            run(*args, settings=settings)


def test_ingest_qc_features_give_the_same_store_on_dask(
    small_archive: Path, cluster: DaskCluster, tmp_path: Path
) -> None:
    # the workers read the archive's files themselves (the kill tests below ship them in the shards)
    settings = Settings(
        workers=2, shard_size=4, commit_records=8, qc_commit_records=8, workers_see_archive=True
    )
    _pipeline(small_archive, tmp_path / "dask", settings, cluster)
    _pipeline(small_archive, tmp_path / "local", Settings(workers=1, shard_size=4), None)
    for table, key in (("records", ["record_id"]), ("quality", ["record_id"]), ("features", ["record_id"])):
        dask, local = _rows(tmp_path / "dask", table, key), _rows(tmp_path / "local", table, key)
        assert len(dask) == len(local) > 0, table
        pd.testing.assert_frame_equal(dask, local, check_exact=False, rtol=1e-6, obj=table)
    assert _rows(tmp_path / "dask", "records", ["record_id"])["source_path"].nunique() == RECORDS


class WorkerKiller:
    """An `on_progress` callback for a stage driver that, at the first shard handed back while a
    worker of the cluster has shards assigned, kills (SIGKILL) that worker, then does nothing (at a
    moment when every shard in flight has just finished there is no such worker: it waits for the
    next one)."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.killed: int | None = None
        self.had_shards = 0

    def __call__(self, _n: int) -> None:
        if self.killed is not None:
            return
        from distributed import Client

        with Client(self.address, timeout="30s", set_as_default=False) as client:
            processing = client.processing()
            busy = max(processing, key=lambda w: len(processing[w]))
            if not processing[busy]:
                return
            self.had_shards = len(processing[busy])
            self.killed = client.run(os.getpid, workers=[busy])[busy]
        os.kill(self.killed, signal.SIGKILL)


@flow(name="ingest-with-a-worker-killed", validate_parameters=False)
def ingest_killing(killer: WorkerKiller, archive: Path, store: Path, settings: Settings) -> IngestTotals:
    from flows.ingest import ingest_task

    return run_stage(ingest_task, "ingest-shard", archive, store, settings, None, killer)


@flow(name="score-with-a-worker-killed", validate_parameters=False)
def score_killing(
    killer: WorkerKiller, archive: Path, model: Path, out: Path, settings: Settings
) -> ScoreTotals:
    from flows.score import score_local

    return run_stage(score_local, "score-shard", archive, model, out, settings, on_progress=killer)


def _dead(pid: int) -> bool:
    """No such process, or a zombie: killed, and not yet reaped by its nanny (which on a loaded
    machine may take a moment; a zombie still answers signal 0)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    status = Path(f"/proc/{pid}/status")
    return status.exists() and "\nState:\tZ" in status.read_text()


def _assert_killed(killer: WorkerKiller) -> None:
    assert killer.killed is not None and killer.had_shards > 0
    assert _dead(killer.killed)


def test_a_worker_killed_mid_ingest_loses_and_doubles_nothing(
    small_archive: Path, cluster: DaskCluster, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    settings = Settings(workers=2, shard_size=2, cluster_shard_factor=1, commit_records=2)  # many shards
    killer = WorkerKiller(str(cluster.address))
    with on_cluster(ingest_killing, cluster) as run:
        totals = run(killer, small_archive, store, settings)
    _assert_killed(killer)
    records = st.read_table(store, "records", ["record_id", "source_path"]).to_pandas()
    assert records["record_id"].is_unique and records["source_path"].nunique() == len(records) == RECORDS
    assert sum(totals.records.values()) == RECORDS
    waves = st.read_table(store, "waveforms", ["record_id"]).to_pandas()
    assert sorted(waves["record_id"]) == sorted(records["record_id"])
    assert st.orphan_staging(store) == [] and not any((store / st.STAGING).rglob("*.parquet"))


class LostFirstAttempts:
    """An executor that runs every shard twice in this process and hands back the second result
    only: what Dask does when the worker of a first attempt is lost after it staged its files."""

    def __init__(self) -> None:
        self.staged_by_lost: list[Path] = []

    def submit(self, fn: Callable[[Any], Any], job: Any) -> Future:
        lost = fn(job)
        self.staged_by_lost += [p for pair in lost.staged.values() for p in pair]
        done: Future = Future()
        done.set_result(fn(job))
        return done


def test_what_a_lost_attempt_staged_is_never_committed(small_archive: Path, tmp_path: Path) -> None:
    from tasks.ingest.run import ingest_archive

    store, executor = tmp_path / "store", LostFirstAttempts()
    totals = ingest_archive(small_archive, store, Settings(workers=1, shard_size=4), executor=executor)
    records = st.read_table(store, "records", ["record_id"]).to_pandas()
    assert records["record_id"].is_unique and len(records) == sum(totals.records.values()) == RECORDS
    assert executor.staged_by_lost and not any(p.exists() for p in executor.staged_by_lost)


def test_a_worker_killed_mid_score_loses_and_doubles_nothing(
    small_archive: Path, model_dir: Path, cluster: DaskCluster, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    settings = Settings(workers=2, score_shard_size=2, cluster_shard_factor=1)  # many shards
    killer = WorkerKiller(str(cluster.address))
    with on_cluster(score_killing, cluster) as run:
        totals = run(killer, small_archive, model_dir, out, settings)
    _assert_killed(killer)
    scores = st.read_table(out, "scores", ["record_id", "source_path", "window"]).to_pandas()
    quarantined = st.read_table(out, "quarantine", ["source_path"]).to_pandas()
    assert not scores.duplicated(["record_id", "window"]).any()
    assert scores["source_path"].nunique() + len(quarantined) == RECORDS
    assert totals.counts["records"] + totals.counts["quarantined"] == RECORDS
    assert len(list((out / "ledger").glob("*.json"))) == totals.shards_done == RECORDS // 2
