"""Philips SierraECG 1.03 / PhilipsECG 1.04 XML: the rhythm waveform and what the export states.

The rhythm (`parsedwaveforms`) is base64 (or plain text) 16-bit samples, XLI-compressed in most
exports: per lead an 8-byte chunk header (payload size, first sample) and an LZW stream of
second differences, decoded with the `sierraecg` package's LZW decoder and delta decoder. The
chunk sizes are checked against the bytes present and each lead's decoded length is bounded by
the declared duration before any decoding. In XLI data the limb leads III, aVR, aVL, aVF are
stored as residuals of their value predicted from I and II and are rebuilt here. Exports end the
rhythm with a 1 mV calibration pulse after a flat gap inside the declared `durationperchannel`
(and may append one beyond it): both are cut off. Representative beats are not read.
"""

from __future__ import annotations

import base64
import binascii
import math
from datetime import date, datetime
from itertools import islice
from xml.etree.ElementTree import Element

import numpy as np

from data_contracts.leads import CANONICAL_LEADS, canonical_lead
from tasks.ingest.readers.base import MAX_SAMPLES, SEX_WORDS, Decoded, ReaderError, age_at
from tasks.ingest.readers.xml import local_name, parse_document, xml_root
from tasks.ingest.wfdb_reader import RawRecord

FORMAT = "philips_xml"

MAX_LEADS = 64
_XLI_HEADER = 8  # int32 payload size, int16 (unused), int16 first sample
_LZW_BITS = 10
# Leads stored as residuals in XLI data, rebuilt from I and II in this order
_RESIDUAL_LEADS = ("III", "aVR", "aVL", "aVF")
_LIMB_LEADS = ("I", "II", *_RESIDUAL_LEADS)
_CALIBRATION_UV = 1000.0  # the pulse is 1 mV high ...
_MIN_PULSE_S = 0.1  # ... and 200 ms long; flat runs shorter than this are not taken for one
_MAX_AFTER_PULSE_S = 0.5  # the pulse ends the rhythm: at most this much follows it


def sniff(head: bytes) -> bool:
    """A Philips export: the XML root element is `restingecgdata`."""
    return xml_root(head) == "restingecgdata"


def read(data: bytes) -> Decoded:
    """Decode a SierraECG/PhilipsECG export: the rhythm waveform and its metadata."""
    root = parse_document(data, "restingecgdata")
    _strip_namespaces(root)
    raw, derived = _rhythm(root)
    acquisition = root.find("dataacquisition")
    patient = root.find("patient/generalpatientdata")
    recorded_at = _recorded_at(acquisition)
    return Decoded(
        raw=raw,
        format=FORMAT,
        recorded_at=recorded_at,
        device=_device(acquisition),
        institution=_text(acquisition, "acquirer/institutionname"),
        age=_age(patient, recorded_at),
        sex=SEX_WORDS.get((_text(patient, "sex") or "").upper()),
        statements=_statements(root),
        patient_id=_text(patient, "patientid"),
        derived_leads=derived,
    )


def _strip_namespaces(root: Element) -> None:
    """Drop the namespace from every tag so one path fits 1.03/1.04 exports with or without
    the Philips namespace."""
    for element in root.iter():
        element.tag = local_name(element.tag)


def _content(text: str | None) -> str | None:
    """Text with its whitespace collapsed; None when empty or a Philips placeholder (`---`)."""
    value = " ".join((text or "").split())
    return value if value.strip("- ") else None


def _text(parent: Element | None, path: str) -> str | None:
    """The text of a descendant element (see `_content`)."""
    element = None if parent is None else parent.find(path)
    return None if element is None else _content("".join(element.itertext()))


def _declared(value: str | None, what: str) -> float:
    """A positive finite number the file declares, else `corrupt_section`."""
    try:
        number = float(value or "nan")
    except ValueError:
        number = math.nan
    if not math.isfinite(number) or number <= 0:
        raise ReaderError("corrupt_section", f"parsedwaveforms: no valid {what}")
    return number


