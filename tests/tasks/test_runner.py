"""The shard runner: order, bounds, the worker policy and the pluggable executor, on real processes."""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from typing import Any

import pytest

from tasks.runner import run_sharded, worker_count, worker_threads


def _square_pid(x: int, delay: float = 0.0) -> tuple[int, int]:
    time.sleep(delay * (x % 3))
    return x * x, os.getpid()


def test_serial_runs_in_this_process_in_order() -> None:
    out = list(run_sharded(range(5), _square_pid, 1))
    assert [r for r, _ in out] == [0, 1, 4, 9, 16]
    assert {pid for _, pid in out} == {os.getpid()}


def test_a_pool_keeps_job_order_and_runs_elsewhere() -> None:
    out = list(run_sharded(range(8), partial(_square_pid, delay=0.05), 2, start_method="spawn"))
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


def test_an_error_in_a_shard_reaches_the_caller() -> None:
    with pytest.raises(ZeroDivisionError):
        list(run_sharded([1, 0], partial(divmod, 1), 1))
