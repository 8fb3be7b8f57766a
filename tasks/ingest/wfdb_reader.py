"""Decode a WFDB record (header + signal files) from bytes held in memory.

The header is parsed once (`tasks.ingest.wfdb_header`) and the signal files are checked against it.
Records in one file of a fixed-width sample format (16, 61, 80, 160, 32: the 12-lead carts and
the PhysioNet/CinC `.mat` files) are decoded with one `numpy.frombuffer`, the same arithmetic as
wfdb's `dac`. Every other layout (212, 310, 24, several files, skew, several samples per frame) goes
through `wfdb.rdrecord`: wfdb-python reads through fsspec and treats paths under its cloud
protocols as remote, so registering fsspec's in-process `memory://` filesystem there lets it
decode bytes read out of a directory, zip or tar without touching the disk.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass

import fsspec
import numpy as np
import wfdb
from wfdb.io import _coreio
from wfdb.io._signal import INVALID_SAMPLE_VALUE

from tasks.ingest.errors import RecordError
from tasks.ingest.wfdb_header import Header, header_text, parse_header

_MEMORY = "memory://"
if _MEMORY not in _coreio.CLOUD_PROTOCOLS:  # the same list object record.py and _signal.py use
    _coreio.CLOUD_PROTOCOLS.append(_MEMORY)
_fs = fsspec.filesystem("memory")
_ids = itertools.count()

# Bytes per sample of each fixed-width format, for the length check wfdb does not make.
_BYTES_PER_SAMPLE = {
    "8": 1,
    "16": 2,
    "24": 3,
    "32": 4,
    "61": 2,
    "80": 1,
    "160": 2,
    "212": 1.5,
    "310": 4 / 3,
    "311": 4 / 3,
}
# Formats numpy reads as they lie: dtype and the offset that makes the stored value signed.
_FIXED_WIDTH = {
    "16": ("<i2", 0),
    "61": (">i2", 0),
    "80": ("u1", -128),
    "160": ("<u2", -32768),
    "32": ("<i4", 0),
}


class SignalError(RecordError):
    """A record whose signal cannot be decoded as declared."""


@dataclass(frozen=True)
class RawRecord:
    """A decoded record: physical signal (samples × leads, float32), names, units, rate."""

    signal: np.ndarray
    sig_name: list[str]
    units: list[str]
    fs: float
    comments: list[str]


def check_signal_sizes(header: Header, files: dict[str, bytes]) -> None:
    """Refuse signal files shorter or longer than the header declares: wfdb itself reads a
    longer file silently and fails on a shorter one with an opaque reshape error."""
    per_file: dict[str, float] = {}
    offsets: dict[str, int] = {}
    for spec in header.signals:
        if spec.fmt not in _BYTES_PER_SAMPLE:
            raise SignalError("unknown_format", f"signal format {spec.fmt!r} is not supported")
        per_file[spec.file_name] = per_file.get(spec.file_name, 0) + _BYTES_PER_SAMPLE[spec.fmt] * (
            spec.samps_per_frame
        )
        offsets[spec.file_name] = spec.byte_offset
    if header.sig_len is None:
        raise SignalError("header_parse", "header does not state the number of samples")
    for name, frame_bytes in per_file.items():
        expected = offsets[name] + int(np.ceil(frame_bytes * header.sig_len))
        actual = len(files.get(name, b""))
        if actual == 0:
            raise SignalError("empty_file", f"signal file {name} is empty")
        if actual < expected:
            raise SignalError("truncated_signal", f"{name} has {actual} bytes, header needs {expected}")
        if actual > expected + 1:  # formats 212/310 may pad the last byte
            raise SignalError("length_mismatch", f"{name} has {actual} bytes, header declares {expected}")


def read_header(files: dict[str, bytes], header_name: str) -> Header:
    """The parsed header of a record held in memory."""
    return parse_header(header_text(files[header_name]))


def decode(files: dict[str, bytes], header: Header, header_name: str) -> RawRecord:
    """The physical signal of a record held in memory (samples × signals, float32, in the
    header's units; NaN where a sample is marked invalid), checked against its header."""
    check_signal_sizes(header, files)
    if _is_fixed_width(header):
        signal = _fixed_width_signal(header, files[header.signals[0].file_name])
    else:
        signal = _wfdb_signal(files, header_name)
    return RawRecord(
        signal=signal,
        sig_name=[s.sig_name for s in header.signals],
        units=[s.units for s in header.signals],
        fs=header.fs,
        comments=list(header.comments),
    )


def _is_fixed_width(header: Header) -> bool:
    first = header.signals[0]
    return all(
        s.fmt == first.fmt in _FIXED_WIDTH
        and s.file_name == first.file_name
        and s.byte_offset == first.byte_offset
        and s.samps_per_frame == 1
        and s.skew == 0
        for s in header.signals
    )


def _fixed_width_signal(header: Header, data: bytes) -> np.ndarray:
    """Interleaved samples of one fixed-width file → physical values, as wfdb's `dac` computes
    them in float32: (digital − baseline) / gain, NaN for the format's invalid-sample value."""
    spec = header.signals[0]
    dtype, shift = _FIXED_WIDTH[spec.fmt]
    n = header.sig_len or 0
    digital = np.frombuffer(data, dtype, count=n * header.n_sig, offset=spec.byte_offset)
    digital = digital.reshape(n, header.n_sig).astype(np.int64) + shift
    baseline = np.array([s.baseline for s in header.signals], np.float32)
    gain = np.array([s.adc_gain for s in header.signals], np.float32)
    signal = (digital.astype(np.float32) - baseline) / gain
    signal[digital == INVALID_SAMPLE_VALUE[spec.fmt]] = np.nan
    return signal


def _wfdb_signal(files: dict[str, bytes], header_name: str) -> np.ndarray:
    with _mounted(files) as base:
        try:
            rec = wfdb.rdrecord(f"{base}/{header_name[:-4]}", return_res=32)
        except Exception as exc:
            raise SignalError("signal_decode", f"{type(exc).__name__}: {exc}") from None
    if rec.p_signal is None:
        raise SignalError("no_signal", "wfdb returned no signal")
    return rec.p_signal.astype(np.float32, copy=False)


class _mounted:
    """Place the record's files under a fresh memory:// folder for the duration of a read."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.base = f"/msaic-{os.getpid()}-{next(_ids)}"

    def __enter__(self) -> str:
        for name, data in self.files.items():
            _fs.pipe_file(f"{self.base}/{name}", data)
        return f"{_MEMORY}{self.base.lstrip('/')}"

    def __exit__(self, *exc: object) -> None:
        for name in self.files:
            _fs.store.pop(f"{self.base}/{name}", None)
        _fs.pseudo_dirs[:] = [d for d in _fs.pseudo_dirs if not d.startswith(self.base)]
