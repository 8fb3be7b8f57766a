"""Hostile and odd archives (issue 16, items 4 and 5): each odd file becomes one quarantine row
with its reason and the run goes on; an archive bomb is refused from what its members declare,
so memory stays bounded; nothing hangs on a FIFO."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import warnings
import zipfile
from pathlib import Path

from flows.ingest import ingest
from tasks import store as st
from tasks.settings import Settings
from tests.conftest import LUDB

ROOT = Path(__file__).resolve().parents[2]
GOOD = ["1.hea", "1.dat"]  # one real LUDB record


def _reasons(store: Path) -> dict[str, str]:
    table = st.read_table(store, "quarantine").to_pandas()
    return dict(zip(table["source_path"], table["reason"], strict=True))


def _records(store: Path) -> list[str]:
    rec = st.read_table(store, "records", ["source_path", "window"]).to_pandas()
    return sorted(rec.loc[rec["window"] == 0, "source_path"])


def test_odd_files_in_a_folder_are_quarantined_and_the_run_goes_on(
    tmp_path: Path, prefect_harness: None
) -> None:
    archive = tmp_path / "archive"
    archive.mkdir()
    for name in GOOD:
        (archive / name).write_bytes((LUDB / name).read_bytes())
    os.mkfifo(archive / "x.hea")  # reading it would block forever
    (archive / "dir.hea").mkdir()
    (archive / os.fsdecode(b"caf\xe9.hea")).write_bytes((LUDB / "2.hea").read_bytes())  # Latin-1 name
    deep = archive
    for _ in range(1500):  # deeper than any recursion limit (pathlib's own mkdir would recurse)
        deep = deep / "d"
        deep.mkdir()
    (deep / "2.hea").write_bytes(b"")
    store = tmp_path / "store"
    try:
        totals = ingest(archive, store, settings=Settings(workers=1))
    finally:
        while deep != archive:  # shutil.rmtree recurses too: take the tree down from below
            (deep / "2.hea").unlink(missing_ok=True)
            deep.rmdir()
            deep = deep.parent
    reasons = _reasons(store)
    assert reasons.pop("x.hea") == "not_regular_file"
    assert reasons.pop("dir.hea") == "not_regular_file"
    assert reasons.pop("caf\\xe9.hea") == "bad_file_name"
    assert reasons.pop("/".join(["d"] * 64)) == "too_deep"
    assert not reasons
    assert _records(store) == ["1.hea"] and sum(totals.quarantined.values()) == 4


def test_odd_members_of_tar_and_zip_are_quarantined(tmp_path: Path, prefect_harness: None) -> None:
    tar_path = tmp_path / "odd.tar"
    with tarfile.open(tar_path, "w") as tf:
        for name in GOOD:
            tf.add(LUDB / name, arcname=name)
        for name, kind in (("fifo.hea", tarfile.FIFOTYPE), ("dev.dat", tarfile.CHRTYPE)):
            tf.addfile(_special(name, kind))
    zip_path = tmp_path / "dup.zip"
    with warnings.catch_warnings(), zipfile.ZipFile(zip_path, "w") as zf:
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate name: that is the test
        for name in [*GOOD, "1.hea"]:
            zf.writestr(name, (LUDB / name).read_bytes())
    tar_store, zip_store = tmp_path / "tar-store", tmp_path / "zip-store"
    ingest(tar_path, tar_store, settings=Settings(workers=1))
    ingest(zip_path, zip_store, settings=Settings(workers=1))
    assert _reasons(tar_store) == {"fifo.hea": "not_regular_file", "dev.dat": "not_regular_file"}
    assert _records(tar_store) == ["1.hea"]
    assert _reasons(zip_store) == {"1.hea": "duplicate_member"}
    assert _records(zip_store) == ["1.hea"]  # read once


def _special(name: str, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    return info


def _zip_bomb(path: Path, members: int, size: int) -> None:
    """A zip whose members are `size` bytes of zeros each (about 1000x smaller packed)."""
    chunk = bytes(1 << 20)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for k in range(members):
            with zf.open(f"bomb{k}.dat" if k else "bomb.hea", "w", force_zip64=True) as fh:
                for _ in range(size // len(chunk)):
                    fh.write(chunk)


def test_an_archive_bomb_is_refused_from_what_it_declares(tmp_path: Path, prefect_harness: None) -> None:
    """Two members of 1 GiB of zeros each (a few MB packed): refused before they are read, with
    the peak memory of the whole `msaic ingest` process tree far below 2 GB."""
    from prefect.settings import PREFECT_API_URL

    bomb = tmp_path / "bomb.zip"
    _zip_bomb(bomb, members=2, size=1 << 30)
    assert bomb.stat().st_size < 16 << 20
    store = tmp_path / "store"
    env = os.environ | {"PREFECT_API_URL": PREFECT_API_URL.value()}
    cmd = [sys.executable, "-m", "flows.cli", "ingest", str(bomb), "--store", str(store), "--workers", "1"]
    # a fresh parent whose only descendants are the ingest's: its RUSAGE_CHILDREN peak is theirs
    measure = (
        "import resource, subprocess, sys; "
        f"rc = subprocess.run({cmd!r}, stdout=subprocess.DEVNULL).returncode; "
        "print(rc, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    done = subprocess.run([sys.executable, "-c", measure], env=env, cwd=ROOT, capture_output=True, text=True)
    rc, peak_kib = map(int, done.stdout.split())
    assert rc == 0, done.stderr[-2000:]
    assert set(_reasons(store).values()) == {"compression_ratio"}
    assert peak_kib < 2 * 1024 * 1024, f"peak RSS {peak_kib} KiB"


def test_a_member_over_the_size_limit_is_not_read(tmp_path: Path, prefect_harness: None) -> None:
    archive = tmp_path / "archive.tar"
    data = io.BytesIO(bytes(2 << 20))
    with tarfile.open(archive, "w") as tf:
        info = tarfile.TarInfo("big.xml")
        info.size = len(data.getvalue())
        tf.addfile(info, data)
        for name in GOOD:
            tf.add(LUDB / name, arcname=name)
    store = tmp_path / "store"
    ingest(archive, store, settings=Settings(workers=1, max_member_mb=1))
    assert _reasons(store) == {"big.xml": "too_large"}
    assert _records(store) == ["1.hea"]
