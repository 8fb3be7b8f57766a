"""SCP-ECG (EN 1064 / ISO 11073-91064, versions 1.x and 2.x) reader: the rhythm data of Section 6
in µV at its native rate, with the acquisition metadata of Section 1 and the statements of
Sections 8 and 11. The sections themselves are decoded in `tasks.ingest.readers.scp_sections`.

Codings: uncompressed int16 or Huffman (the default table or the file's own, with table switches),
none/first/second differences, and reference-beat subtraction (the Section 5 beat added back in the
Section 4 zones, each part at its own amplitude multiplier). Bimodal compression (rhythm decimated
outside the protected QRS zones) and SCP-ECG 3.0 long-term data (Section 12) are refused as
`unsupported_coding`.

CRCs: a section whose data the signal is decoded from (2, 3, 6; 4 and 5 when beats were
subtracted) that fails its CRC, or has none while the record's CRC fails, refuses the file as
`corrupt_section`: a flipped bit there changes samples silently. A mismatch anywhere else (the
record CRC, Section 1's tags, the statements) is logged and the file is read.

Identifying tags are never read: names (tags 0, 1, 3) and the birth date (tag 5) stay in the file;
the patient ID (tag 2) is handed on only to be hashed.
"""

from __future__ import annotations

import datetime as dt
import logging

import numpy as np

from tasks.ingest.readers import scp_sections as scp
from tasks.ingest.readers.base import MAX_SAMPLES, Decoded, ReaderError
from tasks.ingest.wfdb_reader import RawRecord

FORMAT = "scp_ecg"
MAX_VALUES = 1 << 25  # samples × leads of the decoded signal

logger = logging.getLogger(__name__)

_CANONICAL = {1: "I", 2: "II", 3: "V1", 4: "V2", 5: "V3", 6: "V4", 7: "V5", 8: "V6",
              61: "III", 62: "aVR", 63: "aVL", 64: "aVF"}  # fmt: skip


def _lead_table() -> dict[int, str]:
    """The standard's lead codes: 1-30 measured leads, 31-60 the same leads derived ("d" + the
    lead of code - 30), 61-85 the augmented limb leads and more (79-85 derived from 66-72), 86-151
    the ISO 11073 extension (monitoring leads; 111-120 derived from I-III, aVx and 86-90)."""
    base = ["I", "II", *(f"V{k}" for k in range(1, 8)), *(f"V{k}R" for k in range(2, 8)), "X", "Y", "Z",
            "CC5", "CM5", "LA", "RA", "LL", "fI", "fE", "fC", "fA", "fM", "fF", "fH"]  # fmt: skip
    limb = ["III", "aVR", "aVL", "aVF", "-aVR", "V8", "V9", "V8R", "V9R", "D", "A", "J", "Defib", "Extern",
            "A1", "A2", "A3", "A4"]  # fmt: skip
    monitor = ["Chest", "V", "VR", "VL", "VF", "MCL", *(f"MCL{k}" for k in range(1, 7)),
               "CC", *(f"CC{k}" for k in (1, 2, 3, 4, 6, 7)),
               "CM", *(f"CM{k}" for k in (1, 2, 3, 4, 6))]  # fmt: skip
    more = ["CM7", "CH5", "CS5", "CB5", "CR5", "ML", "AB1", "AB2", "AB3", "AB4", "ES", "AS", "AI", "S",
            "dDefib", "dExtern", "dA1", "dA2", "dA3", "dA4", *(f"dMCL{k}" for k in range(1, 7)),
            "RL", "CV5RL", "CV6LL", "CV6LU", "V10"]  # fmt: skip
    names = ["unspecified", *base, *(f"d{n}" for n in base), *limb, *(f"d{n}" for n in limb[5:12]), *monitor,
             *(f"d{n}" for n in limb[:5]), *(f"d{n}" for n in monitor[:5]), *more]  # fmt: skip
    return dict(enumerate(names))


LEAD_NAMES = _lead_table()
# tag 14 byte 8: the manufacturers the standard numbers (255: named in the tag's text instead)
_MANUFACTURERS = ("", "Burdick", "Cambridge Heart", "Compumed", "Datamed", "Fukuda", "Hewlett-Packard",
                  "Marquette Electronics", "Mortara Instruments", "Nihon Kohden", "Okin", "Quinton",
                  "Siemens", "Spacelabs", "Telemed", "Hellige", "ESA-OTE", "Schiller",
                  "Picker-Schwarzer", "et medical devices", "Zwönitz")  # fmt: skip
# tag 4 age units in years: years, months, weeks, days, hours
_AGE_UNITS = {1: 1.0, 2: 1 / 12, 3: 7 / 365.25, 4: 1 / 365.25, 5: 1 / 8766}


