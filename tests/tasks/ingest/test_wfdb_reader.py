"""Decoding from memory equals wfdb.rdrecord on the files, for the formats archives use."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import wfdb

from tasks.ingest.archive import RecordUnit, open_archive
from tasks.ingest.header_meta import parse_comments
from tasks.ingest.wfdb_reader import _fixed_width_signal, _wfdb_signal, decode, read_header
from tests.conftest import CINC, LUDB
from tests.helpers import write_record


@pytest.mark.parametrize("fmt", ["16", "212", "80", "24", "32"])  # the formats wfdb can write
def test_formats_decode_like_rdrecord(tmp_path: Path, fmt: str) -> None:
    write_record(tmp_path, f"r{fmt}", fmt=fmt)
    unit = next(iter(open_archive(tmp_path).units(lambda _: {})))
    raw = decode(unit.files, read_header(unit.files, unit.header_path), unit.header_path)
    ref = wfdb.rdrecord(str(tmp_path / f"r{fmt}"))
    np.testing.assert_allclose(raw.signal, ref.p_signal, atol=1e-6)
    assert np.ptp(raw.signal) > 0.5  # a real ECG-like signal, not a clipped or empty one
    assert raw.fs == 500 and raw.sig_name == ref.sig_name


def test_fixed_width_path_equals_wfdb_on_every_shared_record(shared_data: Path) -> None:
    """The numpy decoder of one-file fixed-width records gives wfdb's values, bit for bit
    (format 16 .dat of LUDB and PTB, format 16+24 .mat of the CinC sources)."""
    items = [u for root in (LUDB, CINC) for u in open_archive(root).units(lambda _: {})]
    units = [u for u in items if isinstance(u, RecordUnit)]
    assert len(units) == 270
    for unit in units:
        name = unit.header_path.rsplit("/", 1)[-1]
        header = read_header(unit.files, name)
        fast = _fixed_width_signal(header, unit.files[header.signals[0].file_name])
        np.testing.assert_array_equal(fast, _wfdb_signal(unit.files, name), err_msg=unit.header_path)


def test_invalid_samples_become_nan(tmp_path: Path) -> None:
    """The format's invalid-sample value (-32768 in format 16) decodes to NaN, as in wfdb."""
    digital = np.tile(np.arange(-50, 50, dtype=np.int16), (50, 2)).reshape(-1, 2)[:5000]
    digital[10:20, 1] = -32768
    wfdb.wrsamp(
        "nan",
        fs=500,
        units=["mV", "mV"],
        sig_name=["I", "II"],
        d_signal=digital,
        fmt=["16", "16"],
        adc_gain=[200.0, 400.0],
        baseline=[5, -3],
        write_dir=str(tmp_path),
    )
    unit = next(iter(open_archive(tmp_path).units(lambda _: {})))
    raw = decode(unit.files, read_header(unit.files, "nan.hea"), "nan.hea")
    ref = wfdb.rdrecord(str(tmp_path / "nan"))
    assert np.isnan(raw.signal[10:20, 1]).all() and not np.isnan(raw.signal[:, 0]).any()
    np.testing.assert_allclose(raw.signal, ref.p_signal, atol=1e-6)


def test_multi_file_record(tmp_path: Path) -> None:
    """A record whose leads are spread over two signal files."""
    write_record(tmp_path, "a", sig_name=["I", "II", "III"], seed=1)
    write_record(tmp_path, "b", sig_name=["V1", "V2", "V3"], seed=2)
    a, b = (tmp_path / "a.hea").read_text().splitlines(), (tmp_path / "b.hea").read_text().splitlines()
    (tmp_path / "ab.hea").write_text("\n".join(["ab 6 500 5000", *a[1:4], *b[1:4]]) + "\n")
    (tmp_path / "a.hea").unlink()
    (tmp_path / "b.hea").unlink()
    unit = next(iter(open_archive(tmp_path).units(lambda _: {})))
    assert sorted(unit.files) == ["a.dat", "ab.hea", "b.dat"]
    raw = decode(unit.files, read_header(unit.files, "ab.hea"), "ab.hea")
    np.testing.assert_allclose(raw.signal, wfdb.rdrecord(str(tmp_path / "ab")).p_signal, atol=1e-6)


