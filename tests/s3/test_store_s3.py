"""The store and archives on S3 (a real SeaweedFS server, tests/s3/conftest.py): the same archive
gives the same store on local disk and on S3; archives are walked alike from a prefix, a zip and a
tar there; the CLI takes s3:// URLs; a commit cut short is hidden from readers and rolled forward;
the lease lets one writer in."""

from __future__ import annotations

import json
import multiprocessing
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from tasks import store as st
from tasks.store import conditional, remote, tables
from tasks.store.location import ObjectPath, location
from tests.s3.conftest import upload

ROOT = Path(__file__).resolve().parents[2]


def _assert_same(a: pa.Table, b: pa.Table, table: str) -> None:
    """Equal tables, NaN equal to NaN in float columns (padded signals, unmeasured indices)."""
    assert a.schema == b.schema, table
    for name in a.column_names:
        x, y, kind = a[name].combine_chunks(), b[name].combine_chunks(), a.schema.field(name).type
        while pa.types.is_list(kind) or pa.types.is_fixed_size_list(kind):
            assert x.value_lengths().equals(y.value_lengths()), f"{table}.{name}"
            x, y, kind = x.flatten(), y.flatten(), kind.value_type
        if pa.types.is_floating(kind):
            np.testing.assert_array_equal(x.to_numpy(False), y.to_numpy(False), err_msg=f"{table}.{name}")
        else:
            assert x.equals(y), f"{table}.{name}"


def _sorted(table: pa.Table, drop: tuple[str, ...] = ()) -> pa.Table:
    table = table.drop_columns([c for c in drop if c in table.column_names])
    key = "record_id" if "record_id" in table.column_names else "source_path"
    return table.sort_by([(key, "ascending"), ("site", "ascending")])


def test_same_archive_same_store_on_disk_and_on_s3(
    small_archive: Path, s3_prefix: ObjectPath, tmp_path: Path
) -> None:
    from flows.features import features
    from flows.ingest import ingest
    from flows.quality import quality
    from flows.report import quality_report
    from tasks.settings import Settings

    archive = upload(small_archive, s3_prefix / "archive")
    disk, s3 = tmp_path / "store", s3_prefix / "store"
    local_totals = ingest(small_archive, disk, settings=Settings(workers=1))
    s3_totals = ingest(archive, s3, settings=Settings(workers=1))
    assert s3_totals == local_totals and sum(s3_totals.records.values()) > 0
    for store in (disk, s3):
        quality(store, Settings(workers=1))
        features(store, Settings(workers=1))
    report = quality_report(s3)
    assert report.exists() and b"<html" in (s3 / "reports" / "quality.html").read_bytes()[:500].lower()
    tables_compared = [
        ("records", ("ingested_at",)),
        ("quarantine", ("at",)),
        ("quality", ("checked_at",)),
        ("features", ("computed_at",)),
    ]
    for table, drop in tables_compared:
        a, b = st.read_table(disk, table), st.read_table(s3, table)
        assert a.num_rows == b.num_rows
        _assert_same(_sorted(a, drop), _sorted(b, drop), table)
    a, b = (_sorted(st.read_table(s, "waveforms")) for s in (disk, s3))
    _assert_same(a, b, "waveforms")
    # a second run adds nothing, as on disk
    again = ingest(archive, s3, settings=Settings(workers=1))
    assert again.unchanged == sum(local_totals.records.values()) and not again.records
    assert st.read_table(s3, "records").num_rows == st.read_table(disk, "records").num_rows
    assert not remote.journals(s3) and remote.commits(s3) == 5  # ingest, qc (2: profile), features, report


def _units(archive: Path | ObjectPath, for_workers: bool = False) -> list[tuple[str, str, str]]:
    """(kind, path, content hash) of every item of the walk; `for_workers`: each item pickled and
    read back as a worker gets it (a unit then carries where its files are on S3)."""
    from tasks.ingest.records import content_sha256
    from tasks.ingest.run import walk_archive
    from tasks.settings import Settings

    out = []
    for walked in walk_archive(archive, Settings(), for_workers):
        item = pickle.loads(pickle.dumps(walked)) if for_workers else walked
        sha = content_sha256(item.files) if hasattr(item, "files") else ""
        out.append((type(item).__name__, item.source_path, sha))
    return sorted(out)


