"""`kill -9` of a real `msaic` process leaves no process behind: not the pool workers and their
forkserver during an ingest, not the temporary Prefect API server while it boots. The processes
are counted from /proc by session (the CLI runs in a session of its own). The next run then
cleans what the killed one had staged and ingests every record once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from flows.cli import main
from tasks import store as st
from tests.helpers import copy_ludb

ROOT = Path(__file__).resolve().parents[2]
N_RECORDS = 16


def session_processes(session: int) -> dict[int, str]:
    """pid → command line of the live (not zombie) processes of a session."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_bytes().rsplit(b")", 1)[1].split()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if int(fields[3]) == session and fields[0] not in (b"Z", b"X"):
            found[int(entry.name)] = command
    return found


def kill_when(
    argv: list[str], env: dict[str, str], ready: Callable[[dict[int, str]], bool], logs: Path
) -> dict:
    """Start `msaic` in a session of its own; once `ready(its processes)`, SIGKILL the CLI alone.
    Returns its processes just before the kill and those still alive 5 s after."""
    with (logs / "stdout").open("w") as out, (logs / "stderr").open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "flows.cli", *argv],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline and not ready(session_processes(proc.pid)):
        time.sleep(0.05)
    before = session_processes(proc.pid)
    assert proc.poll() is None, f"the run ended before the kill: {(logs / 'stderr').read_text()[-2000:]}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 5
    while session_processes(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = session_processes(proc.pid)
    for pid in left:  # do not leave them to the rest of the session either
        os.kill(pid, signal.SIGKILL)
    return {"pid": proc.pid, "before": before, "left": left}


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    folder = tmp_path / "archive"
    copy_ludb(folder, range(1, N_RECORDS + 1))
    return folder


def test_kill_9_during_ingest_leaves_no_process_and_the_next_run_cleans_up(
    archive: Path, tmp_path: Path, prefect_harness: None
) -> None:
    from prefect.settings import PREFECT_API_URL

    store = tmp_path / "store"
    env = os.environ | {"PREFECT_API_URL": PREFECT_API_URL.value(), "MSAIC_SHARD_SIZE": "2"}
    argv = ["ingest", str(archive), "--store", str(store), "--site", "ludb", "--workers", "2"]

    def staging(_: dict[int, str]) -> bool:
        return any((store / st.STAGING).rglob("*.parquet")) if (store / st.STAGING).is_dir() else False

    killed = kill_when(argv, env, staging, tmp_path)
    commands = " ".join(killed["before"].values())
    assert "forkserver" in commands and "watchdog" in commands and len(killed["before"]) >= 5, commands
    assert killed["left"] == {}, f"left behind: {killed['left']}"
    dead = [p for p in (store / st.STAGING).iterdir() if p.name.startswith(f"{killed['pid']}-")]
    assert dead and any(dead[0].glob("*.parquet"))  # what the killed run had staged

    assert main([*argv[:-2], "--workers", "1"]) == 0
    assert not any(p.exists() for p in dead)
    assert not [p for p in (store / st.STAGING).rglob("*") if p.is_file()]
    records = st.read_table(store, "records", ["source_path", "record_id"]).to_pandas()
    assert sorted(records["source_path"]) == sorted(p.name for p in archive.glob("*.hea"))  # each once
    waves = st.read_table(store, "waveforms", ["record_id"])["record_id"].to_pylist()
    assert sorted(records["record_id"]) == sorted(waves)


def test_kill_9_while_the_temporary_api_boots_leaves_no_server(archive: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")  # the killed server's database stays here

    def server(procs: dict[int, str]) -> bool:
        return any("uvicorn" in command for command in procs.values())

    killed = kill_when(["ingest", str(archive), "--store", str(tmp_path / "store")], env, server, tmp_path)
    assert any("uvicorn" in command for command in killed["before"].values())
    assert killed["left"] == {}, f"left behind: {killed['left']}"