def sniff(head: bytes) -> bool:
    """SCP-ECG by structure: Section 0's header at byte 7 (id 0, a length of whole 10-byte pointers
    within the record length, "SCPECG" in its reserved bytes from version 2.0 on) whose first
    pointer is Section 0 itself at byte 7."""
    if len(head) < 32:
        return False
    record_len, _crc, sec_id, sec_len = scp.unpack("IHHI", head, 2, "head")
    version = head[14]
    if sec_id != 0 or sec_len < scp.HEADER + 10 or (sec_len - scp.HEADER) % 10 or record_len < 6 + sec_len:
        return False
    if version >= 20 and head[16:22] != b"SCPECG":
        return False
    return scp.unpack("HII", head, 22, "head") == (0, sec_len, scp.PREAMBLE + 1)


def read(data: bytes) -> Decoded:
    """Decode one SCP-ECG record."""
    record = scp.read_record(data)
    sections = record.sections
    if 6 not in sections:
        if 12 in record.declared or record.protocol >= 30:
            raise ReaderError(
                "unsupported_coding", "no Section 6: SCP-ECG 3.0 long-term data is not supported"
            )
        raise ReaderError("no_signal", "no rhythm data (Section 6)")
    if 3 not in sections:
        raise scp.corrupt("Section 6 holds rhythm data but there is no lead definition (Section 3)")
    leads = scp.read_leads(sections[3].body)
    used = {3, 6} | ({2} & sections.keys()) | ({4, 5} if leads.subtraction else set())
    _check_crcs(record, used)
    tags = scp.read_tags(sections[1].body) if 1 in sections else {}
    device_tag = tags.get(14) or tags.get(15) or b""
    codec = scp.text_codec(device_tag[16] if len(device_tag) > 16 else 0)
    signal, fs = _rhythm(record, leads)
    names, derived = _lead_names(leads.codes)
    if not any(name in _CANONICAL.values() for name in names):
        raise ReaderError("not_ecg", "no lead of the 12-lead ECG in Section 3")
    return Decoded(
        raw=RawRecord(signal=signal, sig_name=names, units=["uV"] * len(names), fs=fs, comments=[]),
        format=FORMAT,
        recorded_at=_recorded_at(tags),
        device=_device(device_tag, codec),
        institution=_text(tags.get(16) or tags.get(17), codec),
        age=_age(tags.get(4)),
        sex={1: "M", 2: "F"}.get(tags[8][0]) if tags.get(8) else None,
        statements=_statements(record, codec),
        patient_id=_text(tags.get(2), codec),
        derived_leads=derived,
    )


def _check_crcs(record: scp.Record, used: set[int]) -> None:
    """The CRC policy of the module docstring; `used` are the sections the signal comes from."""
    present = sorted(used & record.sections.keys())
    failed = [sid for sid in present if record.sections[sid].crc_ok is False]
    if failed:
        raise scp.corrupt(
            f"CRC mismatch in Section {', '.join(map(str, failed))}: the signal would be unreliable"
        )
    unchecked = [sid for sid in present if record.sections[sid].crc_ok is None]
    if unchecked and record.crc_ok is False:
        raise scp.corrupt(f"record CRC mismatch and no CRC in Section {', '.join(map(str, unchecked))}")
    others = sorted(sid for sid, section in record.sections.items() if section.crc_ok is False)
    if others or record.crc_ok is False:
        logger.warning(
            "SCP-ECG CRC mismatch outside the signal (sections %s, record %s), read", others, record.crc_ok
        )


def _rhythm(record: scp.Record, leads: scp.Leads) -> tuple[np.ndarray, float]:
    """Section 6 decoded into a samples × leads array in µV on one time base (leads recorded at
    other times than the rest are NaN outside their own samples), and the rate in Hz. Sample
    numbers count from 1; a file whose leads start at 0 counts from 0 with the end excluded (the
    Contec viewer writes 0..10000 for 10000 samples, its uncompressed data confirms it)."""
    sections = record.sections
    origin = 0 if len(leads.starts) and leads.starts.min() == 0 else 1
    counts = leads.ends - leads.starts + origin
    if len(counts) == 0:
        raise ReaderError("no_signal", "Section 3 defines no leads")
    if (counts < 1).any():
        raise scp.corrupt("Section 3 gives a lead that ends before it starts")
    first, span = int(leads.starts.min()), int((leads.starts + counts).max() - leads.starts.min())
    if counts.max() > MAX_SAMPLES or span > MAX_SAMPLES or span * len(counts) > MAX_VALUES:
        raise ReaderError("too_large", f"{len(counts)} leads of up to {span} samples declared")
    if span > counts.sum():
        raise scp.corrupt(f"Section 3 leads span {span} samples but hold {counts.sum()}")
    huffman = scp.read_huffman(sections[2].body) if 2 in sections else None
    sizes = None if huffman else [2 * int(c) for c in counts]
    rhythm = scp.read_lead_data(sections[6].body, len(counts), "Section 6", sizes)
    if rhythm.bimodal and record.protocol < 30:
        raise ReaderError(
            "unsupported_coding", "bimodal compression (rhythm decimated outside the QRS zones)"
        )
    values = scp.decode_leads(rhythm, [int(c) for c in counts], huffman, "Section 6")
    nanovolts = [lead * float(rhythm.avm) for lead in values]
    if leads.subtraction:
        nanovolts = _add_reference_beats(record, leads, nanovolts, rhythm.interval_us, huffman)
    signal = np.full((span, len(counts)), np.nan, dtype=np.float32)
    for i, lead in enumerate(nanovolts):
        begin = int(leads.starts[i]) - first
        signal[begin : begin + len(lead), i] = lead / 1000.0
    return signal, 1e6 / rhythm.interval_us


