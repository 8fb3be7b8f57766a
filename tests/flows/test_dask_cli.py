"""The Dask options of the CLI: declared once, taken by ingest, qc, features and score, and a real
`msaic ingest --dask-local 2` process whose Dask workers report to the command's own temporary
Prefect API (no PREFECT_API_URL set)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from flows.cli import build_parser
from flows.cluster import DaskCluster
from flows.options import cluster_of, settings_of
from tasks import store as st
from tests.helpers import copy_ludb

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("command", ["ingest", "qc", "features", "score"])
def test_every_stage_takes_the_dask_options(command: str, tmp_path: Path) -> None:
    head = {
        "ingest": ["ingest", str(tmp_path), "--store", str(tmp_path / "s")],
        "qc": ["qc", "--store", str(tmp_path)],
        "features": ["features", "--store", str(tmp_path)],
        "score": ["score", str(tmp_path), "--model", str(tmp_path / "m"), "--out", str(tmp_path / "o")],
    }[command]
    if command == "score":
        (tmp_path / "m").mkdir()
        (tmp_path / "m" / "config.json").write_text("{}")
        (tmp_path / "m" / "weights.safetensors").write_text("")
    parser = build_parser(command)

    args = parser.parse_args([*head, "--dask-local", "3"])
    settings = settings_of(args)
    assert settings.workers == 3 and cluster_of(args, settings) == DaskCluster(local_workers=3)
    args = parser.parse_args([*head, "--dask-local", "--workers", "2"])
    settings = settings_of(args)
    assert cluster_of(args, settings) == DaskCluster(local_workers=2)
    args = parser.parse_args([*head, "--workers", "2"])
    assert cluster_of(args, settings_of(args)) is None
    with pytest.raises(SystemExit) as exited:
        parser.parse_args([*head, "--dask-local", "2", "--dask-address", "tcp://127.0.0.1:1"])
    assert exited.value.code == 2


def test_cli_ingest_on_a_local_dask_cluster_without_a_prefect_server(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    copy_ludb(archive, range(1, 13))
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env |= {"PREFECT_HOME": str(tmp_path / "prefect-home"), "MSAIC_SHARD_SIZE": "2"}
    store = tmp_path / "store"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "flows.cli",
            "ingest",
            str(archive),
            "--store",
            str(store),
            "--dask-local",
            "2",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "locked" not in done.stderr and "Traceback" not in done.stderr, done.stderr
    records = st.read_table(store, "records", ["record_id"]).to_pandas()
    assert len(records) == 12 and records["record_id"].is_unique