def test_header_dialects() -> None:
    ludb = parse_comments(wfdb.rdheader(str(LUDB / "7")).comments)
    assert ludb.age is not None and ludb.sex in {"M", "F"}
    assert (ludb.label.mi_label, ludb.label.label_source) == (1, "ludb")
    cinc = parse_comments(wfdb.rdheader(str(CINC / "CPSC_CPSC-Extra" / "Q0001")).comments)
    assert cinc.label.mi_label == 1 and "164867002" in cinc.dx  # old MI counts
    e1 = parse_comments(wfdb.rdheader(str(CINC / "G12EC" / "E00001")).comments)
    assert e1.age is None and e1.sex == "F" and e1.label.mi_label == 0
    ptb = parse_comments(
        [
            "age: 81",
            "sex: male",
            "Reason for admission: Myocardial infarction",
            "Infarction localization: infero-latera",
        ]
    )
    assert (ptb.age, ptb.sex, ptb.label.mi_label, ptb.label.mi_territory) == (81.0, "M", 1, "inferolateral")
    healthy = parse_comments(["age: 40", "sex: female", "Reason for admission: Healthy control"])
    assert healthy.label.mi_label == 0
    unknown = parse_comments(["age: 40", "Reason for admission: n/a"])
    assert unknown.label.mi_label is None
    assert parse_comments(["Dx: Unknown"]).label.mi_label is None
    assert parse_comments([]).label.mi_label is None
    # a converter of GE MUSE exports (EGM) writes `# age 40` without a colon, beside record numbers
    bare = parse_comments(["mrn 0012345", "age 40", "Sex Female", "race white"])
    assert (bare.age, bare.sex, bare.dx, bare.label.mi_label) == (40.0, "F", [], None)
    for line in ("age unknown", "age unknown, bed 12", "age group 3", "sex 1 bed 4"):
        assert (parse_comments([line]).age, parse_comments([line]).sex) == (None, None), line


def test_a_base_date_that_is_no_calendar_date_is_read_as_none(tmp_path: Path) -> None:
    """Real LUDB records whose record lines state a month-first date (12/25/2019, as some exports
    write it) or a proper one: both are read and windowed; the first has no acquisition time,
    never "2019-25-12", which the quality report could not place on a date axis."""
    from tasks.ingest.records import IngestConfig, Task, content_sha256, record_rows
    from tasks.ingest.run import walk_archive
    from tasks.settings import Settings
    from tests.helpers import copy_ludb

    archive = copy_ludb(tmp_path / "archive", (1, 2))
    for name, date in (("1", "12/25/2019"), ("2", "25/12/2019")):
        header = archive / f"{name}.hea"
        first, rest = header.read_text().split("\n", 1)
        header.write_text(f"{first} 10:11:12 {date}\n{rest}")
    settings = Settings(workers=1)
    cfg = IngestConfig.for_store(tmp_path / "store", settings)
    stated = {}
    for unit in walk_archive(archive, settings):
        rows, windows = record_rows(Task(unit, "ludb", None), content_sha256(unit.files), cfg)
        assert len(rows) == len(windows) == 1 and np.isfinite(windows).any()
        stated[unit.source_path] = rows[0]["recorded_at"]
    assert stated == {"1.hea": None, "2.hea": "2019-12-25T10:11:12"}


def test_age_and_sex_without_a_colon_from_a_real_header(tmp_path: Path) -> None:
    """A WFDB record whose comments are written as EGM's converter of GE MUSE exports writes them
    (`# mrn 0012345`, `# age 40`, `# sex F`, `# race white`): ingest stores age 40 and sex F, and
    the record number and race reach no row."""
    from tasks.ingest.records import IngestConfig, Task, content_sha256, record_rows
    from tasks.settings import Settings

    write_record(tmp_path / "archive", "muse", comments=["mrn 0012345", "age 40", "sex F", "race white"])
    (unit,) = open_archive(tmp_path / "archive").units(lambda _: {})
    cfg = IngestConfig.for_store(tmp_path / "store", Settings(workers=1))
    rows, _ = record_rows(Task(unit, "egm", None), content_sha256(unit.files), cfg)
    assert rows and all((r["age"], r["sex"]) == (40.0, "F") for r in rows)
    assert not any("0012345" in str(v) or "white" in str(v) for r in rows for v in r.values())
