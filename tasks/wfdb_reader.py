"""Decode a WFDB record (header + signal files) from bytes held in memory.

wfdb-python reads through fsspec; it treats paths under its cloud protocols as remote and
opens them with fsspec as they are. Registering fsspec's in-process `memory://` filesystem there
lets `wfdb.rdrecord` decode every format it supports (16, 212, 80, 16+24 `.mat`, multi-file
records, ...) from bytes read out of a directory, zip or tar, without touching the disk, and
exactly as it decodes files.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from typing import NoReturn

import fsspec
import numpy as np
import wfdb
from wfdb.io import _coreio

from tasks.archive import HeaderError
from tasks.errors import RecordError

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


def check_signal_sizes(header: wfdb.Record, files: dict[str, bytes]) -> None:
    """Refuse signal files shorter or longer than the header declares: wfdb itself reads a
    longer file silently and fails on a shorter one with an opaque reshape error."""
    per_file: dict[str, float] = {}
    offsets: dict[str, int] = {}
    n = header.n_sig
    for name, fmt, spf, off in zip(
        header.file_name,
        header.fmt,
        header.samps_per_frame or [1] * n,
        header.byte_offset or [0] * n,
        strict=True,
    ):
        if fmt not in _BYTES_PER_SAMPLE:
            raise SignalError("unknown_format", f"signal format {fmt!r} is not supported")
        per_file[name] = per_file.get(name, 0) + _BYTES_PER_SAMPLE[fmt] * (spf or 1)
        offsets[name] = off or 0
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


def decode(files: dict[str, bytes], header_name: str) -> RawRecord:
    """The physical signal of a record held in memory, checked against its header."""
    with _mounted(files) as base:
        path = f"{base}/{header_name[:-4]}"
        try:
            rec = wfdb.rdrecord(path, return_res=32)
        except Exception as exc:
            _explain_failure(path, files, exc)
    check_signal_sizes(rec, files)
    signal = rec.p_signal if rec.p_signal is not None else np.empty((0, 0), np.float32)
    return RawRecord(
        signal=signal.astype(np.float32, copy=False),
        sig_name=list(rec.sig_name or []),
        units=list(rec.units or []),
        fs=float(rec.fs),
        comments=list(rec.comments or []),
    )


def _explain_failure(path: str, files: dict[str, bytes], exc: Exception) -> NoReturn:
    """Turn a wfdb failure into a quarantine reason: a header wfdb cannot parse, a signal file
    that does not fit its header, or (failing both) the decoder's own message."""
    try:
        header = wfdb.rdheader(path)
    except Exception as hexc:
        raise HeaderError("header_parse", f"{type(hexc).__name__}: {hexc}") from None
    check_signal_sizes(header, files)
    raise SignalError("signal_decode", f"{type(exc).__name__}: {exc}") from None


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
