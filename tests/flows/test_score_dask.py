"""`score_archive` on a distributed LocalCluster of two worker processes through prefect-dask's
DaskTaskRunner: one Prefect task per shard, and the same rows as the local run."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np

from tasks import store as st

SHARD = 16  # on the cluster 64 records a shard: several shards of the session archive


async def _shard_task_runs() -> list[str]:
    """Names of the completed task runs of the latest `score_archive` flow run."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterId
    from prefect.client.schemas.sorting import FlowRunSort

    async with get_client() as client:
        latest = await client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["score_archive"])),
            sort=FlowRunSort.START_TIME_DESC,
            limit=1,
        )
        runs = await client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[latest[0].id]))
        )
    return [r.name for r in runs if r.state is not None and r.state.is_completed()]


def _worker_contexts() -> tuple[int, int]:
    """In a Dask worker: the Prefect settings and the API clients that its task runs made."""
    from flows import cluster

    return len(cluster._worker_settings), len(cluster._worker_clients)


def test_shards_run_as_prefect_tasks_on_a_local_dask_cluster(
    prefect_harness: None, synth_archive: Path, model_dir: Path, tmp_path: Path
) -> None:
    from distributed import Client, LocalCluster

    from flows.cluster import DaskCluster
    from flows.score import run_score
    from tasks.scoring.run import score_archive_run
    from tasks.settings import Settings

    settings = Settings(workers=2, score_shard_size=SHARD)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        totals = run_score(
            synth_archive, model_dir, tmp_path / "dask", settings, DaskCluster(cluster.scheduler_address)
        )
        with Client(cluster) as client:
            made = client.run(_worker_contexts)
    # each worker (one thread) built its Prefect settings and API client once however many
    # shards it ran; Prefect's engine alone would build them for every task run
    assert totals.shards_done > len(made) == 2
    assert set(made.values()) <= {(0, 0), (1, 1)} and (1, 1) in made.values()
    shard_runs = [n for n in asyncio.run(_shard_task_runs()) if n.startswith("score-shard")]
    size = settings.shard_records(SHARD, on_cluster=True)  # larger shards on a cluster
    assert size == SHARD * settings.cluster_shard_factor > SHARD
    assert len(shard_runs) == totals.shards_done == -(-totals.counts["records"] // size)

    local = score_archive_run(synth_archive, model_dir, tmp_path / "local", Settings(workers=1))
    a = st.read_table(tmp_path / "dask", "scores").to_pandas().sort_values("record_id").reset_index(drop=True)
    b = (
        st.read_table(tmp_path / "local", "scores")
        .to_pandas()
        .sort_values("record_id")
        .reset_index(drop=True)
    )
    assert len(a) == len(b) == totals.counts["windows"]
    assert a["record_id"].tolist() == b["record_id"].tolist()
    assert a["verdict"].tolist() == b["verdict"].tolist()
    np.testing.assert_allclose(a["probability"].astype(float), b["probability"].astype(float), rtol=1e-5)
    assert a["territory"].fillna("").tolist() == b["territory"].fillna("").tolist()
    assert local.counts == totals.counts
