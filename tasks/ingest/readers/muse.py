"""GE MUSE RestingECG XML: the rhythm waveform and what the export states about the recording.

Each lead of the `Rhythm` waveform is base64 little-endian int16 with its own sample count, scale
(`LeadAmplitudeUnitsPerBit`) and unit; the declared counts are checked against the base64 text
before it is decoded, and the CRC-32 MUSE writes per lead against the decoded bytes. MUSE stores 8
leads (I, II, V1–V6); the other limb leads follow from Einthoven's and Goldberger's equations.
The `Median` waveform (a representative beat) is not read.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import zlib
from datetime import date
from xml.etree.ElementTree import Element

import numpy as np

from data_contracts.leads import canonical_lead
from tasks.ingest.readers.base import MAX_SAMPLES, SEX_WORDS, Decoded, ReaderError
from tasks.ingest.readers.xml import element_text, parse_document, xml_root
from tasks.ingest.wfdb_reader import RawRecord

FORMAT = "ge_muse_xml"

_BYTES_PER_SAMPLE = 2  # int16; MUSE writes LeadSampleSize 2
_TO_MICROVOLTS = {"MICROVOLTS": 1.0, "MICROVOLT": 1.0, "MILLIVOLTS": 1000.0, "MILLIVOLT": 1000.0}
# Limb leads MUSE leaves out, as weights of (I, II)
_DERIVED = {"III": (-1.0, 1.0), "aVR": (-0.5, -0.5), "aVL": (1.0, -0.5), "aVF": (-0.5, 1.0)}
_AGE_UNITS_IN_YEARS = {"YEARS": 1.0, "MONTHS": 1 / 12, "WEEKS": 7 / 365.25, "DAYS": 1 / 365.25}
_DATE = re.compile(r"(\d{1,2})[-/](\d{1,2})[-/](\d{4})")
_TIME = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}))?")


def sniff(head: bytes) -> bool:
    """A MUSE export: the XML root element is `RestingECG`."""
    return xml_root(head) == "RestingECG"


def read(data: bytes) -> Decoded:
    """Decode a MUSE export: the rhythm waveform with the derived limb leads, and its metadata."""
    root = parse_document(data, "RestingECG")
    raw, derived = _rhythm(root)
    patient = root.find("PatientDemographics")
    test = root.find("TestDemographics")
    return Decoded(
        raw=raw,
        format=FORMAT,
        recorded_at=_recorded_at(_text(test, "AcquisitionDate"), _text(test, "AcquisitionTime")),
        device=_text(test, "AcquisitionDevice"),
        institution=_text(test, "SiteName") or _text(test, "LocationName"),
        age=_age(_text(patient, "PatientAge"), _text(patient, "AgeUnits")),
        sex=SEX_WORDS.get((_text(patient, "Gender") or "").upper()),
        statements=_statements(root),
        patient_id=_text(patient, "PatientID"),
        derived_leads=derived,
    )


def _text(parent: Element | None, tag: str) -> str | None:
    """The text of a child element (see `element_text`)."""
    return element_text(None if parent is None else parent.find(tag))


def _rhythm(root: Element) -> tuple[RawRecord, tuple[str, ...]]:
    """The rhythm waveform in µV (samples × leads) with III, aVR, aVL, aVF derived when absent."""
    waveform = next(
        (w for w in root.findall("Waveform") if (_text(w, "WaveformType") or "").lower() == "rhythm"), None
    )
    if waveform is None:
        raise ReaderError("no_signal", "no Rhythm waveform in the MUSE export")
    fs = _rate(waveform)
    leads = waveform.findall("LeadData")
    if not leads:
        raise ReaderError("no_signal", "the Rhythm waveform has no LeadData")
    names = [_text(lead, "LeadID") or "" for lead in leads]
    sig_name = [canonical_lead(n) or n or f"channel {k + 1}" for k, n in enumerate(names)]
    if not any(canonical_lead(n) for n in names):
        raise ReaderError("not_ecg", f"none of the {len(names)} rhythm leads is one of the 12 leads")
    # error details name a lead by its canonical name or position, never by a free-text label
    labels = [canonical_lead(n) or f"channel {k + 1}" for k, n in enumerate(names)]
    columns = [_lead_microvolts(lead, label) for lead, label in zip(leads, labels, strict=True)]
    if len({c.size for c in columns}) > 1:
        raise ReaderError("length_mismatch", f"rhythm leads differ in length: {[c.size for c in columns]}")
    signal = np.stack(columns, axis=1)
    signal, derived = _derive_limb_leads(signal, sig_name)
    raw = RawRecord(
        signal=signal.astype(np.float32),
        sig_name=sig_name + list(derived),
        units=["uV"] * (len(sig_name) + len(derived)),
        fs=fs,
        comments=[],
    )
    return raw, derived


def _rate(waveform: Element) -> float:
    """Samples per second: `SampleBase` × 10^`SampleExponent`."""
    try:
        fs = float(_text(waveform, "SampleBase") or "nan") * 10.0 ** int(
            _text(waveform, "SampleExponent") or 0
        )
    except (ValueError, OverflowError):
        fs = math.nan
    if not math.isfinite(fs) or fs <= 0:
        raise ReaderError("corrupt_section", "the Rhythm waveform has no valid SampleBase/SampleExponent")
    return fs


def _declared_int(lead: Element, tag: str, name: str) -> int | None:
    """An integer a lead declares (None when the element is absent)."""
    text = _text(lead, tag)
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        raise ReaderError("corrupt_section", f"lead {name}: {tag} is not an integer") from None


def _lead_microvolts(lead: Element, name: str) -> np.ndarray:
    """One lead's samples in µV, after checking the declared sizes against the base64 present,
    decoding, and checking the CRC-32 when the lead carries one."""
    n = _declared_int(lead, "LeadSampleCountTotal", name)
    if n is None or n < 0:
        raise ReaderError("corrupt_section", f"lead {name}: no valid LeadSampleCountTotal")
    if n > MAX_SAMPLES:
        raise ReaderError("too_large", f"lead {name} declares {n} samples (limit {MAX_SAMPLES})")
    if n == 0:
        raise ReaderError("no_signal", f"lead {name} declares no samples")
    size = _declared_int(lead, "LeadSampleSize", name)
    if size not in (None, _BYTES_PER_SAMPLE):
        raise ReaderError("unsupported_coding", f"lead {name}: {size}-byte samples (only 2 is known)")
    n_bytes = n * _BYTES_PER_SAMPLE
    if _declared_int(lead, "LeadByteCountTotal", name) not in (None, n_bytes):
        raise ReaderError("length_mismatch", f"lead {name}: LeadByteCountTotal disagrees with {n} samples")
    text = "".join((_text(lead, "WaveFormData") or "").split())
    expected = 4 * math.ceil(n_bytes / 3)
    if len(text) != expected:
        reason = "truncated_signal" if len(text) < expected else "length_mismatch"
        raise ReaderError(reason, f"lead {name}: {len(text)} base64 characters, {n} samples need {expected}")
    try:
        payload = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ReaderError("corrupt_section", f"lead {name}: WaveFormData is not valid base64") from None
    if len(payload) != n_bytes:
        raise ReaderError("length_mismatch", f"lead {name}: {len(payload)} bytes decoded, {n_bytes} declared")
    crc = _declared_int(lead, "LeadDataCRC32", name)
    if crc is not None and zlib.crc32(payload) != crc:
        raise ReaderError("corrupt_section", f"lead {name}: CRC-32 of the samples does not match")
    return np.frombuffer(payload, dtype="<i2") * _microvolts_per_bit(lead, name)


def _microvolts_per_bit(lead: Element, name: str) -> float:
    """The lead's scale in µV per stored unit."""
    unit = (_text(lead, "LeadAmplitudeUnits") or "").upper()
    if unit not in _TO_MICROVOLTS:
        raise ReaderError("unsupported_coding", f"lead {name}: amplitude unit {unit or 'missing'!r}")
    try:
        per_bit = float(_text(lead, "LeadAmplitudeUnitsPerBit") or "nan")
    except ValueError:
        per_bit = math.nan
    if not math.isfinite(per_bit) or per_bit <= 0:
        raise ReaderError("corrupt_section", f"lead {name}: no valid LeadAmplitudeUnitsPerBit")
    return per_bit * _TO_MICROVOLTS[unit]


