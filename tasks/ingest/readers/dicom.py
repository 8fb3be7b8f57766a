"""DICOM waveform (12-lead ECG, general ECG, hemodynamic ...): the rhythm multiplex group.

`pydicom` parses the file and converts a multiplex group to physical values
(`Dataset.waveform_array`); before that, each group's declared samples × channels × bytes is
checked against its `WaveformData`, and the file against its own length (pydicom reads a
truncated element silently). The SOP class is not trusted: any waveform group whose channels
are ECG leads is read, and the rhythm is the group labelled RHYTHM or else the longest one that
is not a median/representative beat. Leads are named from the channel source code (SCPECG
`5.6.3-9-N` or MDC `2:N`) or its meaning; an inverted lead (`-aVR`) is turned back.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from io import BytesIO
from typing import Any

import numpy as np

from data_contracts.leads import canonical_lead
from tasks.ingest.readers.base import MAX_SAMPLES, UNIT_WORDS, Decoded, ReaderError
from tasks.ingest.wfdb_reader import RawRecord

FORMAT = "dicom"

_PREAMBLE = 128
_MAGIC = b"DICM"
_UNDEFINED_LENGTH = 0xFFFFFFFF
_META_MAX = 4096
_DEFLATED = b"1.2.840.10008.1.2.1.99"  # pydicom inflates the whole dataset in memory
# SCP-ECG / ISO 11073-10101 lead numbers, shared by SCPECG "5.6.3-9-N" and MDC "2:N" codes
_LEAD_NUMBERS = {
    1: "I", 2: "II", 3: "V1", 4: "V2", 5: "V3", 6: "V4", 7: "V5", 8: "V6",
    61: "III", 62: "aVR", 63: "aVL", 64: "aVF",
}  # fmt: skip
_LEAD_CODE = re.compile(r"(?:5\.6\.3-9-|2:)(\d+)")
_INVERTED = re.compile(r"(?:lead\s*)?-", re.IGNORECASE)
# Sample interpretations `waveform_array` converts as they are (not the µ-law/A-law ones)
_SAMPLE_BYTES = {"SB": 1, "UB": 1, "SS": 2, "US": 2, "SL": 4, "UL": 4, "SV": 8, "UV": 8}
_BEAT_WORDS = ("MEDIAN", "REPRESENTATIVE", "AVERAGE", "TEMPLATE", "BEAT")
_AGE_UNITS_IN_YEARS = {"Y": 1.0, "M": 1 / 12, "W": 7 / 365.25, "D": 1 / 365.25}


@dataclass(frozen=True)
class _Channel:
    """A channel's lead name (canonical when identified), voltage unit (None when not a
    voltage) and sign (-1 for an inverted lead)."""

    name: str
    unit: str | None
    sign: float


def sniff(head: bytes) -> bool:
    """A DICOM Part 10 file: `DICM` after the 128-byte preamble."""
    return head[_PREAMBLE : _PREAMBLE + len(_MAGIC)] == _MAGIC


def read(data: bytes) -> Decoded:
    """Decode a DICOM waveform file: the rhythm group's ECG leads and the stated metadata."""
    if not sniff(data):
        raise ReaderError("corrupt_section", f"no DICM magic after the preamble ({len(data)} bytes)")
    if _DEFLATED in _file_meta(data):
        raise ReaderError("unsupported_coding", "deflated transfer syntax (inflated without a size bound)")
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(BytesIO(data))
        _check_complete(ds, len(data))
        return _decode(ds)
    except ReaderError:
        raise
    except (EOFError, OSError) as exc:
        raise ReaderError(
            "truncated_signal", f"DICOM data ends inside an element ({type(exc).__name__})"
        ) from None
    except (
        InvalidDicomError,
        ValueError,
        TypeError,
        KeyError,
        IndexError,
        AttributeError,
        struct.error,
    ) as exc:
        raise ReaderError("corrupt_section", f"DICOM element not decodable: {type(exc).__name__}") from None


def _file_meta(data: bytes) -> bytes:
    """The bytes of the file meta group: its declared group length when it starts with one
    (explicit VR little endian, as Part 10 requires), else the first `_META_MAX` bytes."""
    start = _PREAMBLE + len(_MAGIC)
    group_length = data[start : start + 6] == b"\x02\x00\x00\x00UL"
    length = int.from_bytes(data[start + 8 : start + 12], "little") if group_length else _META_MAX
    return data[start : start + 12 + min(length, _META_MAX)]


