"""Leftovers of runs that died, and damaged part files, on real stores and real processes:
- what a killed process staged is rolled forward (a journal) or deleted by the next run that takes
  the store lock; what a live process is staging is kept; a failed run removes its own;
- `msaic store check` finds a half-truncated part (which blocks every read of its table) and
  `msaic store repair` moves it, and what depends on it, to lost+found with LOST.json, after which
  the table reads again and a re-ingest makes the store whole."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow as pa
import pytest

from flows.cli import main
from tasks import store as st
from tasks.ingest.run import ingest_archive
from tasks.settings import Settings
from tasks.store.repair import LOST_FILE, LOST_FOUND, check_store, repair_store
from tests.helpers import copy_ludb
from tests.tasks.review.test_worklist import commit_scores, score_rows

N_RECORDS = 6


def _staged_files(store: Path) -> list[Path]:
    return [p for p in (store / st.STAGING).rglob("*") if p.is_file()]


def _stage_in_subprocess(store: Path, code: str) -> subprocess.Popen[str]:
    """A real process that stages into `store` (its `folder`, `staged`) then runs `code`."""
    script = textwrap.dedent(f"""
        import os, signal, sys
        from pathlib import Path
        from tasks import store as st
        folder = st.staging_dir(Path({str(store)!r}))
        staged = folder / "part.parquet"
        staged.write_bytes(b"PAR1 staged, never committed")
        print(folder, flush=True)
    """) + textwrap.dedent(code)
    return subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True
    )


def test_a_killed_runs_staging_is_finished_or_deleted_and_a_live_ones_kept(tmp_path: Path) -> None:
    store = tmp_path / "store"
    killed = _stage_in_subprocess(store, "os.kill(os.getpid(), signal.SIGKILL)")
    journal = """
        final = Path({final!r})
        moved = folder / "moved.parquet"
        moved.write_bytes(b"PAR1 committed")
        (folder / "j.commit.json").write_text('{{"moves": [["%s", "%s"]], "deletes": []}}' % (moved, final))
        os.kill(os.getpid(), signal.SIGKILL)
    """
    final = store / "quality" / "site=a" / "part-1.parquet"
    half_done = _stage_in_subprocess(store, journal.format(final=str(final)))
    live = _stage_in_subprocess(store, "sys.stdin.read()")
    dead_folders = [Path(p.stdout.readline().strip()) for p in (killed, half_done)]
    live_folder = Path(live.stdout.readline().strip())
    for proc in (killed, half_done):
        assert proc.wait() == -signal.SIGKILL
    try:
        with st.store_lock(store):
            assert final.read_bytes() == b"PAR1 committed"  # the killed commit was rolled forward
            assert not any(f.exists() for f in dead_folders)
            assert (live_folder / "part.parquet").is_file()  # a live writer's staging is left alone
    finally:
        live.communicate("")
    with st.store_lock(store):
        assert not live_folder.exists()  # its owner has ended since
    assert _staged_files(store) == []


def test_a_failed_run_removes_what_it_staged(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="disk gone"), st.store_lock(tmp_path):
        st.stage_parts(tmp_path, "scores", score_rows(["a.hea", "b.hea"]))
        assert len(_staged_files(tmp_path)) == 1
        raise RuntimeError("disk gone")
    assert _staged_files(tmp_path) == []


@pytest.fixture
def ludb_store(tmp_path: Path) -> Path:
    """Six real LUDB records ingested in three commits (so records/ and waveforms/ hold three
    parts each); the archive lies beside the store."""
    archive = tmp_path / "archive"
    copy_ludb(archive, range(1, N_RECORDS + 1))
    store = tmp_path / "store"
    ingest_archive(archive, store, Settings(workers=1, shard_size=2, commit_records=2), site="ludb")
    return store


def _cut(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_repair_sets_a_truncated_records_part_aside_and_reingest_makes_the_store_whole(
    ludb_store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = ludb_store
    parts = sorted(st.table_dir(store, "records").rglob("*.parquet"))
    assert len(parts) == 3
    lost = parts[0]
    pair = st.part_path(store, "waveforms", "ludb", lost.stem.removeprefix("part-"))
    _cut(lost)
    with pytest.raises(pa.ArrowException):  # the damaged part blocks every read of the table
        st.read_table(store, "records")

    assert main(["store", "check", "--store", str(store)]) == 1
    found = {f.kind: f for f in check_store(store)}
    assert set(found) == {"unreadable_part", "paired_part"}
    assert found["unreadable_part"].path == str(lost.relative_to(store))
    assert found["paired_part"].path == str(pair.relative_to(store))
    assert "unreadable_part" in capsys.readouterr().out

    assert main(["store", "repair", "--store", str(store)]) == 0
    [folder] = list((store / LOST_FOUND).iterdir())
    record = json.loads((folder / LOST_FILE).read_text())
    assert {m["kind"]: m["path"] for m in record["moved"]} == {k: f.path for k, f in found.items()}
    assert all(m["bytes"] > 0 for m in record["moved"])
    assert (folder / found["unreadable_part"].path).is_file() and not lost.exists() and not pair.exists()
    assert st.read_table(store, "records").num_rows == N_RECORDS - 2  # readable again, two records lost
    assert main(["store", "check", "--store", str(store)]) == 0

    ingest_archive(store.parent / "archive", store, Settings(workers=1), site="ludb")
    records = st.read_table(store, "records", ["source_path", "window", "record_id"]).to_pandas()
    waves = st.read_table(store, "waveforms", ["record_id"]).to_pandas()
    assert len(records) == N_RECORDS and records["source_path"].is_unique  # every record, once
    assert sorted(records["record_id"]) == sorted(waves["record_id"])


def test_a_lost_scores_part_takes_the_ledger_with_it(tmp_path: Path) -> None:
    """In a scoring OUT the ledger says which shards are done: with a scores part lost, it is set
    aside too, so that the next `msaic score` scores the lost inputs again."""
    out = tmp_path / "out"
    kept = commit_scores(out, score_rows(["a.hea", "b.hea"], site="a"))
    [lost] = commit_scores(out, score_rows(["c.hea"], site="b"))
    (out / "ledger").mkdir()
    (out / "ledger" / "k1.json").write_text("{}")
    _cut(lost)
    repair = repair_store(out)
    assert {f.kind for f in repair.moved} == {"unreadable_part", "ledger"}
    assert not (out / "ledger").exists() and (repair.folder / "ledger" / "k1.json").is_file()
    assert kept[0].exists()
    assert st.read_table(out, "scores", ["source_path"])["source_path"].to_pylist() == ["a.hea", "b.hea"]


def test_repair_moves_a_killed_processs_staging_aside(tmp_path: Path) -> None:
    store = tmp_path / "store"
    killed = _stage_in_subprocess(store, "os.kill(os.getpid(), signal.SIGKILL)")
    folder = Path(killed.stdout.readline().strip())
    killed.wait()
    [finding] = check_store(store)
    assert finding.kind == "orphan_staging" and finding.path == str(folder.relative_to(store))
    repair = repair_store(store)
    assert (repair.folder / finding.path / "part.parquet").is_file()
    assert _staged_files(store) == [] and check_store(store) == []
