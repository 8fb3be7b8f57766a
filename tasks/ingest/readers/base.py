"""What every single-file export reader returns, and the error it raises.

A reader turns the bytes of one file into a `Decoded`: the signal as a `RawRecord` (the same shape
the WFDB reader gives harmonization) plus what the file states about the recording. Identifying
fields (`patient_id`) are handed on only to be hashed; `statements` are mapped to labels and codes
through the versioned label mapping and are never stored as text.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date

from tasks.ingest.errors import RecordError
from tasks.ingest.wfdb_reader import RawRecord

MAX_SAMPLES = 2**24  # samples per lead a file may declare (about 9 h at 500 Hz): beyond, `too_large`
SEX_WORDS = {"MALE": "M", "M": "M", "FEMALE": "F", "F": "F"}  # the words exports write for sex
UNIT_WORDS = {"uv": "uV", "µv": "uV", "μv": "uV", "mv": "mV"}  # a lowered unit label → ours


class ReaderError(RecordError):
    """A file a format reader refuses; `reason` is the quarantine reason code (`not_ecg`,
    `xml_entities`, `xml_parse`, `corrupt_section`, `length_mismatch`, `truncated_signal`,
    `unsupported_coding`, `no_signal`, ...)."""


@dataclass(frozen=True)
class Decoded:
    """One decoded export: the rhythm signal and the recording's stated metadata.

    `raw.signal` is samples × channels float32 in `raw.units` (mV or µV per channel), channel names
    in `raw.sig_name` as the canonical lead names I, II, III, aVR, aVL, aVF, V1–V6 where the file
    identifies them; `raw.comments` is empty. `recorded_at` is the acquisition time as the file
    states it, ISO 8601 without a zone (`2019-03-01T10:22:05`), or a date alone. `derived_leads`
    names leads computed from others (GE MUSE stores 8 and III, aVR, aVL, aVF follow)."""

    raw: RawRecord
    format: str
    recorded_at: str | None = None
    device: str | None = None
    institution: str | None = None
    age: float | None = None
    sex: str | None = None  # "M" or "F"
    statements: tuple[str, ...] = ()
    patient_id: str | None = None
    derived_leads: tuple[str, ...] = ()


MAX_AGE_YEARS = 120  # the oldest age a record may state; a larger one is a typo or a code


def plausible_age(age: float | None) -> float | None:
    """A stated age in years, or None where none is stated or it is not 0-MAX_AGE_YEARS (every
    source's age goes through here: `record_meta`, the WFDB header and PTB-XL readers)."""
    return age if age is not None and math.isfinite(age) and 0 <= age <= MAX_AGE_YEARS else None


def age_at(birth: date | None, at: date | None) -> float | None:
    """Completed years between a birth date and the recording date, for files that state a birth
    date but no age (the birth date itself is never kept); whether it is plausible is
    `plausible_age`'s to say."""
    if birth is None or at is None:
        return None
    years = at.year - birth.year - ((at.month, at.day) < (birth.month, birth.day))
    return float(years)
