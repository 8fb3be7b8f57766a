"""Stages on a Dask cluster: the one place where shards become Prefect tasks on prefect-dask's
`DaskTaskRunner`.

`on_cluster(flow, cluster)` gives a flow the runner of a `DaskCluster` (a scheduler address, or
a local cluster of N single-threaded worker processes on 127.0.0.1); inside that flow a stage
calls `run_stage`, which hands the stage driver a `TaskExecutor`, so that the one shard runner
(`tasks.runner.run_sharded`) submits each shard as a Prefect task run on the cluster. Workers
hand back small results (staged paths, counts); the driver in the flow's process stays the
single committer. Dask resubmits the shard of a lost worker; the parent commits only what a
future returned, so a lost attempt's staged files are never published.

Worker processes must report to the Prefect API the flow reports to: `workers_report_here`
starts the temporary API in this process when none is configured and exports its address to the
processes a local cluster spawns (a remote cluster needs a Prefect server: PREFECT_API_URL).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from prefect import Flow, Task, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State
from prefect.context import (
    AssetContext,
    FlowRunContext,
    SettingsContext,
    SyncClientContext,
    serialize_context,
)
from prefect.futures import PrefectFuture
from prefect.task_engine import run_task_sync

from tasks.runner import tune_allocator

R = TypeVar("R")


@dataclass(frozen=True)
class DaskCluster:
    """Where shards run: the scheduler at `address`, else `local_workers` local processes."""

    address: str | None = None
    local_workers: int = 0

    def task_runner(self) -> Any:
        """prefect-dask's `DaskTaskRunner` for this cluster (a local one: one thread per worker
        process, no dashboard, bound to 127.0.0.1)."""
        from prefect_dask import DaskTaskRunner

        if self.address:
            return DaskTaskRunner(address=self.address)
        return DaskTaskRunner(
            cluster_kwargs={
                "n_workers": self.local_workers,
                "threads_per_worker": 1,
                "processes": True,
                "dashboard_address": None,
                "host": "127.0.0.1",
            }
        )


def cluster_threads(address: str) -> int:
    """Worker threads of the cluster at `address` (how many shards it runs at once)."""
    from distributed import Client

    with Client(address, timeout="30s") as client:
        return max(1, sum(client.nthreads().values()))


@contextmanager
def workers_report_here() -> Iterator[None]:
    """Make Dask workers started from here report to this process's Prefect API. Without
    PREFECT_API_URL each worker process would boot a temporary API of its own on one SQLite file
    (slow, lock errors): start this process's temporary API and export its address (to the
    processes started meanwhile; this process's environment is restored after)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    url = PREFECT_API_URL.value()
    if not url:
        from prefect.server.api.server import SubprocessASGIServer

        server = SubprocessASGIServer()  # the one the CLI started while it imported, if it did
        server.start()
        url = server.api_url
    before = os.environ.get("PREFECT_API_URL")
    os.environ["PREFECT_API_URL"] = url
    try:
        with temporary_settings({PREFECT_API_URL: url}):
            yield
    finally:
        if before is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = before


@contextmanager
def on_cluster(the_flow: Flow, cluster: DaskCluster | None) -> Iterator[Flow]:
    """`the_flow` with the task runner of `cluster` (unchanged when None), its workers reporting
    to this process's Prefect API while the block runs."""
    if cluster is None:
        yield the_flow
        return
    with workers_report_here(), warnings.catch_warnings():
        # a shard may carry the bytes of its inputs, read by this process, where the workers do
        # not see the archive: by design, not a graph Dask could load itself (its warning at
        # every shard over 10 MB)
        warnings.filterwarnings("ignore", "Sending large graph", UserWarning)
        yield the_flow.with_options(task_runner=cluster.task_runner())


class ShardCall:
    """One shard's call (`fn(*args)`), the one parameter of its Prefect task. A plain object, not
    a dataclass, so that Prefect does not walk the shard's inputs (which may carry the bytes of
    its records) when it resolves the task's parameters."""

    __slots__ = ("args", "fn")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.fn, self.args = fn, args

    def __call__(self) -> Any:
        tune_allocator()  # the Dask worker's process, as the local pool's initializer does
        return self.fn(*self.args)