def _rhythm(root: Element) -> tuple[RawRecord, tuple[str, ...]]:
    """The rhythm waveform in µV (samples × leads), limb leads rebuilt, calibration cut off."""
    waves = root.find("waveforms/parsedwaveforms")
    if waves is None:
        waves = root.find(".//parsedwaveforms")
    if waves is None:
        raise ReaderError("no_signal", "no parsedwaveforms element in the Philips export")
    signal = root.find("dataacquisition/signalcharacteristics")
    fs = _declared(waves.get("samplespersecond") or _text(signal, "samplingrate"), "sampling rate")
    duration_ms = _declared(waves.get("durationperchannel"), "durationperchannel")
    n = round(duration_ms * fs / 1000)
    if n > MAX_SAMPLES:
        raise ReaderError("too_large", f"{n} samples per lead declared (limit {MAX_SAMPLES})")
    if n == 0:
        raise ReaderError("no_signal", "the rhythm declares no samples")
    names = [canonical_lead(label) or label for label in _labels(waves, signal)]
    if not any(name in CANONICAL_LEADS for name in names):
        raise ReaderError("not_ecg", f"no 12-lead ECG channel among {names}")
    bits = waves.get("bitspersample") or waves.get("nbitspersample") or _text(signal, "bitspersample")
    if bits not in (None, "16"):
        raise ReaderError("unsupported_coding", f"{bits}-bit samples (only 16 is known)")
    resolution = _declared(
        waves.get("resolution") or _text(signal, "resolution") or _text(signal, "signalresolution"),
        "resolution",
    )
    compression = _compression(waves)
    if compression == "XLI":
        counts = _xli_leads(_base64(waves), len(names), n)
    elif compression is None:
        counts = _uncompressed_leads(waves, signal, len(names), n)
    else:
        raise ReaderError("unsupported_coding", f"waveform compression {compression!r}")
    derived: tuple[str, ...] = ()
    if compression == "XLI" and tuple(names[:6]) == _LIMB_LEADS:
        counts = _rebuild_limb_leads(counts)
        derived = _RESIDUAL_LEADS
    end = _calibration_start(counts, round(_CALIBRATION_UV / resolution), fs)
    raw = RawRecord(
        signal=(counts[:, :end].T * resolution).astype(np.float32),
        sig_name=names,
        units=["uV"] * len(names),
        fs=fs,
        comments=[],
    )
    return raw, derived


def _labels(waves: Element, signal: Element | None) -> list[str]:
    """The lead labels: `leadlabels` (1.04), else the standard order of a 12-lead acquisition
    (`numberchannelsallocated`, `acquisitiontype` STD-12 or 10-WIRE, 1.03)."""
    count_text = waves.get("numberofleads") or _text(signal, "numberchannelsallocated")
    count = round(_declared(count_text, "number of leads"))
    if count > MAX_LEADS:
        raise ReaderError("too_large", f"{count} leads declared (limit {MAX_LEADS})")
    labels = (waves.get("leadlabels") or "").split()
    if (
        not labels
        and count == len(CANONICAL_LEADS)
        and _text(signal, "acquisitiontype") in ("STD-12", "10-WIRE")
    ):
        labels = list(CANONICAL_LEADS)
    if len(labels) < count:
        labels += [f"Channel {k + 1}" for k in range(len(labels), count)]
    return labels[:count]


def _compression(waves: Element) -> str | None:
    """The compression method (`XLI`), or None for uncompressed samples."""
    if (waves.get("compressflag") or "").lower() == "false":
        return None
    method = waves.get("compression") or waves.get("compressmethod") or ""
    return None if method.lower() in ("", "uncompressed", "none") else method.upper()


def _base64(waves: Element) -> bytes:
    """The waveform bytes of a `Base64` encoded element."""
    encoding = waves.get("dataencoding")
    if encoding != "Base64":
        raise ReaderError("unsupported_coding", f"waveform data encoding {encoding!r} with this compression")
    try:
        return base64.b64decode("".join((waves.text or "").split()), validate=True)
    except (binascii.Error, ValueError):
        raise ReaderError("corrupt_section", "parsedwaveforms is not valid base64") from None


