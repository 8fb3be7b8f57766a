"""SCP-ECG reader: the two EN 1064 samples decode like biosig's save2gdf and ecgdatakit (independent
readers), the handheld ".SCP" that is not EN 1064 is refused, broken and fuzzed files are refused
with a reason, quickly, and the codings the samples lack (reference-beat subtraction, custom
Huffman tables with table switches, 16-bit length overflow, statements, leads recorded at other
times) decode from records this test writes with its own encoder."""

from __future__ import annotations

import binascii
import re
import shutil
import struct
import subprocess
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from ecgdatakit.parsing.parsers.scp_ecg import SCPECGParser

from tasks.ingest.readers import FORMATS, scp
from tasks.ingest.readers import read as read_format
from tasks.ingest.readers.base import Decoded, ReaderError
from tasks.ingest.readers.scp_sections import read_record, read_tags, text
from tests.conftest import SHARED_DATA

HOSPITAL = SHARED_DATA / "hospital"
SWIFTEEN = HOSPITAL / "scp_ecg" / "swifteen_Example.scp"
CONTEC = HOSPITAL / "scp_ecg" / "ecgcontec_ecgviewer_demo.scp"
HEALFORCE = HOSPITAL / "scp_ecg" / "healforce_62.SCP"
TWELVE = ["I", "II", "V1", "V2", "V3", "V4", "V5", "V6", "III", "aVR", "aVL", "aVF"]


# --- a minimal SCP-ECG writer and default-table Huffman encoder -----------------------------------


def _crc(data: bytes) -> int:
    return binascii.crc_hqx(data, 0xFFFF)


def _section(sid: int, body: bytes, version: int = 20) -> bytes:
    """A section with its 16-byte header and CRC ("SCPECG" reserved bytes in Section 0)."""
    rest = struct.pack("<HIBB", sid, 16 + len(body), version, version) + (b"SCPECG" if sid == 0 else bytes(6))
    return struct.pack("<H", _crc(rest + body)) + rest + body


def build(bodies: dict[int, bytes], version: int = 20) -> bytes:
    """An SCP-ECG record of section bodies (id → bytes after the header), pointers 0-11, CRCs set."""
    n = max(12, *bodies) + 1
    pos = 6 + 16 + 10 * n
    pointers, blobs = [(0, 16 + 10 * n, 7)], []
    for sid in range(1, n):
        blob = _section(sid, bodies[sid], version) if sid in bodies else b""
        pointers.append((sid, len(blob), pos + 1 if blob else 0))
        blobs.append(blob)
        pos += len(blob)
    body = _section(0, b"".join(struct.pack("<HII", *p) for p in pointers), version) + b"".join(blobs)
    record = struct.pack("<I", 6 + len(body)) + body
    return struct.pack("<H", _crc(record)) + record


def bodies(path: Path) -> dict[int, bytes]:
    """The section bodies of a sample file."""
    return {sid: s.body for sid, s in read_record(path.read_bytes()).sections.items()}


def second_differences(x: np.ndarray) -> np.ndarray:
    d = x.copy()
    d[2:] = x[2:] - 2 * x[1:-1] + x[:-2]
    return d


