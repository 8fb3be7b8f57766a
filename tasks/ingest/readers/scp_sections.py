"""The sections of an SCP-ECG record (EN 1064 / ISO 11073-91064), each decoded on its own with every
length it declares checked against the bytes present; `tasks.ingest.readers.scp` puts them together.

A record is a CRC (2 bytes) and the record length (uint32), then sections. Every section starts
with a 16-byte header: CRC-CCITT of the rest of the section, section id, section length, section
version, protocol version and 6 reserved bytes ("SCPECG" in Section 0 from version 2.0 on).
Section 0 is the pointer table: per section id its length and 1-based byte index. All integers are
little-endian. The sections read here are 1 (patient and acquisition tags), 2 (Huffman tables),
3 (lead definitions), 4 (QRS locations and subtraction zones), 5 and 6 (reference beat and rhythm
data) and 8/11 (interpretation statements); sections 7, 9, 10 (measurements, vendor data) and the
manufacturer sections from 12 on are not read, not even their headers.
"""

from __future__ import annotations

import binascii
import itertools
import struct
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from tasks.ingest.readers.base import ReaderError

HEADER = 16
PREAMBLE = 6  # record CRC and record length before Section 0
DEFAULT_HUFFMAN = 19999  # Section 2 table count that means "the standard's default table"
MAX_TABLES = 16  # Huffman tables decoded at once (lookup arrays of 2**16 entries each)
MAX_PREFIX = 16  # longest Huffman prefix the lookup arrays resolve
MAX_NODES = 1 << 22  # stream bits × tables the vectorized Huffman decoder walks in one go
_SPARE_BITS = 32  # zero bits after a stream, so that windows near its end stay in bounds


def corrupt(detail: str) -> ReaderError:
    """The error for a structure that contradicts itself or the standard."""
    return ReaderError("corrupt_section", detail)


def unpack(fmt: str, buf: bytes, pos: int, what: str) -> tuple[int, ...]:
    """`struct.unpack_from` of little-endian fields, refused as `corrupt_section` when `buf` ends
    before them (every read of a declared structure goes through here)."""
    layout = struct.Struct("<" + fmt)
    if pos < 0 or pos + layout.size > len(buf):
        raise corrupt(f"{what} needs {pos + layout.size} bytes, {len(buf)} present")
    return layout.unpack_from(buf, pos)


def crc_matches(stored: int, covered: bytes) -> bool | None:
    """CRC-CCITT (polynomial 0x1021, initial 0xFFFF) check; None when no CRC was written (0 or
    0xFFFF, the values writers leave in an unfilled field)."""
    if stored in (0, 0xFFFF):
        return None
    return binascii.crc_hqx(covered, 0xFFFF) == stored


# --- Section 0: the pointer table ------------------------------------------------------------------


@dataclass(frozen=True)
class Section:
    """One section: its body (after the header) and whether its CRC matched (None: none written)."""

    body: bytes
    crc_ok: bool | None


@dataclass(frozen=True)
class Record:
    """The sections this reader uses (`USED`), the ids of all sections Section 0 points to, the
    record CRC check and the protocol version (Section 0's header: 10-13 for 1.x, 20 for 2.0)."""

    sections: dict[int, Section]
    declared: frozenset[int]
    crc_ok: bool | None
    protocol: int


USED = frozenset({1, 2, 3, 4, 5, 6, 8, 11})