def run_shard_call(call: ShardCall) -> Any:
    """The Prefect task of every shard on Dask: run its call (in a worker)."""
    return call()


# A worker's Prefect settings (one per distinct settings of the submitting flow) and, per worker
# thread, its API client, made once: Prefect's task engine rebuilds both for every task run it
# hydrates (a settings model validated from its sources, and two HTTP clients that each load the
# CA bundle), which was more than half of a worker's CPU for a task run's orchestration.
_worker_settings: dict[str, SettingsContext] = {}
_worker_clients: dict[tuple[int, str], SyncClientContext] = {}  # (thread, settings) → open client


@contextmanager
def _reused_contexts(settings: dict[str, Any]) -> Iterator[None]:
    """Enter this worker's settings context for `settings` (serialized) and this thread's
    client context made under them, both created on first use and kept for the process."""
    key = json.dumps(settings, sort_keys=True, default=str)
    if key not in _worker_settings:
        _worker_settings[key] = SettingsContext(**settings)
    with _worker_settings[key]:
        mine = (threading.get_ident(), key)
        if mine not in _worker_clients:
            _worker_clients[mine] = SyncClientContext().__enter__()  # open for the thread's life
        token = SyncClientContext.__var__.set(_worker_clients[mine])
        try:
            yield
        finally:
            SyncClientContext.__var__.reset(token)


def run_task_in_worker(
    shard_task: Task[..., Any], task_run_id: uuid.UUID, call: ShardCall, context: dict[str, Any]
) -> State:
    """Run one shard's Prefect task run in a Dask worker, as prefect-dask does, but with the
    worker's settings and client reused (`_reused_contexts`); its final state goes back."""
    context = dict(context)
    with _reused_contexts(context.pop("settings_context")):
        return run_task_sync(
            shard_task,
            task_run_id=task_run_id,
            parameters={"call": call},
            dependencies={"call": set()},
            context=context,
            return_type="state",
        )


class TaskExecutor:
    """The shard runner's executor on the flow's `DaskTaskRunner`: `submit(fn, job)` becomes one
    Prefect task run named `name` of `fn(job)` (`run_shard_call`), submitted to the runner's
    Dask client as `run_task_in_worker` with what prefect-dask's `PrefectDaskClient.submit` sends
    (task, task run id, parameters, serialized context). The context is serialized once per
    stage, only its per-task-run asset part anew (the whole took about 25 ms of this process a shard)."""

    def __init__(self, name: str) -> None:
        self.task = task(run_shard_call, name=name, cache_policy=NO_CACHE)
        self._context: dict[str, Any] | None = None  # the flow run's, at the first submit

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> PrefectFuture:
        from prefect_dask.task_runners import PrefectDaskFuture

        if self._context is None:
            self._context = serialize_context()
        task_run_id = uuid.uuid4()
        assets = AssetContext.from_task_and_inputs(
            self.task, task_run_id, task_inputs={"call": set()}, copy_to_child_ctx=True
        )
        future = FlowRunContext.get().task_runner.client.submit(
            run_task_in_worker,
            self.task,
            task_run_id,
            ShardCall(fn, args),
            {**self._context, "asset_context": assets.serialize()},
            key=f"{self.task.name}-{task_run_id.hex}",  # unique: Dask hashes no shard bytes
        )
        return PrefectDaskFuture(wrapped_future=future, task_run_id=task_run_id)


def on_dask() -> bool:
    """Whether the running flow's task runner is prefect-dask's `DaskTaskRunner`."""
    ctx = FlowRunContext.get()
    if ctx is None or "prefect_dask" not in sys.modules:  # on_cluster imports it
        return False
    from prefect_dask import DaskTaskRunner

    return isinstance(ctx.task_runner, DaskTaskRunner)


def run_stage(stage: Task[..., R], shard_task: str, *args: Any, **kwargs: Any) -> R:
    """Run a stage driver (`stage`, its Prefect task) from its flow: on a Dask task runner in the
    flow's process, one Prefect task named `shard_task` per shard; else as the task `stage`,
    which runs the local pool."""
    if on_dask():
        return stage.fn(*args, executor=TaskExecutor(shard_task), **kwargs)
    return stage(*args, **kwargs)
