"""The pseudonym key is never empty or short: such a key (file or MSAIC_PSEUDONYM_KEY) is
refused, and the key file is created whole or not at all, even on a full disk."""

from __future__ import annotations

import errno
import re
import stat
import subprocess
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from tasks.store.pseudonym import KEY_FILE, PseudonymKeyError, keyed_hash, load_key


def test_a_new_store_gets_a_whole_private_key_once(tmp_path: Path) -> None:
    store = tmp_path / "store"
    key = load_key(store, None)
    path = store / KEY_FILE
    assert re.fullmatch(rb"[0-9a-f]{64}", key), key  # 32 random bytes as lower-case hex
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_key(store, None) == key
    assert not [p for p in (store / ".staging").rglob("*") if p.is_file()], "the staged key was left behind"


def _load(store: str) -> bytes:
    return load_key(Path(store), None)


def test_runs_racing_to_create_the_key_agree(tmp_path: Path) -> None:
    with ProcessPoolExecutor(4) as pool:
        keys = set(pool.map(_load, [str(tmp_path)] * 8))
    assert len(keys) == 1 and len(keys.pop()) == 64


@pytest.mark.parametrize("content", [b"", b"\n", b"  \n", b"0123456789abcdef"])
def test_an_empty_or_short_key_file_is_refused(tmp_path: Path, content: bytes) -> None:
    (tmp_path / KEY_FILE).write_bytes(content)
    with pytest.raises(PseudonymKeyError, match=r"not a key \(64 hex characters expected\): restore it"):
        load_key(tmp_path, None)


@pytest.mark.parametrize("configured", ["", "   ", "\t\n"])
def test_an_empty_configured_key_is_refused(tmp_path: Path, configured: str) -> None:
    with pytest.raises(PseudonymKeyError, match="MSAIC_PSEUDONYM_KEY is set but empty"):
        load_key(tmp_path, configured)
    assert not (tmp_path / KEY_FILE).exists()


def test_a_configured_key_is_used_as_given(tmp_path: Path) -> None:
    assert load_key(tmp_path, " a key ") == b" a key "
    assert keyed_hash(b"a", "x") != keyed_hash(b"b", "x")


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 64 KiB tmpfs (we run as root in the test machine); skipped where none can be mounted."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def test_a_full_disk_leaves_no_key_file_and_the_next_run_makes_a_whole_one(tiny_disk: Path) -> None:
    """With the disk full the key cannot be written: no key file appears (an empty one would
    be used as the key b"" by the next run); once there is room, a whole key is made."""
    store = tiny_disk / "store"
    store.mkdir()
    filler = tiny_disk / "filler"
    with filler.open("wb", buffering=0) as fh, pytest.raises(OSError) as full:
        while True:
            fh.write(b"\0" * 4096)
    assert full.value.errno == errno.ENOSPC
    with pytest.raises(OSError) as refused:
        load_key(store, None)
    assert refused.value.errno == errno.ENOSPC
    assert not (store / KEY_FILE).exists()
    assert not [p for p in (store / ".staging").rglob("*") if p.is_file()]
    filler.unlink()
    assert len(load_key(store, None)) == 64