def test_a_prefix_a_zip_and_a_tar_on_s3_walk_like_the_folder(
    small_archive: Path, s3_prefix: ObjectPath, tmp_path: Path
) -> None:
    zipped = Path(shutil.make_archive(str(tmp_path / "a"), "zip", small_archive))
    tarred = tmp_path / "a.tar.gz"
    with tarfile.open(tarred, "w:gz") as tf:
        for path in sorted(small_archive.rglob("*")):
            tf.add(path, path.relative_to(small_archive).as_posix(), recursive=False)
    expected = _units(small_archive)
    prefix = upload(small_archive, s3_prefix / "dir")
    assert _units(prefix) == expected
    assert _units(prefix, for_workers=True) == expected
    assert _units(upload(zipped, s3_prefix / "a.zip")) == expected
    assert _units(upload(tarred, s3_prefix / "a.tar.gz")) == expected


def test_hospital_exports_on_s3_ingest_as_on_disk(
    shared_data: Path, s3_prefix: ObjectPath, tmp_path: Path, prefect_harness: None
) -> None:
    from flows.ingest import ingest
    from tasks.settings import Settings

    hospital = shared_data / "hospital"
    archive = upload(hospital, s3_prefix / "hospital")
    assert _units(archive) == _units(hospital)
    disk, s3 = tmp_path / "store", s3_prefix / "store"
    on_disk = ingest(hospital, disk, site="h", settings=Settings(workers=1))
    on_s3 = ingest(archive, s3, site="h", settings=Settings(workers=1))
    assert on_s3 == on_disk and len(on_s3.formats) >= 6
    for table, drop in [("records", ("ingested_at",)), ("quarantine", ("at",))]:
        _assert_same(
            _sorted(st.read_table(disk, table), drop), _sorted(st.read_table(s3, table), drop), table
        )


