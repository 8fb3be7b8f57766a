"""The shard runner: order, bounds, the worker policy and the pluggable executor, on real processes."""

from __future__ import annotations

import ctypes
import os
import platform
import subprocess
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from typing import Any

import pytest

from tasks.runner import run_sharded, tune_allocator, usable_cpus, worker_count, worker_threads


def _square_pid(x: int, delay: float = 0.0) -> tuple[int, int]:
    time.sleep(delay * (x % 3))
    return x * x, os.getpid()


def test_serial_runs_in_this_process_in_order() -> None:
    out = list(run_sharded(range(5), _square_pid, 1))
    assert [r for r, _ in out] == [0, 1, 4, 9, 16]
    assert {pid for _, pid in out} == {os.getpid()}


def test_a_pool_keeps_job_order_and_runs_elsewhere() -> None:
    out = list(run_sharded(range(8), partial(_square_pid, delay=0.05), 2))
    assert [r for r, _ in out] == [x * x for x in range(8)]
    assert os.getpid() not in {pid for _, pid in out}


class _Counting:
    """An executor (threads) that records how many jobs were submitted and not yet taken back."""

    def __init__(self) -> None:
        self.pool = ThreadPoolExecutor(4)
        self.submitted = 0
        self.lock = threading.Lock()

    def submit(self, fn: Any, /, *args: Any) -> Future:
        with self.lock:
            self.submitted += 1
        return self.pool.submit(fn, *args)


def test_an_executor_is_bounded_and_unordered_returns_everything() -> None:
    ex = _Counting()
    taken = 0

    def jobs():
        for i in range(20):
            assert ex.submitted - taken <= 4  # depth 2 x workers
            yield i

    results = []
    for r, _ in run_sharded(jobs(), partial(_square_pid, delay=0.01), 2, executor=ex, ordered=False):
        taken += 1
        results.append(r)
    assert sorted(results) == [x * x for x in range(20)]
    assert ex.submitted == 20


def test_worker_policy() -> None:
    assert worker_count(8) == 8
    assert worker_count(8, jobs=3) == 3
    assert worker_count(8, jobs=0) == 1
    assert worker_count(8, jobs=100, work=2500, per_worker=1000) == 3
    assert worker_threads(1) == (os.cpu_count() or 1)
    assert worker_threads(10_000) == 1


def _threads(_job: int) -> tuple[int, int]:
    """This process's BLAS and torch threads."""
    import torch
    from threadpoolctl import threadpool_info

    (blas,) = {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}
    return blas, torch.get_num_threads()


def test_pool_workers_share_the_cpus_out_between_them() -> None:
    """Each of N pool workers gets the CPUs / N BLAS and torch threads, not a thread per CPU each
    (both libraries' default)."""
    workers = 2
    if usable_cpus() < workers:
        pytest.skip("one CPU: nothing to share out")
    assert set(run_sharded(range(4), _threads, workers)) == {(worker_threads(workers),) * 2}


def test_a_lower_blas_limit_already_set_stays() -> None:
    """OPENBLAS_NUM_THREADS=1 (what a Dask nanny sets) is not raised by the worker policy."""
    code = "from tasks.runner import limit_threads; from tests.tasks.test_runner import _threads; "
    code += "limit_threads(2); print(*_threads(0))"
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.split() == ["1", "2"]


def test_an_error_in_a_shard_reaches_the_caller() -> None:
    with pytest.raises(ZeroDivisionError):
        list(run_sharded([1, 0], partial(divmod, 1), 1))


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _mapped_growth(mib: int) -> int:
    """Bytes glibc serves from fresh mmaps (`hblkhd`) for one array of `mib` MiB, in this process."""
    import numpy as np

    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = _MallInfo2
    before = libc.mallinfo2().hblkhd
    block = np.ones(mib << 20, np.uint8)
    grown = libc.mallinfo2().hblkhd - before
    del block
    return int(grown)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt and mallinfo2 are glibc's")
def test_pool_workers_keep_signal_buffers_in_the_heap() -> None:
    """A fresh process maps a 16 MiB array afresh (and unmaps it on free); a pool worker, tuned at
    start, serves it from the heap."""
    code = "from tests.tasks.test_runner import _mapped_growth; print(_mapped_growth(16))"
    fresh = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(fresh.stdout) >= 16 << 20
    in_pool = list(run_sharded([16, 16], _mapped_growth, 2))
    assert in_pool == [0, 0]
    assert tune_allocator() and _mapped_growth(16) == 0  # and in this process, once tuned
