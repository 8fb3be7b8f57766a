"""EDF and EDF+ (continuous): the ECG lead channels of a recording.

The fixed header is read here first: the declared header size, record count and samples per
record must account for every byte of the file before the bytes go to `edfio` (which reads a
short or long file with a warning only). Channels are ECG leads when their label, stripped of an
`ECG`/`EKG` prefix, names one of the 12 leads and their physical dimension is µV or mV; they must
share one sampling rate. A recording without such a channel (a sleep study) is `not_ecg`.
Patient and recording fields are read only where they follow the EDF+ layout (subfields; in
plain EDF they are free text that may hold a name): the patient code and sex, the age at the
start date from the birth date (which is not kept), the equipment.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any

import numpy as np

from data_contracts.leads import canonical_lead
from tasks.ingest.readers.base import MAX_SAMPLES, UNIT_WORDS, Decoded, ReaderError, age_at
from tasks.ingest.wfdb_reader import RawRecord

FORMAT = "edf"

_MAGIC = b"0       "
_FIXED = 256  # bytes of the fixed header; each signal adds 256
_SIGNAL_FIELDS = (16, 80, 8, 8, 8, 8, 8, 80, 8, 32)  # label ... samples per record, reserved
_SAMPLES_FIELD = 8  # index of "samples per data record" in _SIGNAL_FIELDS
_BYTES_PER_SAMPLE = 2
_ECG_PREFIX = re.compile(r"^\s*(?:ECG|EKG)[\s_\-.:]*", re.IGNORECASE)
# The EDF+ layouts of the patient and recording fields (space-separated subfields, X when unknown)
_EDF_DATE = r"(?:X|\d{2}-[A-Z]{3}-\d{4})"
_EDF_PLUS_PATIENT = re.compile(rf"\S+ [MFX] {_EDF_DATE} \S+")
_EDF_PLUS_RECORDING = re.compile(rf"Startdate {_EDF_DATE} \S+ \S+ \S+")


def sniff(head: bytes) -> bool:
    """An EDF/EDF+ file: the version field is `0` padded to 8 bytes."""
    return head.startswith(_MAGIC)


def read(data: bytes) -> Decoded:
    """Decode an EDF/EDF+ file: its ECG lead channels at their common rate, and the metadata."""
    if not sniff(data):
        raise ReaderError("corrupt_section", "no EDF version field")
    _check_sizes(data)
    import edfio

    try:
        edf = edfio.read_edf(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ReaderError("corrupt_section", f"EDF header not decodable: {type(exc).__name__}") from None
    if edf.reserved.startswith("EDF+D"):
        raise ReaderError("unsupported_coding", "EDF+D: discontinuous records")
    start = _start(edf)
    structured_patient = bool(_EDF_PLUS_PATIENT.match(edf.local_patient_identification))
    structured_recording = bool(_EDF_PLUS_RECORDING.match(edf.local_recording_identification))
    sex = _subfield(edf, "patient", "sex") if structured_patient else None
    equipment = _subfield(edf, "recording", "equipment_code") if structured_recording else None
    return Decoded(
        raw=_leads(edf),
        format=FORMAT,
        recorded_at=start.isoformat() if start else None,
        device=equipment.replace("_", " ") if equipment else None,
        age=_age(edf, start) if structured_patient else None,
        sex=sex if sex in ("M", "F") else None,
        patient_id=_subfield(edf, "patient", "code") if structured_patient else None,
    )


def _field_int(value: bytes, what: str) -> int:
    """An integer header field (ASCII, space padded)."""
    try:
        return int(value.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        raise ReaderError("corrupt_section", f"EDF header: {what} is not an integer") from None


def _check_sizes(data: bytes) -> None:
    """The header's declared sizes against the bytes present: header bytes = 256 × (signals + 1),
    and header + records × record bytes = the file length."""
    if len(data) < _FIXED:
        raise ReaderError("truncated_signal", f"{len(data)} bytes: the 256-byte EDF header is cut off")
    header_bytes = _field_int(data[184:192], "header size")
    records = _field_int(data[236:244], "number of data records")
    try:
        duration = float(data[244:252].decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        duration = float("nan")
    if not duration > 0:
        raise ReaderError("corrupt_section", "EDF header: no positive data record duration")
    signals = _field_int(data[252:256], "number of signals")
    if signals <= 0:
        raise ReaderError("no_signal", f"the EDF header declares {signals} signals")
    if header_bytes != _FIXED * (signals + 1):
        raise ReaderError("corrupt_section", f"header size {header_bytes} for {signals} signals")
    if len(data) < header_bytes:
        raise ReaderError("truncated_signal", f"{len(data)} bytes: the {header_bytes}-byte header is cut off")
    offset = _FIXED + signals * sum(_SIGNAL_FIELDS[:_SAMPLES_FIELD])
    width = _SIGNAL_FIELDS[_SAMPLES_FIELD]
    per_record = [
        _field_int(data[offset + k * width : offset + (k + 1) * width], "samples per record")
        for k in range(signals)
    ]
    if min(per_record) <= 0 or records <= 0:
        raise ReaderError("no_signal", f"{records} data records of {min(per_record)}+ samples declared")
    if records * max(per_record) > MAX_SAMPLES:
        raise ReaderError(
            "too_large", f"{records * max(per_record)} samples per channel (limit {MAX_SAMPLES})"
        )
    expected = header_bytes + records * sum(per_record) * _BYTES_PER_SAMPLE
    if len(data) != expected:
        reason = "truncated_signal" if len(data) < expected else "length_mismatch"
        raise ReaderError(reason, f"{len(data)} bytes, the header declares {expected}")


def _lead_name(label: str) -> str | None:
    """The canonical lead a channel label names (`ECG I`, `EKG-II`, `V1`, `Lead aVR`), else None."""
    return canonical_lead(_ECG_PREFIX.sub("", label)) or canonical_lead(label)


def _leads(edf: Any) -> RawRecord:
    """The ECG lead channels (physical values, float32) at their shared sampling rate."""
    signals = list(edf.signals)
    chosen = [
        (s, name, UNIT_WORDS[s.physical_dimension.strip().lower()])
        for s in signals
        if (name := _lead_name(s.label)) and s.physical_dimension.strip().lower() in UNIT_WORDS
    ]
    if not chosen:
        labels = [s.label.strip() for s in signals]
        raise ReaderError("not_ecg", f"no 12-lead ECG channel in µV/mV among {labels[:32]}")
    rates = sorted({s.sampling_frequency for s, _, _ in chosen})
    if len(rates) > 1:
        raise ReaderError("unsupported_coding", f"the ECG channels have different rates {rates}")
    # channel-major, returned as its transpose (samples × channels, Fortran order): each lead
    # stays one contiguous row for harmonization, and no interleaving copy is made
    signal = np.empty((len(chosen), chosen[0][0].digital.size), np.float32)
    for row, (s, _, _) in zip(signal, chosen, strict=True):
        row[:] = s.data
    return RawRecord(
        signal=signal.T,
        sig_name=[name for _, name, _ in chosen],
        units=[unit for _, _, unit in chosen],
        fs=float(rates[0]),
        comments=[],
    )


def _start(edf: Any) -> datetime | None:
    """The recording start as stated (EDF+ four-digit year when present), None when invalid."""
    try:
        return datetime.combine(edf.startdate, edf.starttime)
    except (ValueError, TypeError):
        return None


def _subfield(edf: Any, field: str, name: str) -> str | None:
    """An EDF+ patient/recording subfield; None when anonymized (`X`) or unreadable."""
    try:
        value = str(getattr(getattr(edf, field), name))
    except (ValueError, AttributeError):
        return None
    return None if value in ("", "X") else value


def _age(edf: Any, start: datetime | None) -> float | None:
    """Completed years from the EDF+ birth date to the start date (the birth date is not kept)."""
    try:
        birth: date = edf.patient.birthdate
    except (ValueError, AttributeError):
        return None
    return age_at(birth, start.date() if start is not None else None)
