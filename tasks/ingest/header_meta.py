"""Patient metadata and diagnosis statements from WFDB header comments.

Three dialects are recognised by their keys: PhysioNet/CinC (`#Age:`, `#Sex:`, `#Dx:` SNOMED
codes), LUDB (`#<age>:`, `#<sex>:`, `#<diagnoses>:` followed by free-text lines) and PTB
(`age:`, `sex:`, `Reason for admission:`, `Infarction localization:`); age and sex also without a
colon (`# age 40`, as some converters of hospital exports write them). Only codes and vocabulary
terms reach `dx`: free text (LUDB diagnosis lines, PTB reasons, extra `#Dx:` tokens) and unknown
comments are kept out of the store, since they may hold identifiers.
"""

from __future__ import annotations

import re

from tasks.ingest import labels
from tasks.ingest.readers.base import plausible_age
from tasks.ingest.record_meta import RecordMeta

_SNOMED = re.compile(r"^\d{5,18}$")
# `age 40`, `sex F`: no colon; the value alone on the line, so that no other number is read as an age
_BARE = re.compile(r"^\s*(age)\s+(\d{1,3}(?:\.\d+)?)\s*$|^\s*(sex)\s+([a-z]+)\s*$", re.IGNORECASE)


def _age(value: str) -> float | None:
    match = re.search(r"\d+(\.\d+)?", value)
    age = float(match.group()) if match else None
    return plausible_age(age)


def _sex(value: str) -> str | None:
    v = value.strip().lower()
    if v in {"m", "male", "0"}:
        return "M"
    if v in {"f", "female", "1"}:
        return "F"
    return None


def parse_comments(comments: list[str]) -> RecordMeta:
    """Metadata of one record from its header comment lines (without the leading '#')."""
    fields: dict[str, str] = {}
    ludb_dx: list[str] = []
    in_ludb_dx = False
    for line in comments:
        key, sep, value = line.partition(":")
        bare = None if sep else _BARE.match(line)
        if bare:
            key, value = [g for g in bare.groups() if g is not None]
            sep = ":"
        key = key.strip().lower()
        if in_ludb_dx:
            ludb_dx.append(line.strip())
            continue
        if key == "<diagnoses>":
            in_ludb_dx = True
        if sep and key not in fields:
            fields[key] = value.strip()
    age = _age(fields.get("age") or fields.get("<age>") or "")
    sex = _sex(fields.get("sex") or fields.get("<sex>") or "")
    if "dx" in fields:
        codes = [c.strip() for c in fields["dx"].split(",") if _SNOMED.match(c.strip())]
        return RecordMeta(age, sex, codes, labels.from_snomed(codes))
    if in_ludb_dx:
        return RecordMeta(age, sex, labels.statement_terms(ludb_dx), labels.from_ludb(ludb_dx))
    if "reason for admission" in fields:
        reason = fields["reason for admission"]
        loc = fields.get("infarction localization")
        return RecordMeta(age, sex, labels.statement_terms([reason]), labels.from_ptb(reason, loc))
    return RecordMeta(age, sex)