def read_record(data: bytes) -> Record:
    """Section 0 and the headers of the sections it points to that this reader uses (the others,
    measurements and manufacturer sections, are never read). Section 0 must sit at byte 7 and
    point to itself there; a record length beyond the bytes present is `truncated_signal`; a used
    section outside the file or whose header names another id is `corrupt_section`."""
    if len(data) < PREAMBLE + HEADER:
        raise corrupt(f"{len(data)} bytes is too short for an SCP-ECG record")
    (record_len,) = unpack("I", data, 2, "record")
    sec_id, sec_len = unpack("HI", data, 8, "Section 0")
    if sec_id != 0 or sec_len < HEADER:
        raise corrupt("no Section 0 header at byte 7")
    if PREAMBLE + sec_len > len(data):
        if record_len > len(data):
            raise ReaderError("truncated_signal", f"record declares {record_len} bytes, {len(data)} present")
        raise corrupt(f"Section 0 declares {sec_len} bytes, past the end of the file")
    pointers = [unpack("HII", data, pos, "Section 0") for pos in range(22, PREAMBLE + sec_len - 9, 10)]
    for sid, _length, index in pointers:
        if sid == 0 and index != PREAMBLE + 1:
            raise corrupt(f"Section 0 points to itself at byte {index}, not 7 (not EN 1064)")
    if record_len > len(data):
        raise ReaderError("truncated_signal", f"record declares {record_len} bytes, {len(data)} present")
    if record_len < PREAMBLE + sec_len:
        raise corrupt(f"record length {record_len} is shorter than its Section 0")
    sections: dict[int, Section] = {}
    for sid, length, index in pointers:
        if sid in USED and length:
            if sid in sections:
                raise corrupt(f"Section 0 points to Section {sid} twice")
            sections[sid] = _section(data, sid, length, index)
    record_crc = crc_matches(unpack("H", data, 0, "record")[0], data[2:record_len])
    declared = frozenset(sid for sid, length, _index in pointers if length)
    return Record(sections, declared, record_crc, data[PREAMBLE + 9])


def _section(data: bytes, sid: int, length: int, index: int) -> Section:
    """One section from its pointer (1-based byte index). The pointer and the section's own header
    must agree on the length, or differ by a multiple of 65536 (a 16-bit overflow in one of them:
    the larger is the real extent, its CRC confirms it); otherwise the shorter is read."""
    start = index - 1
    if index == 0 or start + length > len(data) or length < HEADER:
        raise corrupt(
            f"Section {sid} pointer ({length} bytes at byte {index}) does not fit the {len(data)}-byte file"
        )
    crc, own_id, own_len = unpack("HHI", data, start, f"Section {sid}")
    if own_id != sid:
        raise corrupt(f"Section 0 points to Section {sid} at byte {index}, whose header says {own_id}")
    if own_len != length:
        length = max(own_len, length) if (own_len - length) % 65536 == 0 else min(own_len, length)
        if length < HEADER or start + length > len(data):
            raise corrupt(f"Section {sid} header declares {own_len} bytes, past the end of the file")
    section = data[start : start + length]
    return Section(section[HEADER:], crc_matches(crc, section[2:]))


# --- Section 1: patient and acquisition tags -------------------------------------------------------


def read_tags(body: bytes) -> dict[int, bytes]:
    """Section 1's tags (tag byte, uint16 length, value) up to tag 255, first occurrence of each.
    A tag whose length runs past the section ends the walk: what came before is kept."""
    tags: dict[int, bytes] = {}
    pos = 0
    while pos + 3 <= len(body):
        tag, length = body[pos], int.from_bytes(body[pos + 1 : pos + 3], "little")
        if tag == 255 or pos + 3 + length > len(body):
            break
        tags.setdefault(tag, body[pos + 3 : pos + 3 + length])
        pos += 3 + length
    return tags


# ISO 8859 parts and multi-byte sets named by the language support code (tag 14, byte 17)
_CODECS = {
    0x03: "iso8859_2", 0x0B: "iso8859_4", 0x13: "iso8859_5", 0x1B: "iso8859_6", 0x23: "iso8859_7",
    0x2B: "iso8859_8", 0x33: "iso8859_11", 0x3B: "iso8859_15", 0x07: "utf_16_le", 0x0F: "shift_jis",
    0x17: "euc_jp", 0x1F: "euc_jp", 0x27: "gb2312", 0x2F: "euc_kr",
}  # fmt: skip


def text_codec(language: int) -> str:
    """The Python codec of a language support code: bit 0 clear is ASCII and x1 ISO 8859-1 (both
    read as Latin-1, which never fails), other codes per the standard's table."""
    return _CODECS.get(language, "latin_1")