def _check_complete(ds: Any, size: int) -> None:
    """Refuse a file whose file meta is missing (garbage after the magic) or whose last
    top-level element does not end where the file does: pydicom reads a value cut short as it
    is and ignores a cut element header (a sequence's end is checked by pydicom itself; a file
    cut exactly between two elements reads as a shorter dataset without its waveform)."""
    if "TransferSyntaxUID" not in ds.file_meta:
        raise ReaderError("corrupt_section", "no DICOM file meta information after the DICM magic")
    last = ds.get_item(max(ds.keys())) if len(ds) else None  # raw: ds[tag] would convert it
    tell = getattr(last, "value_tell", None)
    if tell is not None and last.length != _UNDEFINED_LENGTH and tell + last.length != size:
        raise ReaderError("truncated_signal", f"the last element ends at byte {tell + last.length} of {size}")


def _decode(ds: Any) -> Decoded:
    """The rhythm and metadata of a parsed dataset."""
    groups = list(ds.get("WaveformSequence") or [])
    if not groups:
        sop_class = ds.get("SOPClassUID") or ds.file_meta.get("MediaStorageSOPClassUID")
        if "Waveform" in getattr(sop_class, "name", ""):
            raise ReaderError("no_signal", "a waveform SOP class without a WaveformSequence")
        raise ReaderError("not_ecg", "no WaveformSequence in the DICOM file")
    if not ds.original_encoding[1]:
        raise ReaderError("unsupported_coding", "big-endian waveform data")
    channels = [[_channel(c) for c in _checked(group, k)] for k, group in enumerate(groups)]
    index = _rhythm_group(groups, channels)
    device = [v for v in (_text(ds, "Manufacturer"), _text(ds, "ManufacturerModelName")) if v]
    sex = _text(ds, "PatientSex")
    return Decoded(
        raw=_rhythm(ds, index, groups[index], channels[index]),
        format=FORMAT,
        recorded_at=_recorded_at(ds),
        device=" ".join(device) or None,
        institution=_text(ds, "InstitutionName"),
        age=_age(_text(ds, "PatientAge")),
        sex=sex if sex in ("M", "F") else None,
        statements=tuple(
            text
            for item in ds.get("WaveformAnnotationSequence") or []
            if (text := " ".join(str(item.get("UnformattedTextValue") or "").split()))
        ),
        patient_id=_text(ds, "PatientID"),
    )


def _text(ds: Any, keyword: str) -> str | None:
    """A top-level string attribute with whitespace collapsed, None when absent or empty."""
    return " ".join(str(ds.get(keyword) or "").split()) or None


def _checked(group: Any, k: int) -> list[Any]:
    """A multiplex group's channel definitions after checking its rate and its declared sizes
    against its `WaveformData`: samples × channels × bytes per sample (padded to an even length)."""
    samples, count = (
        int(group.get("NumberOfWaveformSamples") or 0),
        int(group.get("NumberOfWaveformChannels") or 0),
    )
    definitions = list(group.get("ChannelDefinitionSequence") or [])
    if samples > MAX_SAMPLES:
        raise ReaderError("too_large", f"group {k}: {samples} samples declared (limit {MAX_SAMPLES})")
    if samples <= 0 or count <= 0:
        raise ReaderError("no_signal", f"group {k} declares {samples} samples of {count} channels")
    if len(definitions) != count:
        raise ReaderError("corrupt_section", f"group {k}: {len(definitions)} channel definitions for {count}")
    fs = float(group.get("SamplingFrequency") or "nan")
    if not np.isfinite(fs) or fs <= 0:
        raise ReaderError("corrupt_section", f"group {k}: no valid SamplingFrequency")
    bits, coding = group.get("WaveformBitsAllocated"), group.get("WaveformSampleInterpretation")
    if coding not in _SAMPLE_BYTES or bits != 8 * _SAMPLE_BYTES[coding]:
        raise ReaderError("unsupported_coding", f"group {k}: {bits}-bit samples coded {coding!r}")
    expected = samples * count * _SAMPLE_BYTES[coding]
    present = len(group.get("WaveformData") or b"")
    if present < expected:
        raise ReaderError(
            "truncated_signal", f"group {k}: {present} bytes of waveform data, {expected} declared"
        )
    if present > expected + expected % 2:
        raise ReaderError(
            "length_mismatch", f"group {k}: {present} bytes of waveform data, {expected} declared"
        )
    return definitions


