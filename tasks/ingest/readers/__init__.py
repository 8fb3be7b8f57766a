"""Readers of the single-file hospital export formats: GE MUSE XML, Philips SierraECG/PhilipsECG
XML, HL7 aECG, DICOM waveform, SCP-ECG (EN 1064) and EDF/EDF+.

A file's format is chosen by its content (magic bytes, the XML root element), never by its name.
`sniff(head)` names the format from a file's first `SNIFF_BYTES`; `read(fmt, data)` decodes it
into a `Decoded` or raises `ReaderError` with a quarantine reason. Each format lives in its own
module with the same three names: `FORMAT`, `sniff(head) -> bool`, `read(data) -> Decoded`; the
modules are imported when first needed (pydicom and the XLI decoder cost start-up time).
"""

from __future__ import annotations

import importlib
from types import ModuleType

from tasks.ingest.readers.base import Decoded, ReaderError

__all__ = ["FORMATS", "SNIFF_BYTES", "Decoded", "ReaderError", "read", "sniff"]

SNIFF_BYTES = 4096
# module name → the format name stored in `records.format` (WFDB records are "wfdb")
FORMATS: dict[str, str] = {
    "muse": "ge_muse_xml",
    "philips": "philips_xml",
    "aecg": "hl7_aecg",
    "dicom": "dicom",
    "scp": "scp_ecg",
    "edf": "edf",
}


def _module(name: str) -> ModuleType:
    return importlib.import_module(f"tasks.ingest.readers.{name}")


def sniff(head: bytes) -> str | None:
    """The format (a `FORMATS` value) of a file from its first bytes, or None when no reader
    knows it."""
    for name, fmt in FORMATS.items():
        if _module(name).sniff(head):
            return fmt
    return None


def read(fmt: str, data: bytes) -> Decoded:
    """Decode a whole file of a sniffed format."""
    name = next((m for m, f in FORMATS.items() if f == fmt), None)
    if name is None:
        raise ReaderError("unknown_format", f"no reader for format {fmt!r}")
    return _module(name).read(data)
