"""The progress display of long CLI runs: a transient spinner that counts the work done and its rate."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn


@contextmanager
def counting(verb: str, unit: str, show: bool) -> Iterator[Callable[[int], None] | None]:
    """Yield the `on_progress` callback a task takes ("checking: 1,200 windows, 85/s"), or None
    when nothing is shown (tests, scheduled runs)."""
    if not show:
        yield None
        return
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), transient=True
    ) as bar:
        job = bar.add_task(f"{verb}: 0 {unit}", total=None)
        started, done = time.perf_counter(), [0]

        def advance(n: int) -> None:
            done[0] += n
            rate = done[0] / max(time.perf_counter() - started, 1e-9)
            bar.update(job, description=f"{verb}: {done[0]:,} {unit}, {rate:,.0f}/s")

        yield advance
