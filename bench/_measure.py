"""Shared by the benches: run a command to its end and sample the memory of its process tree; the
work folder of a bench and the printing of its figures. (Not a benchmark itself: `make bench`
runs it too, and it does nothing.)"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from tempfile import mkdtemp
from typing import Any

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


@contextmanager
def workdir(given: Path | None, prefix: str) -> Iterator[Path]:
    """The bench's work folder: `given` (`--workdir`, kept for a rerun to reuse), else a temporary
    one removed at the end whatever happens."""
    work = given or Path(mkdtemp(prefix=prefix))
    try:
        yield work
    finally:
        if given is None:
            shutil.rmtree(work, ignore_errors=True)


def emit(figures: dict[str, Any], keep: Path | None = None) -> None:
    """Print the bench's figures as JSON (and keep a copy at `keep`)."""
    text = json.dumps(figures, indent=2, default=str)
    if keep is not None:
        keep.write_text(text)
    print(text)
