"""The one shard runner of every stage: `run_sharded(jobs, fn, workers)` maps `fn` over shards.

Bounded: at most `depth` shards (2 x workers by default) are in flight, so memory stays flat in
archive size whatever the number of shards; workers hand back small results (paths, counts).
Ordered (results in job order, what a resumable plan needs) or not (as they finish).
The worker policy lives here and nowhere else: one process in this process when `workers` is 1,
else a process pool forked from a forkserver that imported every stage's shard code once
(`WORKER_MODULES`: workers then start in a fraction of a second), `worker_threads` BLAS and torch
threads per worker, and the allocator of every process that runs shards tuned to keep signal buffers
(`tune_allocator`). `executor` replaces the pool by anything with `submit(fn, job)` returning a
future with `.result()` (a Dask client; `flows.cluster.TaskExecutor`, which makes each shard a
Prefect task on a DaskTaskRunner): every stage's driver takes one, so running a stage on a cluster
is a change of executor, not of stage.
Unordered results need `concurrent.futures` futures (the local pool's).
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import multiprocessing.forkserver
import os
import platform
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any, Protocol, TypeVar

from threadpoolctl import threadpool_info, threadpool_limits

# The shard code of every stage, torch included. A process starts its forkserver once, at its first
# pool, and preloading is fixed then: so it imports every stage's code, and the workers of each later
# stage of the same process (`msaic serve`'s nightly run, the demo, a test session) fork with their
# code imported instead of importing it each (seconds per worker and stage).
WORKER_MODULES: tuple[str, ...] = (
    "tasks.ingest.run",
    "tasks.quality.run",
    "tasks.features.run",
    "tasks.scoring.run",
    "tasks.synth.archive",
    "msaic_model.training.registry",
    "msaic_model.model.inference",
)

J = TypeVar("J")
R = TypeVar("R")


class Executor(Protocol):
    """Where shards run when not in the local pool: `submit(fn, job)` returns a future."""

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> Any: ...


def worker_count(workers: int, jobs: int | None = None, work: int | None = None, per_worker: int = 1) -> int:
    """How many worker processes a stage starts: at most `workers`, no more than there are `jobs`,
    and one per `per_worker` units of `work` (a worker costs about a second to start, so a small
    run stays in one process)."""
    n = workers
    if jobs is not None:
        n = min(n, jobs)
    if work is not None:
        n = min(n, -(-work // max(per_worker, 1)))
    return max(n, 1)


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity, as `taskset` or a container sets it)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def worker_threads(workers: int) -> int:
    """BLAS and torch threads per worker: the CPUs shared out between the workers, at least one."""
    return max(1, usable_cpus() // max(workers, 1))


def limit_threads(threads: int) -> None:
    """Give this process's torch, when torch is loaded, `threads` threads, and its BLAS (numpy's
    and scipy's OpenBLAS) at most as many: a lower limit already set (a Dask nanny's one thread,
    OPENBLAS_NUM_THREADS) stays. A BLAS left alone starts a thread per CPU in every worker: N
    workers on N CPUs then run N² threads that spin against each other once a matrix product is
    large enough to be split (an 800→500 Hz resampling done as one product ran EDF ingest 2.7×
    slower)."""
    blas = [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]
    threadpool_limits(min([threads, *blas]), user_api="blas")
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(threads)


def prepare_worker(threads: int) -> None:
    """The local pool's initializer: the allocator tuned and `threads` BLAS and torch threads (a
    Dask nanny starts its workers with one BLAS thread already; `flows.cluster` tunes their
    allocator)."""
    tune_allocator()
    limit_threads(threads)


# glibc's mallopt parameters and the values the workers run with: allocations up to 64 MiB come
# from the heap, and up to 256 MiB of freed heap stays in the process for reuse.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 64 << 20
TRIM_THRESHOLD = 256 << 20
_allocator_tuned = False


def tune_allocator() -> bool:
    """Let this process reuse freed signal buffers instead of mapping fresh pages for each; True
    where it applied (glibc), once per process. glibc serves an allocation above its mmap
    threshold (128 KiB until it adapts, and in a worker it often never does) with new pages, which
    fault in and are zeroed on first touch, and unmaps them on free: decoding a 47-s 12-lead EDF
    record took 7 ms that way against 1.7 ms from the heap, and every array of every stage pays
    the same. Memory stays bounded: a worker keeps at most `TRIM_THRESHOLD` of freed heap."""
    global _allocator_tuned
    if _allocator_tuned or platform.libc_ver()[0] != "glibc":
        return _allocator_tuned
    libc = ctypes.CDLL(None)
    _allocator_tuned = bool(
        libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) and libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
    return _allocator_tuned


def start_worker_server() -> None:
    """Start this process's forkserver with `WORKER_MODULES` imported in it. Returns at once (the
    imports run in the forkserver process), so that a command can call it while Prefect's
    temporary API boots; a no-op when the forkserver already runs."""
    mp.set_forkserver_preload(list(WORKER_MODULES))
    multiprocessing.forkserver.ensure_running()


def process_pool(workers: int) -> Any:
    """The local pool: `workers` processes forked from this process's forkserver
    (`start_worker_server`)."""
    start_worker_server()
    return ProcessPoolExecutor(
        workers,
        mp_context=mp.get_context("forkserver"),
        initializer=prepare_worker,
        initargs=(worker_threads(workers),),
    )


def _bounded(
    jobs: Iterable[J], fn: Callable[[J], R], executor: Executor, depth: int, ordered: bool
) -> Iterator[R]:
    in_flight: deque[Future[R]] = deque()
    for job in jobs:
        in_flight.append(executor.submit(fn, job))
        if len(in_flight) >= depth:
            yield from _take(in_flight, ordered)
    while in_flight:
        yield from _take(in_flight, ordered)


def _take(in_flight: deque[Future[R]], ordered: bool) -> Iterator[R]:
    """The oldest result (ordered), or every result finished by now (at least one)."""
    if ordered:
        yield in_flight.popleft().result()
        return
    done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
    for future in [f for f in in_flight if f in done]:
        in_flight.remove(future)
        yield future.result()


def run_sharded(
    jobs: Iterable[J],
    fn: Callable[[J], R],
    workers: int,
    *,
    ordered: bool = True,
    executor: Executor | None = None,
    depth: int | None = None,
) -> Iterator[R]:
    """`fn(job)` for every job, as a generator; see the module docstring. `fn` and the jobs must
    pickle when they run in other processes (module-level functions, `functools.partial`)."""
    depth = depth or 2 * max(workers, 1)
    if executor is not None:
        yield from _bounded(jobs, fn, executor, depth, ordered)
    elif workers <= 1:
        tune_allocator()  # the shards run in this process
        for job in jobs:
            yield fn(job)
    else:
        with process_pool(workers) as pool:
            yield from _bounded(jobs, fn, pool, depth, ordered)