def _xli_leads(payload: bytes, count: int, n: int) -> np.ndarray:
    """The first `count` XLI chunks as leads × n int32 counts. Each chunk's declared size is
    checked against the bytes present, and its LZW stream is decoded to at most twice the
    declared length (a crafted stream cannot expand without bound); extra samples beyond the
    declared duration (an appended calibration) are dropped."""
    from sierraecg.lzw import LzwDecoder
    from sierraecg.xli import xli_decode_deltas

    leads: list[np.ndarray] = []
    offset = 0
    for k in range(count):
        header = payload[offset : offset + _XLI_HEADER]
        size = int.from_bytes(header[:4], "little", signed=True)
        if len(header) < _XLI_HEADER or size < 0 or offset + _XLI_HEADER + size > len(payload):
            raise ReaderError("truncated_signal", f"XLI chunk {k + 1} of {count} is cut off or missing")
        chunk = payload[offset + _XLI_HEADER : offset + _XLI_HEADER + size]
        offset += _XLI_HEADER + size
        stream = list(islice(iter(LzwDecoder(chunk, bits=_LZW_BITS).read, -1), 4 * n + 1))
        if len(stream) > 4 * n:
            raise ReaderError("length_mismatch", f"XLI chunk {k + 1} decodes to over twice {n} samples")
        if len(stream) < 2 * n:
            raise ReaderError(
                "truncated_signal", f"XLI chunk {k + 1}: {len(stream) // 2} samples, {n} declared"
            )
        try:
            leads.append(xli_decode_deltas(stream, int.from_bytes(header[6:], "little", signed=True))[:n])
        except (OverflowError, IndexError, ValueError):
            raise ReaderError(
                "corrupt_section", f"XLI chunk {k + 1} does not decode to 16-bit samples"
            ) from None
    return np.stack(leads).astype(np.int32)


def _uncompressed_leads(waves: Element, signal: Element | None, count: int, n: int) -> np.ndarray:
    """Uncompressed samples (`Base64` little-endian 16-bit or `Plain` text), lead after lead, as
    leads × n int32 counts relative to `signaloffset`. Every lead holds the same number of samples,
    at least the declared `n`; more (an appended calibration) are dropped."""
    if waves.get("dataencoding") == "Plain":
        try:
            values = np.array((waves.text or "").split(), dtype=np.int64)
        except (ValueError, OverflowError):
            raise ReaderError("corrupt_section", "parsedwaveforms holds a non-integer sample") from None
    else:
        payload = _base64(waves)
        if len(payload) % 2:
            raise ReaderError("length_mismatch", f"{len(payload)} bytes are not whole 16-bit samples")
        signed = (waves.get("signalsigned") or _text(signal, "signalsigned") or "True").lower() != "false"
        values = np.frombuffer(payload, dtype="<i2" if signed else "<u2")
    per_lead, extra = divmod(values.size, count)
    if per_lead < n:
        raise ReaderError("truncated_signal", f"{values.size} samples for {count} leads of {n}")
    if extra:
        raise ReaderError("length_mismatch", f"{values.size} samples do not split into {count} leads")
    return (values.reshape(count, per_lead)[:, :n] - _signal_offset(waves, signal)).astype(np.int32)


def _signal_offset(waves: Element, signal: Element | None) -> int:
    """The stored value that stands for 0 V (`signaloffset`, 0 when not stated)."""
    text = waves.get("signaloffset") or _text(signal, "signaloffset") or "0"
    try:
        return int(text)
    except ValueError:
        raise ReaderError("corrupt_section", "signaloffset is not an integer") from None