def test_cli_ingests_from_and_into_s3(small_archive: Path, s3_prefix: ObjectPath) -> None:
    archive = upload(small_archive, s3_prefix / "archive")
    store = s3_prefix / "store"
    argv = [sys.executable, "-m", "flows.cli", "ingest", str(archive), "--store", str(store)]
    env = os.environ | {"MSAIC_WORKERS": "2", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    secret = os.environ["AWS_SECRET_ACCESS_KEY"]
    assert secret not in done.stdout + done.stderr
    assert all(secret.encode() not in (ObjectPath("s3://" + i.path)).read_bytes() for i in store.files())
    records = st.read_table(store, "records")
    assert records.num_rows > 0 and set(records["site"].to_pylist()) == {"site_a", "site_b"}
    assert not list((store / st.STAGING).rglob("*")), "nothing left staged"
    assert not (store / remote.LOCK).exists(), "the lease was released"
    # a missing archive is a usage error, in one line
    argv[4] = str(s3_prefix / "nope")
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "does not exist" in done.stderr


def _ingest(archive: str, store: str) -> None:
    """An ingest run in a child process: small shards and commits, so that it commits often."""
    from tasks.ingest.run import ingest_archive
    from tasks.settings import Settings

    ingest_archive(location(archive), location(store), Settings(workers=1, shard_size=2, commit_records=2))


def test_an_ingest_killed_on_s3_is_finished_by_the_next_run_every_record_once(
    small_archive: Path, s3_prefix: ObjectPath, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tasks.ingest.run import ingest_archive
    from tasks.settings import Settings

    archive, store = upload(small_archive, s3_prefix / "archive"), s3_prefix / "store"
    child = multiprocessing.get_context("spawn").Process(target=_ingest, args=(str(archive), str(store)))
    child.start()
    deadline = time.monotonic() + 120
    while remote.commits(store) < 2 and child.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(child.pid, signal.SIGKILL)  # type: ignore[arg-type]
    child.join()
    assert child.exitcode == -signal.SIGKILL, "the run ended before it could be killed"
    with pytest.raises(RuntimeError, match="another msaic run is writing"):  # its lease still runs
        ingest_archive(archive, store, Settings(workers=1))
    monkeypatch.setattr(remote, "LEASE_S", 1.0)  # instead of waiting a minute for it to expire
    time.sleep(1.1)
    assert 0 < st.read_table(store, "records").num_rows < 24  # whatever it had committed, whole
    totals = ingest_archive(archive, store, Settings(workers=1))
    records = st.read_table(store, "records")
    ids = records["record_id"].to_pylist()
    assert len(ids) == len(set(ids)) == 24 - sum(totals.quarantined.values())
    assert st.read_table(store, "waveforms").num_rows == len(ids)
    assert not remote.journals(store)


def _staged_commit(store: ObjectPath) -> tables.Commit:
    rows = pa.table({"site": ["s1", "s2"], "source_path": ["a", "b"], "stage": ["read"] * 2})
    rows = rows.append_column("reason", pa.array(["r", "r"])).append_column("detail", pa.array(["", ""]))
    rows = rows.append_column("content_sha256", pa.array([None, None], pa.string()))
    rows = rows.append_column("at", pa.array([0, 0], pa.timestamp("us", tz="UTC")))
    return tables.Commit(moves=st.stage_parts(store, "quarantine", rows))


def test_a_commit_cut_short_is_hidden_from_readers_then_rolled_forward(
    s3_prefix: ObjectPath, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = s3_prefix / "store"
    commit = _staged_commit(store)

    def crash(journal: ObjectPath) -> None:  # the writer dies after its journal and one copy
        source, target = (location(p) for p in commit.moves[0])
        source.replace(target)  # type: ignore[arg-type]
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(tables, "_apply", crash)
        with pytest.raises(KeyboardInterrupt):
            commit.publish(store)
    assert len(remote.journals(store)) == 1
    assert (store / "quarantine").is_dir(), "half of the commit is on the store"
    monkeypatch.setattr(remote, "READ_WAIT_S", 0.5)
    with remote.lease(store), pytest.raises(remote.StoreBusyError):  # a writer holds the lock: wait
        st.read_table(store, "quarantine")
    # no run holds the lock: the writer died, and the reader finishes its commit under the lock
    assert st.read_table(store, "quarantine").num_rows == 2
    assert not remote.journals(store) and remote.commits(store) == 1
    assert not any(s.exists() for s, _ in commit.moves)


def _second_writer_refused(store: ObjectPath) -> None:
    """While one run holds the store's lock a second is refused; the lock is gone afterwards."""
    with (
        st.store_lock(store),
        pytest.raises(RuntimeError, match="another msaic run is writing"),
        st.store_lock(store),
    ):
        pass
    assert not (store / remote.LOCK).exists()


def test_the_lease_lets_one_writer_in_and_outlives_a_dead_one(s3_prefix: ObjectPath) -> None:
    store = s3_prefix / "store"
    _second_writer_refused(store)
    # a lease that was not renewed within LEASE_S belongs to a dead run: taken over
    stale = {"owner": "dead", "renewed": time.time() - remote.LEASE_S - 1}
    (store / remote.LOCK).write_text(json.dumps(stale))
    with st.store_lock(store):
        assert "dead" not in (store / remote.LOCK).read_text()


def _race(store: ObjectPath, runs: int) -> list[str]:
    """`runs` threads take the lease at once; a holder keeps it until every thread has tried (so a
    slow thread cannot come in after a release): what each of them met."""
    start, tried, met = threading.Barrier(runs), threading.Barrier(runs), []

    def one() -> None:
        start.wait()
        try:
            with remote.lease(store):
                tried.wait(timeout=120)
            met.append("held")
        except RuntimeError:
            met.append("refused")
            tried.wait(timeout=120)

    threads = [threading.Thread(target=one) for _ in range(runs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return met


def test_conditional_puts_let_exactly_one_of_racing_writers_in(s3_prefix: ObjectPath) -> None:
    assert conditional.available()
    assert sorted(_race(s3_prefix / "fresh", 4)) == ["held", "refused", "refused", "refused"]
    stale = {"owner": "dead", "renewed": time.time() - remote.LEASE_S - 1}
    (s3_prefix / "stale" / remote.LOCK).write_text(json.dumps(stale))
    assert sorted(_race(s3_prefix / "stale", 4)) == ["held", "refused", "refused", "refused"]


def test_without_keys_in_the_environment_the_lease_still_refuses_a_second_writer(
    s3_prefix: ObjectPath, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(conditional, "available", lambda: False)  # as with a profile or a role
    store = s3_prefix / "store"
    _second_writer_refused(store)


def test_store_check_and_repair_on_s3_set_a_damaged_part_aside(
    small_archive: Path, s3_prefix: ObjectPath
) -> None:
    from tasks.ingest.run import ingest_archive
    from tasks.settings import Settings
    from tasks.store.repair import LOST_FILE, check_store, repair_store

    store = s3_prefix / "store"
    ingest_archive(small_archive, store, Settings(workers=1))
    assert check_store(store) == []
    part = next(iter(sorted((store / "records").rglob("part-*.parquet"))))
    part.write_bytes(b"not parquet")
    kinds = sorted(f.kind for f in check_store(store))
    assert kinds == ["paired_part", "unreadable_part"]
    done = repair_store(store)
    assert done.folder is not None and (done.folder / LOST_FILE).exists()
    assert check_store(store) == [] and not part.exists()
    assert st.read_table(store, "records").num_rows == st.read_table(store, "waveforms").num_rows > 0
