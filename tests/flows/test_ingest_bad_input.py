"""Real broken files: each lands in quarantine/ with its stage and reason, the run goes on,
the CLI exits 0 and counts them, and nothing outside the store is written."""

from __future__ import annotations

import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import wfdb

from flows.cli import main
from tasks import store as st
from tests.helpers import write_record


def _edit_header(hea: Path, old: str, new: str) -> None:
    hea.write_text(hea.read_text().replace(old, new))


def _raw_record(directory: Path, name: str, value: int, n: int = 5000) -> None:
    """A 12-lead format-16 record whose every sample is `value` (-32768 is WFDB's 'no sample')."""
    d = np.full((n, 12), value, dtype=np.int16)
    wfdb.wrsamp(
        name, fs=500, units=["mV"] * 12, sig_name=[f"V{i}" if i <= 6 else f"x{i}" for i in range(1, 13)],
        d_signal=d, fmt=["16"] * 12, adc_gain=[200.0] * 12, baseline=[0] * 12, write_dir=str(directory),
    )  # fmt: skip


def build_broken_archive(root: Path) -> dict[str, tuple[str, str]]:
    """One good record and one of each kind of broken input; returns source → (stage, reason)."""
    write_record(root, "good")
    write_record(root, "truncated")
    dat = root / "truncated.dat"
    dat.write_bytes(dat.read_bytes()[: dat.stat().st_size // 2])
    write_record(root, "toolong_dat")
    with (root / "toolong_dat.dat").open("ab") as fh:
        fh.write(b"\0" * 2400)
    write_record(root, "badheader")
    _edit_header(root / "badheader.hea", "badheader 12 500 5000", "badheader 12 fivehundred 5000")
    write_record(root, "nodat")
    (root / "nodat.dat").unlink()
    write_record(root, "badfmt")
    _edit_header(root / "badfmt.hea", "badfmt.dat 16 ", "badfmt.dat 999 ")
    (root / "empty.hea").write_bytes(b"")
    write_record(root, "latin1", comments=["Name: Müller"])
    (root / "latin1.hea").write_bytes((root / "latin1.hea").read_text().encode("latin-1"))
    _raw_record(root, "allnan", -32768)
    _raw_record(root, "allmax", 32767)
    write_record(root, "hours", sig_name=["II"], seconds=3 * 3600, fs=250)
    write_record(root, "short", seconds=4)
    return {
        "truncated.hea": ("read", "truncated_signal"),
        "toolong_dat.hea": ("read", "length_mismatch"),
        "badheader.hea": ("archive", "header_parse"),
        "nodat.hea": ("archive", "missing_signal_file"),
        "badfmt.hea": ("read", "unknown_format"),
        "empty.hea": ("archive", "empty_file"),
        "latin1.hea": ("archive", "header_encoding"),
        "allnan.hea": ("harmonize", "no_signal"),
        "allmax.hea": ("harmonize", "no_signal"),
        "hours.hea": ("harmonize", "too_long"),
        "short.hea": ("harmonize", "too_short"),
    }


def _quarantine(store: Path) -> dict[str, tuple[str, str]]:
    q = st.read_table(store, "quarantine").to_pylist()
    assert all(r["detail"] and r["at"] for r in q)
    return {r["source_path"]: (r["stage"], r["reason"]) for r in q}


def test_broken_files_are_quarantined_and_the_run_goes_on(
    tmp_path: Path, prefect_harness: None, capsys: pytest.CaptureFixture[str]
) -> None:
    archive = tmp_path / "broken"
    expected = build_broken_archive(archive)
    store = tmp_path / "store"
    assert main(["ingest", str(archive), "--store", str(store), "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "1 records (1 windows) written" in out and f"{len(expected)} quarantined" in out
    assert _quarantine(store) == expected
    records = st.read_table(store, "records")
    assert records["source_path"].to_pylist() == ["good.hea"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken", "store"]
    # a second run adds nothing, not even quarantine rows
    assert main(["ingest", str(archive), "--store", str(store), "--workers", "1"]) == 0
    assert st.read_table(store, "quarantine").num_rows == len(expected)


def test_members_that_leave_the_archive_are_not_read(tmp_path: Path, prefect_harness: None) -> None:
    src = tmp_path / "src"
    write_record(src, "ok")
    secret = tmp_path / "outside.hea"
    secret.write_text("outside 1 500 5000\n")
    zpath = tmp_path / "evil.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.write(src / "ok.hea", "ok.hea")
        zf.write(src / "ok.dat", "ok.dat")
        zf.writestr("../escape.hea", "x 1 500 5000\n")
        zf.writestr("/abs/path.hea", "x 1 500 5000\n")
    tpath = tmp_path / "evil.tar"
    with tarfile.open(tpath, "w") as tf:
        tf.add(src / "ok.hea", "ok.hea")
        tf.add(src / "ok.dat", "ok.dat")
        link = tarfile.TarInfo("sneaky.hea")
        link.type, link.linkname = tarfile.SYMTYPE, "../../outside.hea"
        tf.addfile(link)
    ddir = tmp_path / "dir_archive"
    write_record(ddir, "ok")
    (ddir / "linked.hea").symlink_to(secret)

    for archive, expected in [
        (zpath, {"../escape.hea": "unsafe_member_path", "/abs/path.hea": "unsafe_member_path"}),
        (tpath, {"sneaky.hea": "link_outside_archive"}),
        (ddir, {"linked.hea": "link_outside_archive"}),
    ]:
        store = tmp_path / f"store_{archive.name}"
        assert main(["ingest", str(archive), "--store", str(store), "--workers", "1"]) == 0
        assert {k: v[1] for k, v in _quarantine(store).items()} == expected
        assert st.read_table(store, "records")["source_path"].to_pylist() == ["ok.hea"]
    assert not (tmp_path / "escape.hea").exists() and not Path("/abs").exists()


def test_bad_usage_and_missing_archive_exit_codes(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["ingest"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:  # a path error is a usage error: exit 2, before any run
        main(["ingest", str(tmp_path / "nope"), "--store", str(tmp_path / "s")])
    assert exc.value.code == 2
