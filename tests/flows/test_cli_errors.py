"""The CLI's error convention, on real paths, real file systems and a real process:
- usage and path errors exit 2 with one line and no traceback, before the temporary Prefect API
  starts (a real `msaic` process leaves no Prefect database behind);
- run failures exit 1 with one line naming the log that holds the traceback; `--debug` prints it;
- a read-only store is refused in one line (exit 2 where the command line shows it, exit 1 where
  the run finds it); a full disk fails the run in one line and leaves nothing staged, and the
  next run, with room, ingests everything once."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from flows.cli import main
from tasks import store as st
from tests.helpers import copy_ludb

ROOT = Path(__file__).resolve().parents[2]


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _drop_log(line: str) -> Path:
    """The log a one-line failure names, removed (it holds the traceback)."""
    log = Path(line.rsplit("traceback in ", 1)[1].rstrip(")"))
    text = log.read_text()
    log.unlink()
    assert "Traceback" in text
    return log


def _usage_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    return _one_line(capsys.readouterr().err)


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    """Twelve real LUDB records."""
    folder = tmp_path / "archive"
    copy_ludb(folder, range(1, 13))
    return folder


def test_usage_and_path_errors_exit_2_with_one_line(
    archive: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    model = tmp_path / "model"  # what the command line checks of a model: its two files
    model.mkdir()
    for name in ("config.json", "weights.safetensors"):
        (model / name).write_text("{}")
    cases = {
        "does not exist": ["ingest", str(tmp_path / "nope"), "--store", str(tmp_path / "s")],
        "is a file, not a directory": ["ingest", str(archive), "--store", str(a_file)],
        "cannot be created": ["ingest", str(archive), "--store", str(a_file / "store")],
        "-1 is below 1": ["ingest", str(archive), "--store", str(tmp_path / "s"), "--workers", "-1"],
        "'two' is not a whole number": ["qc", "--store", str(tmp_path), "--workers", "two"],
        "is not a registered model": [
            "score",
            str(archive),
            "--model",
            str(tmp_path),
            "--out",
            str(tmp_path / "o"),
        ],
        "--out: ": ["score", str(archive), "--model", str(model), "--out", str(a_file)],
        "nope is neither a packaged config (": ["train", "--store", str(tmp_path), "--config", "nope"],
        "the following arguments are required: --store": ["features"],
        "invalid choice: 'bogus'": ["bogus"],
    }
    for expected, argv in cases.items():
        line = _usage_error(argv, capsys)
        assert expected in line and line.startswith("msaic"), line
    assert not (tmp_path / "s").exists() and not (tmp_path / "o").exists()


def test_option_combinations_train_cannot_run_exit_2_before_anything_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    train = ["train", "--store", str(tmp_path)]
    assert main([*train, "--fold-workers", "2", "--dask-local", "2"]) == 2
    assert "leave it out on a Dask cluster" in _one_line(capsys.readouterr().err)
    monkeypatch.setenv("WORLD_SIZE", "2")  # as torchrun starts each rank
    assert main([*train, "--fold-workers", "2"]) == 2
    assert "under torchrun the ranks train the folds together" in _one_line(capsys.readouterr().err)
    assert not (tmp_path / "models").exists()


def test_invalid_settings_exit_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MSAIC_WORKERS", "-1")
    assert main(["qc", "--store", str(tmp_path)]) == 2
    assert "invalid setting MSAIC_WORKERS" in _one_line(capsys.readouterr().err)
    monkeypatch.delenv("MSAIC_WORKERS")
    monkeypatch.setenv("MSAIC_PSEUDONYM_KEY", "")
    assert main(["qc", "--store", str(tmp_path)]) == 2
    assert "MSAIC_PSEUDONYM_KEY is set but empty" in _one_line(capsys.readouterr().err)


def test_a_real_usage_error_comes_before_the_temporary_api(tmp_path: Path) -> None:
    """As a real process with no API configured: the one line comes without the temporary API
    ever starting (it would create its database in PREFECT_HOME)."""
    home = tmp_path / "prefect-home"
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"} | {"PREFECT_HOME": str(home)}
    argv = [
        sys.executable,
        "-m",
        "flows.cli",
        "ingest",
        str(tmp_path / "nope"),
        "--store",
        str(tmp_path / "s"),
    ]
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "does not exist" in _one_line(done.stderr) and done.stdout == ""
    assert not list(home.rglob("*.db")), "the temporary Prefect API was started"


def test_a_failed_run_exits_1_with_one_line_and_the_log(
    tmp_path: Path, prefect_harness: None, capfd: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty-store"
    empty.mkdir()
    capfd.readouterr()
    assert main(["qc", "--store", str(empty)]) == 1
    line = _one_line(capfd.readouterr().err)
    assert line.startswith("msaic qc: ") and "holds no ingested records" in line
    log = Path(line.rsplit("traceback in ", 1)[1].rstrip(")"))
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    _drop_log(line)
    assert main(["qc", "--store", str(empty), "--debug"]) == 1
    err = capfd.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("msaic qc: ")
    _drop_log(err.strip().splitlines()[-1])


def _mount_tmpfs(mount: Path, options: str) -> None:
    mount.mkdir(exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    """A real tmpfs (we run as root on the test machine; skipped where none can be mounted)."""
    mount = tmp_path / "disk"
    _mount_tmpfs(mount, "size=512k")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def test_a_read_only_store_is_refused_in_one_line(
    archive: Path, disk: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = disk / "store"
    (store / "records").mkdir(parents=True)
    subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
    line = _usage_error(["ingest", str(archive), "--store", str(store)], capsys)
    assert "is not writable" in line
    assert main(["store", "repair", "--store", str(store)]) == 1  # found by the run: exit 1
    line = _one_line(capsys.readouterr().err)
    assert line.startswith("msaic store: ") and "Read-only file system" in line
    _drop_log(line)


def test_a_full_disk_fails_in_one_line_leaves_nothing_staged_and_the_next_run_goes_on(
    archive: Path, disk: Path, prefect_harness: None, capfd: pytest.CaptureFixture[str]
) -> None:
    store = disk / "store"
    argv = ["ingest", str(archive), "--store", str(store), "--site", "ludb", "--workers", "1"]
    capfd.readouterr()
    assert main(argv) == 1
    line = _one_line(capfd.readouterr().err)
    assert "No space left on device" in line, line
    _drop_log(line)
    assert not [p for p in store.rglob("*") if p.is_file() and st.STAGING in p.parts]
    subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)
    assert main(argv) == 0
    records = st.read_table(store, "records", ["source_path", "record_id"]).to_pandas()
    assert sorted(records["source_path"]) == sorted(p.name for p in archive.glob("*.hea"))
    assert sorted(records["record_id"]) == sorted(
        st.read_table(store, "waveforms", ["record_id"])["record_id"].to_pylist()
    )
    assert not [p for p in store.rglob("*") if p.is_file() and st.STAGING in p.parts]