def _derive_limb_leads(signal: np.ndarray, names: list[str]) -> tuple[np.ndarray, tuple[str, ...]]:
    """Append III, aVR, aVL, aVF computed from I and II for those the file does not store."""
    if "I" not in names or "II" not in names:
        return signal, ()
    missing = tuple(lead for lead in _DERIVED if lead not in names)
    if not missing:
        return signal, ()
    weights = np.array([_DERIVED[lead] for lead in missing]).T  # 2 × derived
    limb = signal[:, [names.index("I"), names.index("II")]]
    return np.concatenate([signal, limb @ weights], axis=1), missing


def _recorded_at(day: str | None, time: str | None) -> str | None:
    """ISO 8601 from MUSE's MM-DD-YYYY date and HH:MM:SS time (the date alone without a time)."""
    match = _DATE.fullmatch(day or "")
    if match is None:
        return None
    try:
        stamp = date(int(match[3]), int(match[1]), int(match[2])).isoformat()
    except ValueError:
        return None
    clock = _TIME.fullmatch(time or "")
    if clock is None or int(clock[1]) > 23 or int(clock[2]) > 59 or int(clock[3] or 0) > 59:
        return stamp
    return f"{stamp}T{int(clock[1]):02d}:{clock[2]}:{clock[3] or '00'}"


def _age(value: str | None, units: str | None) -> float | None:
    """Age in years from `PatientAge` in its stated `AgeUnits` (None when the unit is not stated)."""
    factor = _AGE_UNITS_IN_YEARS.get((units or "").upper())
    try:
        age = float(value) * factor if value and factor else None
    except ValueError:
        return None
    return age


def _statements(root: Element) -> tuple[str, ...]:
    """The interpretation lines of `Diagnosis` (of `OriginalDiagnosis` when there is none). A
    `DiagnosisStatement`'s `StmtText` pieces form one statement; where MUSE flags line ends
    (`StmtFlag` ENDSLINE), statements continue until the flagged one, as MUSE prints them."""
    for block in (root.find("Diagnosis"), root.find("OriginalDiagnosis")):
        if block is None:
            continue
        parts = [
            (
                " ".join(t for t in map(element_text, stmt.findall("StmtText")) if t),
                any((element_text(f) or "").upper() == "ENDSLINE" for f in stmt.findall("StmtFlag")),
            )
            for stmt in block.findall("DiagnosisStatement")
        ]
        flagged = any(end for _, end in parts)
        lines = _join_lines([(text, end or not flagged) for text, end in parts])
        if lines:
            return tuple(lines)
    return ()


def _join_lines(parts: list[tuple[str, bool]]) -> list[str]:
    """Statement pieces joined up to each one that ends a line."""
    lines: list[str] = []
    current: list[str] = []
    for text, ends_line in parts:
        if text:
            current.append(text)
        if ends_line and current:
            lines.append(" ".join(current))
            current = []
    if current:
        lines.append(" ".join(current))
    return lines