def _channel(definition: Any) -> _Channel:
    """Name, unit and sign of one channel from its source code, code meaning or label."""
    sources = definition.get("ChannelSourceSequence") or []
    source = sources[0] if sources else {}
    code = _LEAD_CODE.fullmatch(str(source.get("CodeValue") or "").strip())
    meaning = re.sub(r"\(.*?\)", "", str(source.get("CodeMeaning") or definition.get("ChannelLabel") or ""))
    lead = _LEAD_NUMBERS.get(int(code[1])) if code else None
    name = lead or canonical_lead(meaning) or " ".join(meaning.split()) or "unnamed"
    inverted = lead is None and canonical_lead(meaning) is not None and _INVERTED.match(meaning.strip())
    units = definition.get("ChannelSensitivityUnitsSequence") or []
    unit = UNIT_WORDS.get(str(units[0].get("CodeValue") or "").strip().lower()) if units else None
    return _Channel(name=name, unit=unit, sign=-1.0 if inverted else 1.0)


def _is_beat(group: Any) -> bool:
    """A median or representative beat group (by its label)."""
    label = str(group.get("MultiplexGroupLabel") or "").upper()
    return any(word in label for word in _BEAT_WORDS)


def _rhythm_group(groups: list[Any], channels: list[list[_Channel]]) -> int:
    """The rhythm among the groups with an ECG lead in a voltage unit: the one labelled RHYTHM,
    else the longest (in seconds) that is not a beat group."""
    candidates = [
        k for k, chans in enumerate(channels) if any(canonical_lead(c.name) and c.unit for c in chans)
    ]
    if not candidates:
        names = sorted({c.name for chans in channels for c in chans})
        raise ReaderError("not_ecg", f"no ECG lead channel in µV/mV among {names[:24]}")

    def rank(k: int) -> tuple[bool, bool, float]:
        group = groups[k]
        seconds = int(group.NumberOfWaveformSamples) / float(group.SamplingFrequency)
        return "RHYTHM" in str(group.get("MultiplexGroupLabel") or "").upper(), not _is_beat(group), seconds

    return max(candidates, key=rank)


def _rhythm(ds: Any, index: int, group: Any, channels: list[_Channel]) -> RawRecord:
    """The chosen group's voltage channels in their physical units (`waveform_array` applies
    sensitivity, correction factor and baseline), inverted leads turned back."""
    keep = [k for k, c in enumerate(channels) if c.unit]
    signs = np.array([channels[k].sign for k in keep])
    signal = ds.waveform_array(index)[:, keep] * signs
    return RawRecord(
        signal=signal.astype(np.float32),
        sig_name=[channels[k].name for k in keep],
        units=[str(channels[k].unit) for k in keep],
        fs=float(group.SamplingFrequency),
        comments=[],
    )


def _recorded_at(ds: Any) -> str | None:
    """ISO 8601 local time from `AcquisitionDateTime`, else `ContentDate` + `ContentTime` (the
    zone offset and fractions of a second dropped), or the date alone when no time is stated."""
    from pydicom.valuerep import DA, DT, TM

    stamp = _text(ds, "AcquisitionDateTime")
    try:
        if stamp and len(stamp) > len("YYYYMMDD"):
            return DT(stamp).replace(tzinfo=None, microsecond=0).isoformat()
        day = DA(stamp or _text(ds, "ContentDate") or _text(ds, "AcquisitionDate"))
    except (ValueError, TypeError):
        return None
    if day is None:
        return None
    try:
        clock = TM(_text(ds, "ContentTime") or _text(ds, "AcquisitionTime"))
    except (ValueError, TypeError):
        clock = None
    return f"{day.isoformat()}T{clock.replace(microsecond=0).isoformat()}" if clock else day.isoformat()


def _age(value: str | None) -> float | None:
    """Years from a DICOM age string (`063Y`, `006M`, `010W`, `005D`)."""
    match = re.fullmatch(r"(\d{1,3})([DWMY])", value or "")
    return int(match[1]) * _AGE_UNITS_IN_YEARS[match[2]] if match else None