def huffman_default(values: np.ndarray) -> bytes:
    """EN 1064's default Huffman code: 0 → "0", ±m (m ≤ 8) → m ones, "0", sign; else an escape
    prefix and 8 or 16 bits. The first bit is the most significant of the first byte."""
    codes = []
    for v in values.tolist():
        if abs(v) <= 8:
            codes.append("0" if v == 0 else "1" * abs(v) + ("01" if v < 0 else "00"))
        elif -128 <= v < 128:
            codes.append("1111111110" + format(v & 0xFF, "08b"))
        else:
            codes.append("1111111111" + format(v & 0xFFFF, "016b"))
    bits = "".join(codes)
    bits += "0" * (-len(bits) % 16)  # whole 16-bit words, as writers pad
    return int(bits, 2).to_bytes(len(bits) // 8, "big")


def lead_data(streams: list[bytes], avm: int, interval: int, differences: int, bimodal: int = 0) -> bytes:
    """A Section 5 or 6 body."""
    lengths = struct.pack(f"<{len(streams)}H", *(len(s) % 65536 for s in streams))
    return struct.pack("<HHBB", avm, interval, differences, bimodal) + lengths + b"".join(streams)


def lead_definition(ranges: list[tuple[int, int, int]], flags: int = 0) -> bytes:
    """A Section 3 body of (start, end, lead code) per lead."""
    return bytes([len(ranges), flags]) + b"".join(struct.pack("<IIB", *r) for r in ranges)


def units(decoded: Decoded, avm_nv: float) -> np.ndarray:
    """The decoded signal back in the file's integer units."""
    return np.rint(decoded.raw.signal.astype(np.float64) * 1000 / avm_nv).astype(np.int64)


# --- references ------------------------------------------------------------------------------------


def save2gdf(path: Path, tmp_path: Path) -> dict[str, np.ndarray]:
    """biosig's decode of an SCP-ECG file in µV (its ASCII export), per lead label."""
    tool = shutil.which("save2gdf")
    assert tool, "biosig's save2gdf (Debian biosig-tools) is the reference decoder of this test"
    out = tmp_path / "reference"
    subprocess.run([tool, "-f=ASCII", str(path), str(out)], check=True, capture_output=True, timeout=60)
    header = out.read_text(errors="replace")
    files = re.findall(r"^Filename\s*=\s*(\S+\.a\d+)", header, re.M)
    labels = re.findall(r"^Label\s*=\s*(\S+)", header, re.M)
    return {
        label: np.loadtxt(tmp_path / Path(f).name, comments="#")
        for label, f in zip(labels, files, strict=True)
    }


def ecgdatakit(path: Path) -> dict[str, np.ndarray]:
    """ecgdatakit's decode of an SCP-ECG file in µV, per lead label."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        record = SCPECGParser().parse(path)
    return {lead.label: lead.samples * lead.resolution for lead in record.leads}


def _agreement(ours: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    """Pearson correlation and ratio of standard deviations of two equally long leads."""
    return float(np.corrcoef(ours, ref)[0, 1]), float(np.std(ours) / np.std(ref))


def _timed(read: Callable[[bytes], Decoded], data: bytes) -> tuple[Decoded | ReaderError, float]:
    """What a read gives (the result or the refusal) and how long it took, in seconds."""
    start = time.perf_counter()
    try:
        result: Decoded | ReaderError = read(data)
    except ReaderError as exc:
        result = exc
    return result, time.perf_counter() - start


# --- the sample files ------------------------------------------------------------------------------


def test_sniffs_scp_and_nothing_else() -> None:
    assert scp.sniff(SWIFTEEN.read_bytes()[:4096]) and scp.sniff(CONTEC.read_bytes()[:4096])
    assert FORMATS["scp"] == scp.FORMAT == "scp_ecg"
    others = [
        p for folder in HOSPITAL.iterdir() if folder.is_dir() for p in folder.iterdir() if p.suffix != ".scp"
    ]
    assert HEALFORCE in others and len(others) > 10
    assert not any(scp.sniff(p.read_bytes()[:4096]) for p in others)
    head = bytearray(SWIFTEEN.read_bytes()[:4096])
    head[16:22] = bytes(6)  # version 2.0 without "SCPECG"
    assert not scp.sniff(bytes(head)) and not scp.sniff(b"")


@pytest.mark.parametrize(
    ("path", "reference"),
    [(SWIFTEEN, "save2gdf"), (SWIFTEEN, "ecgdatakit"), (CONTEC, "save2gdf")],  # ecgdatakit refuses Contec
)
def test_leads_match_the_reference_decoders(path: Path, reference: str, tmp_path: Path) -> None:
    decoded = read_format(FORMATS["scp"], path.read_bytes())
    ref = save2gdf(path, tmp_path) if reference == "save2gdf" else ecgdatakit(path)
    for lead in ("II", "V1", "V2"):
        ours = decoded.raw.signal[:, decoded.raw.sig_name.index(lead)]
        # biosig reads the Contec leads, numbered 0..10000, as 10001 samples: the last is the next lead's
        corr, ratio = _agreement(ours, ref[lead][: len(ours)])
        assert corr >= 0.98 and abs(ratio - 1) <= 0.10, (lead, corr, ratio)
        assert np.ptp(ours) > 500  # µV: a real QRS, not a flat or mis-scaled lead


def test_swifteen_metadata() -> None:
    decoded = scp.read(SWIFTEEN.read_bytes())
    raw = decoded.raw
    assert raw.signal.shape == (5000, 12) and raw.signal.dtype == np.float32 and raw.fs == 500.0
    assert raw.sig_name == TWELVE and raw.units == ["uV"] * 12 and raw.comments == []
    assert decoded.recorded_at == "2002-11-22T09:10:00" and decoded.sex == "M"
    assert decoded.device == "ECGConversion ELI250"  # tag 14: the converter names itself maker, model ELI250
    assert decoded.patient_id == "SBJ-123" and decoded.age is None  # no tag 4; the birth date is not read
    assert decoded.institution is None and decoded.statements == () and decoded.derived_leads == ()


def test_contec_metadata() -> None:
    decoded = scp.read(CONTEC.read_bytes())
    raw = decoded.raw
    assert raw.signal.shape == (10000, 8) and raw.fs == 1000.0 and raw.sig_name == TWELVE[:8]
    assert not np.isnan(raw.signal).any()
    assert decoded.recorded_at == "2004-06-24T16:52:16" and decoded.sex == "M"
    assert decoded.patient_id == "12-678-QW" and decoded.device is None and decoded.age is None


def test_names_and_birth_date_never_reach_the_result() -> None:
    for path in (SWIFTEEN, CONTEC):
        tags = read_tags(read_record(path.read_bytes()).sections[1].body)
        names = [text(tags[tag], "latin_1")[0] for tag in (0, 1) if tag in tags]
        decoded = scp.read(path.read_bytes())
        stated = repr([getattr(decoded, f) for f in Decoded.__dataclass_fields__ if f != "raw"])
        assert names and not any(name in stated for name in names)
        assert str(struct.unpack_from("<H", tags[5])[0]) not in stated  # birth year


def test_healforce_is_refused() -> None:
    with pytest.raises(ReaderError) as err:
        scp.read(HEALFORCE.read_bytes())
    assert err.value.reason == "corrupt_section" and "not EN 1064" in str(err.value)


def test_decodes_a_twelve_lead_file_quickly() -> None:
    data = SWIFTEEN.read_bytes()
    best = min(_timed(scp.read, data)[1] for _ in range(3))
    assert best < 0.1


# --- broken files ----------------------------------------------------------------------------------


def _pointer(data: bytes, sid: int) -> int:
    """The byte offset of a section's entry in Section 0."""
    return next(pos for pos in range(22, 6 + struct.unpack_from("<I", data, 10)[0], 10) if data[pos] == sid)


def test_broken_files_are_refused_with_a_reason(tmp_path: Path) -> None:
    data = SWIFTEEN.read_bytes()
    past_end = bytearray(data)
    struct.pack_into("<I", past_end, _pointer(data, 6) + 2, len(data))  # Section 6 "ends" past the file
    rng = np.random.default_rng(7)
    cases = {
        "truncated": (data[: len(data) // 2], "truncated_signal"),
        "past_end": (bytes(past_end), "corrupt_section"),
        "garbage": (data[:142] + rng.bytes(len(data) - 142), "corrupt_section"),  # after a valid Section 0
        "empty": (b"", "corrupt_section"),
    }
    for name, (broken, reason) in cases.items():
        (tmp_path / f"{name}.scp").write_bytes(broken)
        result, seconds = _timed(scp.read, (tmp_path / f"{name}.scp").read_bytes())
        assert isinstance(result, ReaderError) and result.reason == reason, (name, result)
        assert seconds < 0.5, name


def test_crc_mismatch_refuses_the_signal_only(caplog: pytest.LogCaptureFixture) -> None:
    data = SWIFTEEN.read_bytes()
    sections = bodies(SWIFTEEN)
    in_signal = bytearray(data)
    in_signal[data.index(sections[6]) + 500] ^= 0x10
    with pytest.raises(ReaderError, match="CRC mismatch in Section 6") as err:
        scp.read(bytes(in_signal))
    assert err.value.reason == "corrupt_section"
    in_tags = bytearray(data)
    in_tags[data.index(sections[1]) + sections[1].index(b"\x1b\x02\x00") + 3] ^= 0x01  # tag 27, high-pass
    with caplog.at_level("WARNING"):
        decoded = scp.read(bytes(in_tags))
    assert np.array_equal(decoded.raw.signal, scp.read(data).raw.signal) and "CRC mismatch" in caplog.text
    unchecked = bytearray(build(sections))
    offset = unchecked.index(_section(6, sections[6]))
    struct.pack_into("<H", unchecked, offset, 0)  # Section 6 without a CRC ...
    unchecked[offset + 1000] ^= 0x10  # ... and damaged
    with pytest.raises(ReaderError, match="record CRC mismatch"):
        scp.read(bytes(unchecked))


def _layout(data: bytes) -> list[tuple[int, int]]:
    """(offset, length) of each section the pointer table names."""
    entries = (
        struct.unpack_from("<HII", data, p) for p in range(22, 6 + struct.unpack_from("<I", data, 10)[0], 10)
    )
    return [(index - 1, length) for _sid, length, index in entries if length]


@pytest.mark.parametrize(
    ("path", "repair_crcs", "seen"),
    [(SWIFTEEN, False, "corrupt_section"), (SWIFTEEN, True, "read"), (CONTEC, True, "read")],
)
def test_fuzzed_files_are_read_or_refused(path: Path, repair_crcs: bool, seen: str) -> None:
    """Random bytes flipped; with the CRCs repaired the decoders see the damage themselves."""
    data, rng = path.read_bytes(), np.random.default_rng(1064)
    outcomes, slowest = set(), 0.0
    for _ in range(200 if not repair_crcs else 80):
        mutated = bytearray(data)
        for pos in rng.integers(0, len(data), size=int(rng.integers(1, 4))):
            mutated[pos] ^= int(rng.integers(1, 256))
        if repair_crcs:
            for offset, length in _layout(data):
                struct.pack_into("<H", mutated, offset, _crc(bytes(mutated[offset + 2 : offset + length])))
            struct.pack_into("<H", mutated, 0, _crc(bytes(mutated[2:])))
        result, seconds = _timed(scp.read, bytes(mutated))  # anything but a ReaderError propagates
        outcomes.add(result.reason if isinstance(result, ReaderError) else "read")
        slowest = max(slowest, seconds)
    assert slowest < 1.0 and seen in outcomes, (slowest, outcomes)


# --- codings the samples lack, in records written here ---------------------------------------------


def test_reference_beat_subtraction_is_undone() -> None:
    """The Swifteen rhythm re-encoded with a reference beat subtracted in Section 4's zones, at a
    rhythm multiplier half the beat's, decodes back to the same samples."""
    original = scp.read(SWIFTEEN.read_bytes())
    x = units(original, 2500)  # stored units, 2.5 µV
    beat, fiducial = x[1000:1599].copy(), 200  # 599 samples = 1198 ms at 500 Hz
    qrs = [(0, fc - 100, fc, fc + 150) for fc in (400, 1500, 2600, 3700)]
    qrs += [
        (1, 4600, 4700, 4800),
        (0, 4900, 4950, 5100),
    ]  # beat type 1 is not subtracted; one zone runs past the end
    residual = x * 2
    for beat_type, start, fc, end in qrs:
        if beat_type == 0:
            s = np.arange(start, min(end, 5000) + 1)  # 1-based sample numbers
            residual[s - 1] -= 2 * beat[s - fc + fiducial - 1]
    sections = bodies(SWIFTEEN)
    sections[3] = bytes([12, sections[3][1] | 1]) + sections[3][2:]
    sections[4] = struct.pack("<HHH", 1198, fiducial, len(qrs)) + b"".join(
        struct.pack("<HIII", *q) for q in qrs
    )
    sections[5] = lead_data(
        [huffman_default(second_differences(beat[:, i])) for i in range(12)], 2500, 2000, 2
    )
    sections[6] = lead_data(
        [huffman_default(second_differences(residual[:, i])) for i in range(12)], 1250, 2000, 2
    )
    decoded = scp.read(build(sections))
    np.testing.assert_array_equal(decoded.raw.signal, original.raw.signal)
    sections[3] = bytes([12, sections[3][1] & ~1]) + sections[3][2:]  # the flag off: residuals come out
    assert not np.array_equal(scp.read(build(sections)).raw.signal, original.raw.signal)


def _stored(bits: str) -> int:
    """A Section 2 base code: the first bit in bit 0."""
    return int(bits[::-1], 2)


def test_custom_huffman_tables_with_switches() -> None:
    """Two tables of the file's own, switched every 50 samples; table 2's bit counts are written
    total-first, as some writers do."""
    original = scp.read(SWIFTEEN.read_bytes())
    x = units(original, 2500)
    table1 = [(2, 2, 1, 0, "00"), (2, 10, 1, 0, "01"), (2, 18, 1, 0, "10"), (2, 2, 0, 2, "11")]
    table2 = [(17, 1, 1, 0, "0"), (1, 1, 0, 1, "1")]
    section2 = struct.pack("<H", 2)
    for table in (table1, table2):
        section2 += struct.pack("<H", len(table))
        section2 += b"".join(struct.pack("<BBBhI", a, b, m, v, _stored(c)) for a, b, m, v, c in table)
    streams = []
    for i in range(12):
        bits, table = [], 1
        for n, d in enumerate(np.diff(x[:, i], prepend=0).tolist()):
            if n and n % 50 == 0:
                bits.append("11" if table == 1 else "1")
                table = 3 - table
            if table == 2:
                bits.append("0" + format(d & 0xFFFF, "016b"))
            elif d == 0:
                bits.append("00")
            else:
                bits.append(
                    "01" + format(d & 0xFF, "08b") if -128 <= d < 128 else "10" + format(d & 0xFFFF, "016b")
                )
        stream = "".join(bits)
        stream += "1" * (-len(stream) % 8)  # padding that decodes as switches, never as values
        streams.append(int(stream, 2).to_bytes(len(stream) // 8, "big"))
    sections = bodies(SWIFTEEN)
    sections[2], sections[6] = section2, lead_data(streams, 2500, 2000, 1)
    np.testing.assert_array_equal(scp.read(build(sections)).raw.signal, original.raw.signal)


def _uncompressed(leads: list[tuple[int, int, int]], samples: list[np.ndarray]) -> bytes:
    """A record of uncompressed leads at 500 Hz, 5 µV per unit."""
    streams = [s.astype("<i2").tobytes() for s in samples]
    return build({3: lead_definition(leads, flags=4), 6: lead_data(streams, 5000, 2000, 0)})


def test_uncompressed_lead_lengths_past_16_bits() -> None:
    """40000-sample leads hold 80000 bytes: the uint16 counts wrap to 14464, Section 3 tells the rest."""
    t = np.arange(40000)
    samples = [(300 * np.sin(t / 50)).astype(np.int64), (t % 1000 - 500)]
    decoded = scp.read(_uncompressed([(1, 40000, 1), (1, 40000, 2)], samples))
    assert decoded.raw.signal.shape == (40000, 2)
    np.testing.assert_array_equal(units(decoded, 5000).T, np.stack(samples))
    with pytest.raises(ReaderError) as err:
        scp.read(_uncompressed([(1, 40000, 1)], [samples[0][:500]]))  # 1000 bytes for 40000 samples
    assert err.value.reason == "length_mismatch"


def test_leads_recorded_at_other_times_and_derived_leads() -> None:
    """I and II in samples 1-100, dIII (derived III) in 101-200; X, Y, Z alone are no ECG."""
    ramp = np.arange(100)
    decoded = scp.read(_uncompressed([(1, 100, 1), (1, 100, 2), (101, 200, 111)], [ramp, -ramp, 2 * ramp]))
    signal = decoded.raw.signal
    assert decoded.raw.sig_name == ["I", "II", "III"] and decoded.derived_leads == ("III",)
    assert signal.shape == (200, 3) and np.isnan(signal[100:, :2]).all() and np.isnan(signal[:100, 2]).all()
    np.testing.assert_array_equal(signal[100:, 2], 2 * ramp * 5.0)
    with pytest.raises(ReaderError) as err:
        scp.read(_uncompressed([(1, 100, 16), (1, 100, 17), (1, 100, 18)], [ramp] * 3))
    assert err.value.reason == "not_ecg"


def test_statements_of_sections_8_and_11() -> None:
    head = bytes([0]) + struct.pack("<HBB", 2002, 11, 22) + bytes([9, 10, 0])

    def statements(items: list[bytes]) -> bytes:
        return (
            head
            + bytes([len(items)])
            + b"".join(struct.pack("<BH", i + 1, len(s)) + s for i, s in enumerate(items))
        )

    sections = bodies(SWIFTEEN)
    sections[8] = statements([b"Sinus rhythm\0", b"Anterior infarct\0"])
    sections[11] = statements(
        [b"\x02Anterior infarct\0", b"\x03(1) AND (2)\0", b"\x01ASMI\0age undetermined\0"]
    )
    decoded = scp.read(build(sections))
    assert decoded.statements == ("Sinus rhythm", "Anterior infarct", "ASMI age undetermined")


def test_unsupported_codings_and_missing_rhythm_are_refused() -> None:
    sections = bodies(SWIFTEEN)
    bimodal = {**sections, 6: sections[6][:5] + b"\x01" + sections[6][6:]}
    no_rhythm = {sid: body for sid, body in sections.items() if sid != 6}
    for variant, reason in ((bimodal, "unsupported_coding"), (no_rhythm, "no_signal")):
        with pytest.raises(ReaderError) as err:
            scp.read(build(variant))
        assert err.value.reason == reason
