"""MI labels and territories from what each source states, through the versioned mapping in
`data_contracts/mi_labels.json`. No statement means null: absence of a diagnosis is not a negative."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from data_contracts import load_json


@dataclass(frozen=True)
class Label:
    mi_label: int | None
    mi_territory: str | None
    label_source: str


def _mapping() -> dict[str, Any]:
    return load_json("mi_labels.json")


def label_version() -> str:
    return str(_mapping()["version"])


def territory_from_text(text: str) -> str | None:
    """Territories named in free text ("STEMI: anterior wall", "infero-lateral"), longest words
    first so that "anterolateral" is not read as "anterior"; several are joined with '+'."""
    words = _mapping()["territory_words"]
    found: list[str] = []
    rest = text.lower()
    for word in sorted(words, key=len, reverse=True):
        if word in rest:
            found.append(words[word])
            rest = rest.replace(word, " ")
    return "+".join(sorted(set(found))) or None


def _join(territories: list[str | None]) -> str | None:
    parts = sorted({p for t in territories if t for p in t.split("+")})
    return "+".join(parts) or None


def from_snomed(codes: list[str]) -> Label:
    """PhysioNet/CinC `#Dx:` SNOMED CT codes."""
    m = _mapping()["snomed"]
    stated = [c for c in codes if c.strip().lower() not in m["no_diagnosis"]]
    if not stated:
        return Label(None, None, "snomed:none")
    hits = [c for c in stated if c in m["mi_codes"]]
    return Label(int(bool(hits)), _join([m["territory"].get(c) for c in hits]) if hits else None, "snomed")


def from_scp(scp_codes: dict[str, float], diagnostic: set[str] | None) -> Label:
    """PTB-XL `scp_codes`; `diagnostic` is the set of diagnostic codes from scp_statements.csv
    when the archive has it (then a record without any diagnostic statement is null)."""
    mi = _mapping()["scp"]["mi_codes"]
    stated = [c for c in scp_codes if diagnostic is None or c in diagnostic]
    if not stated:
        return Label(None, None, "scp:none")
    hits = [c for c in stated if c in mi]
    return Label(int(bool(hits)), _join([mi[c] for c in hits]) if hits else None, "scp")


def from_ludb(diagnoses: list[str]) -> Label:
    """LUDB free-text diagnosis lines after `#<diagnoses>:`."""
    m = _mapping()["ludb"]
    if not diagnoses:
        return Label(None, None, "ludb:none")
    hits = [d for d in diagnoses if d.split(":")[0].strip() in m["mi_statements"]]
    if hits:
        return Label(1, _join([territory_from_text(d.split(":", 1)[-1]) for d in hits]), "ludb")
    if any(d.split(":")[0].strip() in m["uncertain_statements"] for d in diagnoses):
        return Label(None, None, "ludb:uncertain")
    return Label(0, None, "ludb")


def from_ptb(reason: str | None, localization: str | None) -> Label:
    """PTB `Reason for admission` and `Infarction localization`."""
    m = _mapping()["ptb"]
    if reason is None or reason.strip().lower() in m["no_diagnosis"]:
        return Label(None, None, "ptb:none")
    is_mi = any(re.search(r, reason, re.IGNORECASE) for r in m["mi_reasons"])
    territory = territory_from_text(localization) if is_mi and localization else None
    return Label(int(is_mi), territory, "ptb")


def _matches(patterns: list[str], text: str) -> bool:
    return any(re.search(p, text, re.IGNORECASE) for p in patterns)


def statement_terms(statements: list[str]) -> list[str]:
    """The vocabulary terms that free-text statements name (`records.dx` of hospital exports,
    LUDB and PTB), negated statements left out: the statement text itself is never stored, since
    it can carry a name."""
    m = _mapping()["statements"]
    vocabulary: dict[str, str] = m["vocabulary"]
    found: set[str] = set()
    for text in statements:
        if _matches(m["negated_patterns"], text):
            continue
        rest = text.lower()
        for phrase in sorted(vocabulary, key=len, reverse=True):  # longest first, as for territories
            pattern = rf"\b{re.escape(phrase)}"
            if re.search(pattern, rest):
                found.add(vocabulary[phrase])
                rest = re.sub(pattern, " ", rest)
    return sorted(found)


def from_statements(statements: list[str], source: str) -> Label:
    """Interpretation statements (free text): 1 when one names infarction without doubt or
    negation, 0 when they name other findings of the vocabulary only, null otherwise."""
    m = _mapping()["statements"]
    negated = [s for s in statements if _matches(m["negated_patterns"], s)]
    mi = [s for s in statements if _matches(m["mi_patterns"], s) and s not in negated]
    certain = [s for s in mi if not _matches(m["uncertain_patterns"], s)]
    if certain:
        return Label(1, _join([territory_from_text(s) for s in certain]), source)
    if mi:
        return Label(None, None, f"{source}:uncertain")
    if negated or statement_terms(statements):  # "no infarct" states a negative too
        return Label(0, None, source)
    return Label(None, None, f"{source}:none")