def _rebuild_limb_leads(counts: np.ndarray) -> np.ndarray:
    """III, aVR, aVL, aVF from their XLI residuals: the stored value is subtracted from the lead's
    prediction by Einthoven's and Goldberger's equations, III = II − I, aVR = −(I + II)/2,
    aVL = (I − III)/2 = I − II/2, aVF = (II + III)/2 = II − I/2 (halves rounded down, as the
    encoder did)."""
    lead_i, lead_ii, res_iii, res_avr, res_avl, res_avf = counts[:6]
    lead_iii = lead_ii - lead_i - res_iii
    limb = np.stack(
        [
            lead_iii,
            -res_avr - (lead_i + lead_ii) // 2,
            (lead_i - lead_iii) // 2 - res_avl,
            (lead_ii + lead_iii) // 2 - res_avf,
        ]
    )
    return np.concatenate([counts[:2], limb, counts[6:]])


def _trailing(mask: np.ndarray) -> int:
    """How many True values end `mask`."""
    return int(mask.size if mask.all() else np.argmin(mask[::-1]))


def _calibration_start(counts: np.ndarray, pulse: int, fs: float) -> int:
    """Where the signal ends when a calibration pulse closes it: the pulse (every lead at 1 mV,
    to one count, for at least `_MIN_PULSE_S`, no more than `_MAX_AFTER_PULSE_S` before the end)
    and the gap before it where every lead is exactly 0 are cut; else (or when nothing would be
    left) the full length."""
    length = counts.shape[1]
    on_pulse = np.all(np.abs(counts - pulse) <= 1, axis=0)
    if not on_pulse.any():
        return length
    end = length - _trailing(~on_pulse)
    start = end - _trailing(on_pulse[:end])
    if end - start < _MIN_PULSE_S * fs or length - end > _MAX_AFTER_PULSE_S * fs:
        return length
    cut = start - _trailing(np.all(counts[:, :start] == 0, axis=0))
    return cut if cut > 0 else length


def _recorded_at(acquisition: Element | None) -> str | None:
    """ISO 8601 from `dataacquisition/@date` (YYYY-MM-DD) and `@time` (HH:MM:SS); the date alone
    when the time is missing or invalid."""
    if acquisition is None:
        return None
    try:
        day = date.fromisoformat(acquisition.get("date") or "")
    except ValueError:
        return None
    try:
        return datetime.combine(
            day, datetime.strptime(acquisition.get("time") or "", "%H:%M:%S").time()
        ).isoformat()
    except ValueError:
        return day.isoformat()


def _device(acquisition: Element | None) -> str | None:
    """Manufacturer (first field of `machine/@detaildescription`) and model (`machine`)."""
    machine = None if acquisition is None else acquisition.find("machine")
    if machine is None:
        return None
    maker = _content((machine.get("detaildescription") or "").split(":")[0])
    parts = [p for p in (maker, _content(machine.text)) if p]
    return " ".join(parts) or None


def _age(patient: Element | None, recorded_at: str | None) -> float | None:
    """Age in years: `age/years`, else completed years from `age/dateofbirth` to the acquisition
    date (the birth date itself is not kept)."""
    years = _text(patient, "age/years")
    if years is not None:
        try:
            age = float(years)
        except ValueError:
            return None
        return age
    birth_text = _text(patient, "age/dateofbirth")
    if birth_text is None or recorded_at is None:
        return None
    try:
        birth, day = date.fromisoformat(birth_text), date.fromisoformat(recorded_at[:10])
    except ValueError:
        return None
    return age_at(birth, day)


def _statements(root: Element) -> tuple[str, ...]:
    """The statements of the first interpretation, `leftstatement: rightstatement` (the reason
    after the colon when there is one). The signature line and the confirming clinician are
    not statements and are not read."""
    interpretation = root.find(".//interpretation")
    if interpretation is None:
        return ()
    lines = []
    for statement in interpretation.findall("statement"):
        left, right = _text(statement, "leftstatement"), _text(statement, "rightstatement")
        if left and right:
            lines.append(f"{left}: {right}")
        elif left or right:
            lines.append(left or right or "")
    return tuple(lines)
