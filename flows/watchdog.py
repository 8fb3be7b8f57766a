"""The reaper of one `msaic` run: a small process that outlives the CLI only to clean up after it.

The CLI starts it first (`python -I -S watchdog.py PID`, the standard library alone), with a pipe
on its standard input. Every POLL_S it notes the CLI's descendants from /proc: the temporary
Prefect API server, the forkserver and its pool workers, a local Dask cluster. When the CLI ends
it writes a byte and the reaper leaves. When the pipe closes without that byte and the reaper is
adopted by another parent, the CLI was killed (SIGKILL included): the reaper terminates the
descendants it saw that are still alive, what they started since, and what the CLI started in
its last moments (adopted by the same reaper, in the CLI's session and process group, started
after it), then kills what has not stopped GRACE_S later. Linux only (/proc); elsewhere the CLI
runs without it.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import time
from collections import defaultdict
from contextlib import suppress
from pathlib import Path

POLL_S = 0.5
GRACE_S = 2.0

Proc = tuple[int, int]  # (pid, start time in clock ticks): a pid alone may have been reused
Stat = tuple[int, int, int, int]  # (parent pid, process group, session, start time)


def read_stat(pid: int | str) -> Stat | None:
    """A live (not zombie) process's parent, group, session and start time; None if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()
    except OSError:
        return None
    if fields[0] in (b"Z", b"X"):
        return None
    return int(fields[1]), int(fields[2]), int(fields[3]), int(fields[19])


def process_table() -> dict[int, Stat]:
    """Every live process, from /proc."""
    stats = {int(p.name): read_stat(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()}
    return {pid: stat for pid, stat in stats.items() if stat is not None}


def descendants(roots: set[int], table: dict[int, Stat]) -> set[Proc]:
    """The processes below the pids `roots` (the roots themselves excluded)."""
    children: dict[int, list[int]] = defaultdict(list)
    for pid, stat in table.items():
        children[stat[0]].append(pid)
    found: set[Proc] = set()
    todo = list(roots)
    while todo:
        for child in children.get(todo.pop(), []):
            if (child, table[child][3]) not in found:
                found.add((child, table[child][3]))
                todo.append(child)
    return found


def watch(parent: int) -> set[Proc] | None:
    """Follow the parent until it says goodbye (None) or dies (its last known descendants)."""
    known: set[Proc] = set()
    while os.getppid() == parent:
        known = {p for p in descendants({parent}, process_table()) if p[0] != os.getpid()}
        ready, _, _ = select.select([0], [], [], POLL_S)
        if ready:
            return None if os.read(0, 1) else known
    return known


def targets(known: set[Proc], parent: Stat) -> set[Proc]:
    """What to stop after the parent died: its known descendants still alive, the processes it
    started after the last look (now children of our own new parent, in its session and group,
    started after it), and everything below those."""
    table = process_table()
    alive = {p for p in known if p[0] in table and table[p[0]][3] == p[1]}
    adopter, _, group, session, started = os.getppid(), *parent
    late = {
        (pid, stat[3])
        for pid, stat in table.items()
        if stat[0] == adopter and stat[1:3] == (group, session) and stat[3] >= started and pid != os.getpid()
    }
    found = alive | late
    return found | descendants({pid for pid, _ in found}, table)


def stop(procs: set[Proc]) -> None:
    """SIGTERM, then SIGKILL for those still running GRACE_S later."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid, _ in procs:
            with suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + GRACE_S
        while procs and time.monotonic() < deadline:
            table = process_table()
            procs = {p for p in procs if p[0] in table and table[p[0]][3] == p[1]}
            time.sleep(0.05)
        if not procs:
            return


def main(parent: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole job: the CLI handles it
    stat = read_stat(parent)
    if stat is None:
        return
    known = watch(parent)
    deadline = time.monotonic() + GRACE_S
    while known is not None and os.getppid() == parent and time.monotonic() < deadline:
        time.sleep(0.01)  # a dying parent closes its files before its children are adopted
    if known is not None and os.getppid() != parent:
        stop(targets(known, stat))


if __name__ == "__main__":
    main(int(sys.argv[1]))
