"""The store protocol on object storage, where there is no atomic rename and no flock.

- Commit: the journal (the list of copies and deletions) is PUT as one object under
  STORE/.journal/ (a single PUT is atomic: the commit point), then carried out by server-side
  copies and deletes, then the store's commit counter (STORE/.commits) is bumped, then the journal
  is deleted. Every step can be repeated, so a writer killed at any point is rolled forward by the
  next one (`tables.recover`).
- Read: `committed_files` lists a table only when no journal is pending and the counter did not
  move while it listed (a sequence lock), so a reader never sees part of a commit; it retries
  for `READ_WAIT_S` and then says why it cannot read.
- Lock: `lease` writes STORE/.lock naming its holder and renews it; a lock not renewed within
  `LEASE_S` belongs to a dead run and is taken over. Writing then re-reading it detects a second
  writer but does not exclude one that writes in the same instant: pyarrow's S3 client cannot send
  a conditional PUT (If-None-Match), so one writer per store is assumed, as it is run.
- Staging: STORE/.staging/<host>-<pid>-<random>/ per process; with no lock to tell a live
  process's folder from a dead one's, a folder whose newest object is older than `ORPHAN_AGE_S`
  is an orphan.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from tasks.store.location import ObjectPath

JOURNALS = ".journal"
COUNTER = ".commits"
LOCK = ".lock"
LEASE_S = 60.0
ORPHAN_AGE_S = 3600.0
READ_WAIT_S = 30.0


class StoreBusyError(RuntimeError):
    """A table could not be listed consistently: a commit stayed pending past READ_WAIT_S."""


def process_tag() -> str:
    """Who this process is, in names of staging folders and locks (host, pid, a random part)."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def journals(store: ObjectPath) -> list[ObjectPath]:
    """The commit journals published and not yet carried out to the end."""
    return sorted((store / JOURNALS).glob("*.commit.json"))


def commits(store: ObjectPath) -> int:
    """How many commits the store has carried out (0 before the first)."""
    counter = store / COUNTER
    try:
        return int(counter.read_text())
    except FileNotFoundError:
        return 0


def count_commit(store: ObjectPath) -> None:
    """Bump the commit counter (by the one writer, after a journal's steps are all done)."""
    (store / COUNTER).write_text(str(commits(store) + 1))


def committed_files(store: ObjectPath, folder: ObjectPath) -> list[str]:
    """The Parquet objects under `folder` as of one moment between commits (see the docstring)."""
    deadline = time.monotonic() + READ_WAIT_S
    while True:
        before = commits(store)
        if not journals(store):
            files = [i.path for i in folder.files() if i.path.endswith(".parquet")]
            if not journals(store) and commits(store) == before:
                return [f for f in files if not f.rsplit("/", 1)[-1].startswith(".")]
        if time.monotonic() > deadline:
            raise StoreBusyError(
                f"{store}: a commit has been pending for {READ_WAIT_S:g} s; if no run is writing, "
                "the next msaic run that writes to the store finishes it"
            )
        time.sleep(0.2)


def orphan_folders(store: ObjectPath, staging: str, own: ObjectPath | None) -> list[ObjectPath]:
    """Staging folders of other processes whose newest object is older than ORPHAN_AGE_S."""
    now = time.time()
    orphans = []
    for folder in (store / staging).iterdir():
        if folder == own:
            continue
        stamps = [i.mtime.timestamp() for i in folder.files() if i.mtime is not None]
        if not stamps or now - max(stamps) > ORPHAN_AGE_S:
            orphans.append(folder)
    return orphans


def _holder(lock: ObjectPath) -> dict[str, float | str] | None:
    try:
        held = json.loads(lock.read_text())
    except FileNotFoundError:
        return None
    except ValueError:
        return {"owner": "unreadable", "renewed": 0.0}
    return held if isinstance(held, dict) else {"owner": "unreadable", "renewed": 0.0}


@contextmanager
def lease(store: ObjectPath, settle_s: float = 0.2) -> Iterator[None]:
    """Hold STORE/.lock for the block (see the module docstring); RuntimeError when another run
    holds a live lease."""
    lock, me = store / LOCK, process_tag()
    held = _holder(lock)
    if held is not None and time.time() - float(held.get("renewed", 0.0)) < LEASE_S:
        raise RuntimeError(f"another msaic run is writing to {store} (lease of {held.get('owner')})")
    lock.write_text(json.dumps({"owner": me, "renewed": time.time()}))
    time.sleep(settle_s)
    held = _holder(lock)
    if held is None or held.get("owner") != me:
        raise RuntimeError(f"another msaic run took the lock of {store} at the same time")
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(LEASE_S / 4):
            with suppress(OSError):
                lock.write_text(json.dumps({"owner": me, "renewed": time.time()}))

    renewer = threading.Thread(target=renew, name="msaic-store-lease", daemon=True)
    renewer.start()
    try:
        yield
    finally:
        stop.set()
        renewer.join()
        with suppress(OSError):
            held = _holder(lock)
            if held is not None and held.get("owner") == me:
                lock.unlink(missing_ok=True)