def text(raw: bytes, codec: str) -> list[str]:
    """The NUL-separated parts of a text field, decoded, each with control characters dropped and
    blanks trimmed (a UTF-16 field is decoded before it is split, so its zero bytes are no end)."""
    decoded = raw[: len(raw) // 2 * 2 if codec == "utf_16_le" else len(raw)].decode(codec, errors="replace")
    return ["".join(ch for ch in part if ch.isprintable()).strip() for part in decoded.split("\0")]


# --- Section 2: Huffman tables ---------------------------------------------------------------------


@dataclass(frozen=True)
class Huffman:
    """Section 2's tables as lookup arrays: `lookup[t, w]` is the code of table t whose prefix
    starts the `width`-bit window w (-1: none). Per code: `prefix` and `extra` bit counts (a code
    with extra bits carries its value there, as a two's-complement number), `target` (the 0-based
    table a switch code selects, -1 for a value code) and `value`."""

    width: int
    lookup: np.ndarray
    prefix: np.ndarray
    extra: np.ndarray
    target: np.ndarray
    value: np.ndarray


def _default_codes() -> list[tuple[int, int, int, int, int]]:
    """The standard's default table (19999) as (prefix bits, total bits, mode, value, code with
    the first bit most significant): 0 is "0"; ±m (m ≤ 8) is m ones, a zero and the sign bit;
    ten ones but the last zero, then 8 bits, or ten ones, then 16 bits, carry any other value."""
    codes = [(1, 1, 1, 0, 0)]
    for m in range(1, 9):
        codes += [(m + 2, m + 2, 1, m, ((1 << m) - 1) << 2), (m + 2, m + 2, 1, -m, (((1 << m) - 1) << 2) | 1)]
    return [*codes, (10, 18, 1, 0, 0b1111111110), (10, 26, 1, 0, 0b1111111111)]


def read_huffman(body: bytes) -> Huffman:
    """Section 2: the table count (19999: the default table), then per table the code count and
    9 bytes per code: prefix bits, total bits (writers disagree on the order of these two; the
    prefix is the smaller), mode (1 value, 0 switch to the table numbered by the value, from 1),
    base value (int16) and the prefix bits stored first-bit-in-bit-0 (uint32)."""
    (count,) = unpack("H", body, 0, "Section 2")
    if count == DEFAULT_HUFFMAN:
        return _build([_default_codes()])
    if not 1 <= count <= MAX_TABLES:
        raise ReaderError("unsupported_coding", f"Section 2 declares {count} Huffman tables")
    tables, pos = [], 2
    for t in range(count):
        (n_codes,) = unpack("H", body, pos, f"Section 2 table {t + 1}")
        codes = []
        for i in range(n_codes):
            a, b, mode, value, stored = unpack("BBBhI", body, pos + 2 + 9 * i, f"Section 2 table {t + 1}")
            prefix, total = min(a, b), max(a, b)
            if prefix == 0:
                raise corrupt(f"Section 2 table {t + 1} holds a code without bits")
            if prefix > MAX_PREFIX or total - prefix > 32:
                raise ReaderError("unsupported_coding", f"Huffman code of {prefix}+{total - prefix} bits")
            code = int(f"{stored & ((1 << prefix) - 1):0{prefix}b}"[::-1], 2)
            codes.append((prefix, total, mode, value, code))
        tables.append(codes)
        pos += 2 + 9 * n_codes
    return _build(tables)


def _build(tables: list[list[tuple[int, int, int, int, int]]]) -> Huffman:
    """Lookup arrays of code tables; a table that is not prefix-free, has no codes or switches to
    a table that does not exist is `corrupt_section`."""
    flat = [code for table in tables for code in table]
    if not all(tables):
        raise corrupt("Section 2 holds a Huffman table without codes")
    width = max(prefix for prefix, *_ in flat)
    lookup = np.full((len(tables), 1 << width), -1, dtype=np.int32)
    index = 0
    for t, table in enumerate(tables):
        for prefix, _total, _mode, _value, code in table:
            span = slice(code << (width - prefix), (code + 1) << (width - prefix))
            if (lookup[t, span] >= 0).any():
                raise corrupt(f"Huffman table {t + 1} is not prefix-free")
            lookup[t, span] = index
            index += 1
    prefix, total, mode, value, _code = np.array(flat, dtype=np.int64).T
    target = np.where(mode == 0, value - 1, -1)
    if ((target < -1) | (target >= len(tables))).any():
        raise corrupt("a Huffman code switches to a table Section 2 does not hold")
    return Huffman(width, lookup, prefix, total - prefix, target, value)


def huffman_decode(stream: bytes, count: int, huffman: Huffman, what: str) -> np.ndarray:
    """The first `count` values of one lead's Huffman bit stream (first bit: the most significant
    bit of the first byte), starting in table 1 as every lead does.

    Vectorized: every (bit position, table) pair is a node whose code leads to the next node; the
    nodes reachable from (0, table 1) are found by pointer doubling (log2(bits) numpy steps instead
    of a Python step per code) and are the decoded path, in bit order. Bits after the last value
    are padding and may hold anything."""
    n_tables, n_bits = len(huffman.lookup), len(stream) * 8
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    if n_bits * n_tables > MAX_NODES:
        raise ReaderError("unsupported_coding", f"{what}: Huffman stream of {len(stream)} bytes is too long")
    bits = np.unpackbits(np.frombuffer(stream, dtype=np.uint8))
    bits = np.concatenate([bits, np.zeros(max(huffman.width, _SPARE_BITS), dtype=np.uint8)])
    windows = sliding_window_view(bits, huffman.width)[:n_bits] @ (1 << np.arange(huffman.width)[::-1])
    code = huffman.lookup[:, windows].T.ravel()  # node p * n_tables + t
    known = code >= 0
    code = np.where(known, code, 0)
    position = np.repeat(np.arange(n_bits, dtype=np.int64), n_tables)
    end = position + huffman.prefix[code] + huffman.extra[code]
    table = np.where(huffman.target[code] >= 0, huffman.target[code], np.tile(np.arange(n_tables), n_bits))
    whole = known & (end <= n_bits)  # a complete code starts here
    sink = n_bits * n_tables
    jump = np.append(np.where(whole & (end < n_bits), end * n_tables + table, sink), sink)
    reached = np.zeros(sink + 1, dtype=bool)
    reached[0] = True
    steps = 1
    while steps < n_bits:  # reached: nodes within `steps` codes of the start; jump: `steps` codes on
        reached[jump[reached]] = True
        jump = jump[jump]
        steps *= 2
    nodes = np.flatnonzero(reached[:-1] & whole & (huffman.target[code] < 0))
    if len(nodes) < count:
        raise corrupt(f"{what}: Huffman data decodes to {len(nodes)} of {count} samples")
    nodes, code = nodes[:count], code[nodes[:count]]
    values = huffman.value[code]
    extra = huffman.extra[code]
    carried = np.flatnonzero(extra > 0)
    if len(carried):
        start = nodes[carried] // n_tables + huffman.prefix[code[carried]]
        raw = sliding_window_view(bits, _SPARE_BITS)[start] @ (
            1 << np.arange(_SPARE_BITS, dtype=np.int64)[::-1]
        )
        width = extra[carried]
        raw >>= _SPARE_BITS - width
        values[carried] = raw - ((raw >> (width - 1)) << width)
    return values


def undo_differences(values: np.ndarray, order: int) -> np.ndarray:
    """Samples from the stored values: 0 as they are, 1 first differences (x[n] = d[n] + x[n-1]),
    2 second differences (x[n] = d[n] + 2x[n-1] - x[n-2]; x[0] and x[1] stored as they are)."""
    if order == 0 or len(values) < 2:
        return values
    if order == 1:
        return np.cumsum(values)
    slopes = values.copy()
    slopes[1] -= 2 * values[0]  # so that a running sum gives x[0], then x[n] - x[n-1]
    return np.cumsum(np.cumsum(slopes))


# --- Sections 3 and 4: lead definitions, QRS locations ---------------------------------------------


@dataclass(frozen=True)
class Leads:
    """Section 3: per lead the first and last sample number and the lead code; `subtraction`
    (flag bit 0): reference beats were subtracted in Section 4's zones before encoding."""

    starts: np.ndarray
    ends: np.ndarray
    codes: list[int]
    subtraction: bool


def read_leads(body: bytes) -> Leads:
    """Section 3: lead count, flags (bit 0 reference-beat subtraction, bit 2 all leads
    simultaneous, bits 3-7 how many are), then per lead uint32 start and end sample and a code."""
    count, flags = unpack("BB", body, 0, "Section 3")
    fields = [unpack("IIB", body, 2 + 9 * i, "Section 3") for i in range(count)]
    starts, ends, codes = zip(*fields, strict=True) if fields else ((), (), ())
    return Leads(
        np.array(starts, dtype=np.int64), np.array(ends, dtype=np.int64), list(codes), bool(flags & 1)
    )


@dataclass(frozen=True)
class Zones:
    """Section 4: the reference beat's length (ms) and fiducial sample (1-based within the beat),
    and per QRS complex its beat type and subtraction zone start, fiducial and end samples."""

    beat_ms: int
    fiducial: int
    qrs: list[tuple[int, int, int, int]]


def read_zones(body: bytes) -> Zones:
    """Section 4: uint16 reference beat length, fiducial and QRS count, then 14 bytes per QRS:
    uint16 beat type, uint32 subtraction start, fiducial and end (the protected zones that follow
    serve bimodal compression only)."""
    beat_ms, fiducial, count = unpack("HHH", body, 0, "Section 4")
    qrs = [unpack("HIII", body, 6 + 14 * i, "Section 4 QRS locations") for i in range(count)]
    return Zones(beat_ms, fiducial, qrs)


# --- Sections 5 and 6: reference beats and rhythm data ---------------------------------------------


@dataclass(frozen=True)
class LeadData:
    """Section 5 or 6: amplitude value multiplier (nV per unit), sample interval (µs), difference
    encoding (0 none, 1 first, 2 second differences), byte 6 (bimodal compression in Section 6 up
    to version 2.x) and each lead's encoded bytes."""

    avm: int
    interval_us: int
    differences: int
    bimodal: int
    streams: list[bytes]


def read_lead_data(body: bytes, n_leads: int, what: str, sizes: list[int] | None) -> LeadData:
    """Section 5 or 6 header (uint16 AVM, uint16 interval, difference byte, byte 6), a uint16 byte
    length per lead, then the leads' data. `sizes` are the byte lengths uncompressed leads must
    have (None for Huffman data): a uint16 length that equals one of them modulo 65536 is taken as
    a 16-bit overflow and read at its real size; Huffman streams cannot be delimited that way."""
    avm, interval, differences, bimodal = unpack("HHBB", body, 0, what)
    lengths = list(unpack(f"{n_leads}H", body, 6, what))
    if sizes is not None:
        lengths = [
            need if need > length and need % 65536 == length else length
            for length, need in zip(lengths, sizes, strict=True)
        ]
    pos = 6 + 2 * n_leads
    if pos + sum(lengths) > len(body):
        raise corrupt(
            f"{what} lead data ({sum(lengths)} bytes) runs past the section ({len(body) - pos} bytes)"
        )
    if avm == 0 or interval == 0:
        raise corrupt(
            f"{what} declares an amplitude multiplier of {avm} nV and a sample interval of {interval} µs"
        )
    if differences not in (0, 1, 2):
        raise ReaderError("unsupported_coding", f"{what} difference encoding {differences} is not 0, 1 or 2")
    offsets = np.cumsum([pos, *lengths])
    streams = [body[a:b] for a, b in itertools.pairwise(offsets)]
    return LeadData(avm, interval, differences, bimodal, streams)


def decode_leads(data: LeadData, counts: list[int], huffman: Huffman | None, what: str) -> list[np.ndarray]:
    """Each lead's samples (int64, stored units): Huffman-decoded or read as int16, then the
    difference encoding undone. An uncompressed lead shorter than its count is `length_mismatch`."""
    out = []
    for i, (stream, count) in enumerate(zip(data.streams, counts, strict=True)):
        where = f"{what} lead {i + 1}"
        if huffman is not None:
            values = huffman_decode(stream, count, huffman, where)
        elif len(stream) < 2 * count:
            raise ReaderError("length_mismatch", f"{where} holds {len(stream) // 2} of {count} samples")
        else:
            values = np.frombuffer(stream, dtype="<i2", count=count).astype(np.int64)
        out.append(undo_differences(values, data.differences))
    return out


# --- Sections 8 and 11: interpretation statements --------------------------------------------------


def read_statements(body: bytes, sid: int, codec: str) -> list[str]:
    """Section 8 (full-text statements) or 11 (universal statements): confirmation byte, date,
    time and statement count (9 bytes), then per statement a sequence number, uint16 length and
    the text; a Section 11 statement starts with its type, of which 1 (codes) and 2 (full text)
    are read and 3 (statement logic) is not. NUL-separated parts are joined with spaces."""
    (count,) = unpack("B", body, 8, f"Section {sid}")
    out, pos = [], 9
    for _ in range(count):
        (length,) = unpack("H", body, pos + 1, f"Section {sid}")
        value = body[pos + 3 : pos + 3 + length]
        if len(value) < length:
            raise corrupt(f"Section {sid} statement runs past the section")
        pos += 3 + length
        if sid == 11:
            if value[:1] not in (b"\x01", b"\x02"):
                continue
            value = value[1:]
        line = " ".join(part for part in text(value, codec) if part)
        if line:
            out.append(line)
    return out
