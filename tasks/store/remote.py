"""The store protocol on object storage, where there is no atomic rename and no flock.

- Commit: the journal (the list of copies and deletions) is PUT as one object under
  STORE/.journal/ (a single PUT is atomic: the commit point), then carried out by server-side
  copies and deletes, then the store's commit counter (STORE/.commits) is bumped, then the journal
  is deleted. Every step can be repeated, so a writer killed at any point is rolled forward by the
  next one (`tables.recover`).
- Read: `committed_files` lists a table only when no journal is pending and the counter did not
  move while it listed (a sequence lock), so a reader never sees part of a commit; it retries
  for `READ_WAIT_S` and then says why it cannot read.
- Lock: `lease` creates STORE/.lock naming its holder with a conditional PUT (If-None-Match: *,
  which pyarrow's client cannot send: `tasks.store.conditional`) and renews it with If-Match; a
  lock not renewed within `LEASE_S` belongs to a dead run and is taken over, again with If-Match,
  so two runs never both hold it. Without the keys in the environment (a profile, an instance
  role) it falls back to writing then re-reading the lock, which detects a second writer but
  does not exclude one that writes in the same instant.
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
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from tasks.store import conditional
from tasks.store.location import ObjectPath

JOURNALS = ".journal"
COUNTER = ".commits"
LOCK = ".lock"
LEASE_S = 60.0
ORPHAN_AGE_S = 3600.0
READ_WAIT_S = 30.0


class StoreBusyError(RuntimeError):
    """A table could not be listed consistently: a commit stayed pending past READ_WAIT_S."""


class OrphanedCommitError(StoreBusyError):
    """A commit is pending and no run holds the lock: its writer died before finishing it."""


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
        elif not _live(_holder(store / LOCK)) and journals(store):
            raise OrphanedCommitError(f"{store}: a commit left by a run that died is pending")
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


def _parse(raw: bytes | None) -> dict[str, float | str] | None:
    if raw is None:
        return None
    try:
        held = json.loads(raw)
    except ValueError:
        held = None
    return held if isinstance(held, dict) else {"owner": "unreadable", "renewed": 0.0}


def _holder(lock: ObjectPath) -> dict[str, float | str] | None:
    try:
        return _parse(lock.read_bytes())
    except FileNotFoundError:
        return None


def _live(held: dict[str, float | str] | None) -> bool:
    return held is not None and time.time() - float(held.get("renewed", 0.0)) < LEASE_S


def _busy(store: ObjectPath, held: dict[str, float | str] | None) -> RuntimeError:
    owner, renewed = (held.get("owner"), float(held.get("renewed", 0.0))) if held else ("?", 0.0)
    return RuntimeError(
        f"another msaic run is writing to {store} (lease of {owner}, renewed {time.time() - renewed:.0f} s "
        f"ago; the lease of a run that died expires {LEASE_S:g} s after its last renewal)"
    )


def _take_conditional(store: ObjectPath, lock: ObjectPath, body: bytes) -> str:
    """Create the lock object only if there is none; take over a dead run's only if it is still
    the version read. Returns the lock's ETag."""
    etag = conditional.create(lock, body)
    if etag is not None:
        return etag
    found = conditional.read(lock)
    held = _parse(found[0] if found else None)
    if _live(held):
        raise _busy(store, held)
    etag = conditional.replace(lock, body, found[1]) if found else conditional.create(lock, body)
    if etag is None:
        raise RuntimeError(f"another msaic run took the lock of {store} at the same time")
    return etag


def _take_by_reread(store: ObjectPath, lock: ObjectPath, body: bytes, me: str, settle_s: float) -> None:
    """Without conditional writes: write the lock, wait, and check that it is still ours."""
    held = _holder(lock)
    if _live(held):
        raise _busy(store, held)
    lock.write_bytes(body)
    time.sleep(settle_s)
    held = _holder(lock)
    if held is None or held.get("owner") != me:
        raise RuntimeError(f"another msaic run took the lock of {store} at the same time")


@contextmanager
def lease(store: ObjectPath, settle_s: float = 0.2) -> Iterator[None]:
    """Hold STORE/.lock for the block (see the module docstring); RuntimeError when another run
    holds a live lease. With the keys in the environment the lock is taken and renewed by
    conditional PUTs (`tasks.store.conditional`), else by write-and-re-read."""
    lock, me = store / LOCK, process_tag()

    def body() -> bytes:
        return json.dumps({"owner": me, "renewed": time.time()}).encode()

    etag: list[str | None] = [None]
    if conditional.available():
        etag[0] = _take_conditional(store, lock, body())
    else:
        _take_by_reread(store, lock, body(), me, settle_s)
    stop, lost = threading.Event(), threading.Event()

    def renew() -> None:
        while not stop.wait(LEASE_S / 4):
            with suppress(OSError):
                if etag[0] is None:
                    lock.write_bytes(body())
                    continue
                etag[0] = conditional.replace(lock, body(), etag[0])
                if etag[0] is None:  # taken over: this run stalled for longer than LEASE_S
                    lost.set()
                    return

    renewer = threading.Thread(target=renew, name="msaic-store-lease", daemon=True)
    renewer.start()
    try:
        yield
    finally:
        stop.set()
        renewer.join()
        if lost.is_set():
            warnings.warn(f"the lock of {store} was taken over while this run held it", stacklevel=2)
        with suppress(OSError):
            held = _holder(lock)
            if held is not None and held.get("owner") == me:
                lock.unlink(missing_ok=True)