def _add_reference_beats(
    record: scp.Record,
    leads: scp.Leads,
    residuals: list[np.ndarray],
    interval_us: int,
    huffman: scp.Huffman | None,
) -> list[np.ndarray]:
    """Reference-beat subtraction undone: in each zone of a QRS of beat type 0 (Section 4), the
    Section 5 beat, aligned on the QRS fiducial, is added to the residual (both in nV)."""
    if 4 not in record.sections or 5 not in record.sections:
        raise scp.corrupt("reference beats were subtracted (Section 3) but Section 4 or 5 is missing")
    zones = scp.read_zones(record.sections[4].body)
    data = scp.read_lead_data(record.sections[5].body, len(residuals), "Section 5", None)
    if data.interval_us != interval_us:
        raise ReaderError("unsupported_coding", "reference beat and rhythm data at different sample rates")
    length = zones.beat_ms * 1000 // interval_us
    if length < 1:
        raise scp.corrupt(f"Section 4 gives a reference beat of {zones.beat_ms} ms")
    beats = scp.decode_leads(data, [length] * len(residuals), huffman, "Section 5")
    out = []
    for residual, beat, start in zip(residuals, beats, leads.starts, strict=True):
        signal = residual.copy()
        for beat_type, zone_start, fiducial, zone_end in zones.qrs:
            offset = fiducial - zones.fiducial + 1  # the sample number beat sample 0 lies at
            lo = max(zone_start, offset, start)
            hi = min(zone_end + 1, offset + len(beat), start + len(signal))
            if beat_type == 0 and hi > lo:
                signal[lo - start : hi - start] += beat[lo - offset : hi - offset] * float(data.avm)
        out.append(signal)
    return out


def _lead_names(codes: list[int]) -> tuple[list[str], tuple[str, ...]]:
    """Channel names from Section 3's lead codes: the canonical 12 for their codes, a lead the
    file marks as derived (code of "dIII", ...) under the measured lead's name when no measured
    copy is stored (and listed as derived), the standard's label otherwise ("lead N" if unknown)."""
    labels = [LEAD_NAMES.get(code, f"lead {code}") for code in codes]
    measured = set(labels)
    names, derived = [], []
    for label in labels:
        base = label[1:] if label.startswith("d") else None
        if base in _CANONICAL.values() and base not in measured:
            names.append(base)
            derived.append(base)
        else:
            names.append(label)
    return names, tuple(derived)


def _text(value: bytes | None, codec: str) -> str | None:
    """A Section 1 text tag, None when empty or "unknown" (writers' placeholder)."""
    found = scp.text(value, codec)[0] if value else ""
    return found if found and found.lower() != "unknown" else None


def _recorded_at(tags: dict[int, bytes]) -> str | None:
    """Tags 25 (uint16 year, month, day) and 26 (hour, minute, second) as ISO 8601, or the date
    alone when the time is missing or impossible."""
    if len(tags.get(25, b"")) < 4:
        return None
    year, month, day = scp.unpack("HBB", tags[25], 0, "tag 25")
    try:
        date = dt.date(year, month, day)
    except ValueError:
        return None
    try:
        time = dt.time(*tags[26][:3]) if len(tags.get(26, b"")) >= 3 else None
    except ValueError:
        time = None
    return dt.datetime.combine(date, time).isoformat() if time is not None else date.isoformat()


def _age(value: bytes | None) -> float | None:
    """Tag 4: uint16 age and its unit (1 years, 2 months, 3 weeks, 4 days, 5 hours), in years;
    None for 0 or an unspecified unit."""
    if value is None or len(value) < 3:
        return None
    age, unit = scp.unpack("HB", value, 0, "tag 4")
    return age * _AGE_UNITS[unit] if age and unit in _AGE_UNITS else None


def _device(value: bytes, codec: str) -> str | None:
    """Tag 14 (acquiring device; 15, the analysing one, when 14 is absent): manufacturer and model.
    The model is bytes 9-14; the manufacturer is the last of the texts from byte 37 on (program
    revision, serial number, software, SCP implementation, manufacturer), else byte 8's code."""
    model = _text(value[8:14], codec)
    texts = scp.text(value[36:], codec) if len(value) > 36 else []
    maker = texts[4] if len(texts) > 4 and texts[4].lower() != "unknown" else ""
    if not maker and len(value) > 7 and value[7] < len(_MANUFACTURERS):
        maker = _MANUFACTURERS[value[7]]
    return " ".join(part for part in (maker, model) if part) or None


def _statements(record: scp.Record, codec: str) -> tuple[str, ...]:
    """The interpretation statements of Section 8, then Section 11's not already there."""
    found: list[str] = []
    for sid in (8, 11):
        if sid in record.sections:
            found += [s for s in scp.read_statements(record.sections[sid].body, sid, codec) if s not in found]
    return tuple(found)
