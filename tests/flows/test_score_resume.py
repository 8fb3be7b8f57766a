"""Kill-and-resume for real: `msaic score` runs as a subprocess, is killed with SIGKILL (its whole
process group, workers included) at several moments, and is started again with the same OUT;
in the end every record of the archive is in OUT exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tasks import store as st
from tasks.ingest.archive import RecordUnit
from tasks.ingest.run import walk_archive
from tasks.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
SHARD = 12


def _ledger(out: Path) -> int:
    return len(list((out / "ledger").glob("*.json")))


def _kill_when(cmd: list[str], env: dict[str, str], out: Path, shards: int, delay: float) -> int:
    """Start the command; once `shards` more ledger entries exist, wait `delay` s and SIGKILL the
    process group. Returns the ledger size at the kill (or -1 if the run ended first)."""
    start = _ledger(out) if out.exists() else 0
    proc = subprocess.Popen(
        cmd, env=env, cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 90
    while proc.poll() is None and time.monotonic() < deadline:
        if out.exists() and _ledger(out) >= start + shards:
            break
        time.sleep(0.01)
    time.sleep(delay)
    if proc.poll() is not None:
        return -1
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return _ledger(out)


def test_sigkill_at_any_moment_then_resume_gives_every_record_once(
    prefect_harness: None, synth_archive: Path, model_dir: Path, tmp_path: Path
) -> None:
    from prefect.settings import PREFECT_API_URL

    out = tmp_path / "out"
    env = os.environ | {
        "PREFECT_API_URL": PREFECT_API_URL.value(),  # the session's test API, no temporary server
        "MSAIC_SCORE_SHARD_SIZE": str(SHARD),
        "MSAIC_WORKERS": "2",
    }
    cmd = [sys.executable, "-m", "flows.cli", "score", str(synth_archive), "--model", str(model_dir)]
    cmd += ["--out", str(out)]
    units = [u for u in walk_archive(synth_archive, Settings()) if isinstance(u, RecordUnit)]
    expected = {(u.extra["site"], u.source_path) for u in units}
    n_shards = -(-len(expected) // SHARD)

    # during start-up (nothing committed yet), right after a commit, and between commits
    at_kill = [_kill_when(cmd, env, out, shards, delay) for shards, delay in ((0, 0.0), (1, 0.0), (2, 0.03))]
    assert all(k >= 0 for k in at_kill), f"a run finished before it could be killed: {at_kill}"
    assert 0 < at_kill[-1] < n_shards, f"kills should land mid-run: {at_kill} of {n_shards} shards"

    final = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert final.returncode == 0, final.stderr[-3000:]

    scores = st.read_table(out, "scores").to_pandas()
    keys = scores[["site", "source_path", "window"]]
    assert not keys.duplicated().any(), "a record was written twice"
    assert set(zip(scores["site"], scores["source_path"], strict=True)) == expected
    assert scores["record_id"].is_unique
    assert st.read_table(out, "quarantine").num_rows == 0
    assert _ledger(out) == n_shards
    assert not list((out / ".staging").glob("*")), "staged files left behind"
    summary = json.loads((out / "score_summary.json").read_text())
    assert summary["records_resumed"] >= at_kill[-1] * SHARD > 0  # the last run resumed, it did not redo
    assert summary["counts"]["records"] == len(expected) - summary["records_resumed"]
