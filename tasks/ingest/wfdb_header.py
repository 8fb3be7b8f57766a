"""Parse a WFDB header (record line, signal lines, comments) without decoding any signal.

The grammar is wfdb-python's own (its `rx_record` / `rx_signal` patterns) with its read
defaults (gain 0 or missing → 200, baseline → ADC zero, units → mV, frequency → 250 Hz), but
without the per-field pandas look-ups of `wfdb.rdheader`, which cost more than decoding a
10-s record. Stricter than wfdb where wfdb guesses: an unreadable frequency or sample count is
refused, not defaulted.
"""

from __future__ import annotations

import re
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime

from wfdb.io.header import rx_record, rx_signal

from tasks.ingest.errors import RecordError

_DATE = re.compile(r"^\d{2}/\d{2}/\d{4}$")
_TIME = re.compile(r"^\d{1,2}:\d{2}:\d{2}(\.\d+)?$")
_DEFAULT_FS = 250.0
_DEFAULT_GAIN = 200.0


class HeaderError(RecordError):
    """A header that cannot be decoded or tokenized."""


@dataclass(frozen=True)
class SignalSpec:
    """One signal line."""

    file_name: str
    fmt: str
    samps_per_frame: int
    skew: int
    byte_offset: int
    adc_gain: float
    baseline: int
    units: str
    sig_name: str


@dataclass(frozen=True)
class Header:
    """A single-segment record header."""

    record_name: str
    fs: float
    sig_len: int | None
    signals: tuple[SignalSpec, ...]
    comments: tuple[str, ...]
    recorded_at: str | None = None  # base date (and time) of the record line, ISO 8601

    @property
    def n_sig(self) -> int:
        return len(self.signals)

    @property
    def file_names(self) -> list[str]:
        """Signal files in order of first use."""
        return list(dict.fromkeys(s.file_name for s in self.signals))

    @property
    def duration_s(self) -> float | None:
        return self.sig_len / self.fs if self.sig_len is not None and self.fs > 0 else None


def header_text(raw: bytes) -> str:
    """Decode a header strictly: WFDB headers are ASCII, and anything that is not UTF-8 is
    refused rather than guessed at."""
    if not raw.strip():
        raise HeaderError("empty_file", "header file is empty")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise HeaderError("header_encoding", f"header is not UTF-8 text (byte {exc.start})") from None


def parse_header(text: str) -> Header:
    """The record line, signal lines and comments of a header; HeaderError when it does not parse."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    comments = tuple(ln[1:].strip() for ln in lines if ln.startswith("#"))
    body = [ln for ln in lines if not ln.startswith("#")]
    if not body:
        raise HeaderError("header_parse", "header has no record line")
    tokens = body[0].split()
    if "/" in tokens[0]:
        raise HeaderError("unsupported_record", "multi-segment records are not supported")
    record = rx_record.match(body[0])
    try:  # wfdb would fall back to 250 Hz or an inferred length here: refuse instead
        n_sig = int(tokens[1]) if len(tokens) > 1 else 0
        fs = float(tokens[2].split("/")[0].split("(")[0]) if len(tokens) > 2 else _DEFAULT_FS
        sig_len = int(tokens[3]) if len(tokens) > 3 else None
    except ValueError:
        raise HeaderError("header_parse", "record line does not parse") from None
    if record is None or n_sig < 1:
        raise HeaderError("header_parse", "record line declares no signals")
    if len(body) < 1 + n_sig:
        raise HeaderError("header_parse", f"header declares {n_sig} signals but has {len(body) - 1} lines")
    signals = tuple(_signal(line, i + 1) for i, line in enumerate(body[1 : 1 + n_sig]))
    return Header(
        record.group("record_name"),
        fs,
        sig_len,
        signals,
        comments,
        _base_datetime(record.group("base_date"), record.group("base_time")),
    )


def _base_datetime(date: str | None, time: str | None) -> str | None:
    """The record line's base date (dd/mm/yyyy, wfdb's grammar) and time (hh:mm:ss) as ISO 8601,
    or None when it states no calendar date (none, 00/00/0000, a month-first date such as
    12/25/2019); a time that is no clock time is left out."""
    if not date or not _DATE.match(date):
        return None
    day, month, year = (int(part) for part in date.split("/"))
    try:
        stamp = datetime(year, month, day)
    except ValueError:
        return None
    if time and _TIME.match(time):
        hours, minutes, seconds = (int(float(part)) for part in time.split(":"))
        with suppress(ValueError):
            return stamp.replace(hour=hours, minute=minutes, second=seconds).isoformat()
    return stamp.date().isoformat()


def _signal(line: str, number: int) -> SignalSpec:
    """Signal line `number` (1-based); errors name the line, never quote it (headers may carry
    identifying free text)."""
    m = rx_signal.match(line)
    if m is None or not m.group("fmt"):
        raise HeaderError("header_parse", f"signal line {number} does not parse")
    g = m.groupdict()
    try:
        gain = float(g["adc_gain"]) if g["adc_gain"] else _DEFAULT_GAIN
        zero = int(g["adc_zero"]) if g["adc_zero"] else 0
        return SignalSpec(
            file_name=g["file_name"],
            fmt=g["fmt"],
            samps_per_frame=int(g["samps_per_frame"] or 1),
            skew=int(g["skew"] or 0),
            byte_offset=int(g["byte_offset"] or 0),
            adc_gain=gain or _DEFAULT_GAIN,
            baseline=int(g["baseline"]) if g["baseline"] else zero,
            units=g["units"] or "mV",
            sig_name=(g["sig_name"] or "").strip(),
        )
    except ValueError:
        raise HeaderError("header_parse", f"signal line {number} does not parse") from None
