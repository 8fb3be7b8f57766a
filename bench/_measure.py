"""Shared by the benches: run a command to its end and sample the memory of its process tree.
(Not a benchmark itself: `make bench` runs it too, and it does nothing.)"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import psutil


def run_measured(
    cmd: Sequence[str], cwd: Path | None = None, env: Mapping[str, str] | None = None
) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB, summed over the process and all its descendants) of one
    command; RuntimeError with the tail of its stderr when it fails."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stop, peak = threading.Event(), [0]

    def sample() -> None:
        root = psutil.Process(proc.pid)
        while not stop.is_set():
            try:
                tree = [root, *root.children(recursive=True)]
                peak[0] = max(peak[0], sum(p.memory_info().rss for p in tree if p.is_running()))
            except psutil.Error:
                pass
            time.sleep(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    _, err = proc.communicate()  # drains stderr, so a chatty command cannot block on a full pipe
    wall = time.perf_counter() - start
    stop.set()
    sampler.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} failed: {err.decode(errors='replace')[-2000:]}")
    return wall, peak[0] / 2**20
