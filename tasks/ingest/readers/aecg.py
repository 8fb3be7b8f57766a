"""HL7 v3 annotated ECG (aECG, `urn:hl7-org:v3`): the rhythm sequences and the stated metadata.

The rhythm is the first `sequenceSet` of the document's rhythm `component/series`; the
representative beats (`derivation/derivedSeries`) are not read. The set's time sequence
(`TIME_ABSOLUTE` GLIST_TS or `TIME_RELATIVE` GLIST_PQ) gives the sampling interval in its
`increment`; each lead is an SLIST_PQ, value = origin + scale × digit, with its own origin and
scale units. Elements are matched by local name, so a file written without the namespace reads too.
"""

from __future__ import annotations

import math
import re
from datetime import date, datetime
from xml.etree.ElementTree import Element

import numpy as np

from data_contracts.leads import canonical_lead
from tasks.ingest.readers.base import MAX_SAMPLES, Decoded, ReaderError, age_at, plausible_age
from tasks.ingest.readers.xml import element_text, local_name, parse_document, xml_root
from tasks.ingest.wfdb_reader import RawRecord

FORMAT = "hl7_aecg"

_LEAD_PREFIX = "MDC_ECG_LEAD_"
_XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"
_SECONDS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6}
_MICROVOLTS = {"uV": 1.0, "µV": 1.0, "mV": 1e3, "V": 1e6, "nV": 1e-3}
_AGE_UNITS_IN_YEARS = {"a": 1.0, "yr": 1.0, "mo": 1 / 12, "wk": 7 / 365.25, "d": 1 / 365.25}
_REPORTED_AGE = "21612-7"  # LOINC "Age - Reported"
_TIMESTAMP = re.compile(r"(\d{4})(\d{2})(\d{2})(?:(\d{2})(\d{2})?(\d{2})?)?(?:\.\d+)?(?:[+-]\d{4})?")
# Annotation codes that carry the interpretation as text: the rhythm statement and every
# MDC_ECG_INTERPRETATION* element (statements, summary, comment) that has a value
_RHYTHM_CODE = "MDC_ECG_RHY"
_INTERPRETATION_PREFIX = "MDC_ECG_INTERPRETATION"
_SUBJECT = "componentOf/timepointEvent/componentOf/subjectAssignment/subject/trialSubject"
_TRIAL = "componentOf/timepointEvent/componentOf/subjectAssignment/componentOf/clinicalTrial"


def sniff(head: bytes) -> bool:
    """An aECG document: the XML root element is `AnnotatedECG`."""
    return xml_root(head) == "AnnotatedECG"


def read(data: bytes) -> Decoded:
    """Decode an aECG document: the rhythm sequence set and the recording's metadata."""
    root = parse_document(data, "AnnotatedECG")
    series = _rhythm_series(root)
    recorded = _timestamp(
        _attr(_find(root, "effectiveTime/low"), "value")
        or _attr(_find(root, "effectiveTime/center"), "value")
        or _attr(_find(series, "effectiveTime/low"), "value")
    )
    person = _find(root, f"{_SUBJECT}/subjectDemographicPerson")
    return Decoded(
        raw=_signal(series),
        format=FORMAT,
        recorded_at=recorded.isoformat() if recorded else None,
        device=_device(series),
        institution=_institution(root),
        age=_age(root, person, recorded),
        sex={"M": "M", "F": "F"}.get(_attr(_find(person, "administrativeGenderCode"), "code").upper()),
        statements=_statements(series),
        patient_id=_patient_id(root, person),
    )


def _path(path: str) -> str:
    """An ElementTree path matching each step in any namespace or none."""
    return "/".join(f"{{*}}{step}" for step in path.split("/"))


def _find(parent: Element | None, path: str) -> Element | None:
    """The first element at a path below `parent` (None below None)."""
    return None if parent is None else parent.find(_path(path))


def _findall(parent: Element | None, path: str) -> list[Element]:
    """Every element at a path below `parent`."""
    return [] if parent is None else parent.findall(_path(path))


def _attr(element: Element | None, name: str) -> str:
    """An attribute's stripped value, "" when the element or the attribute is absent."""
    return "" if element is None else (element.get(name) or "").strip()


def _rhythm_series(root: Element) -> Element:
    """The first `component/series` that is not coded as representative beats."""
    for series in _findall(root, "component/series"):
        if _attr(_find(series, "code"), "code").upper() != "REPRESENTATIVE_BEAT":
            return series
    raise ReaderError("no_signal", "no rhythm series in the aECG document")


def _signal(series: Element) -> RawRecord:
    """The first sequence set with ECG leads: samples × leads in µV at the increment's rate."""
    for sequence_set in _findall(series, "component/sequenceSet"):
        sequences = _findall(sequence_set, "component/sequence")
        leads = [s for s in sequences if _attr(_find(s, "code"), "code").upper().startswith(_LEAD_PREFIX)]
        if leads:
            return _record(sequences, leads)
    raise ReaderError("no_signal", "the rhythm series has no lead sequence")


def _record(sequences: list[Element], leads: list[Element]) -> RawRecord:
    """The lead sequences of one set as a record."""
    names = [_lead_name(_attr(_find(s, "code"), "code")) for s in leads]
    if not any(canonical_lead(n) for n in names):
        raise ReaderError("not_ecg", f"none of the {len(names)} lead sequences is one of the 12 leads")
    # error details name a lead by its canonical name or position, never by a free-text code
    labels = [canonical_lead(n) or f"channel {k + 1}" for k, n in enumerate(names)]
    columns = [_lead_microvolts(_find(s, "value"), label) for s, label in zip(leads, labels, strict=True)]
    if len({c.size for c in columns}) > 1:
        raise ReaderError("length_mismatch", f"leads differ in length: {[c.size for c in columns]}")
    return RawRecord(
        signal=np.stack(columns, axis=1).astype(np.float32),
        sig_name=names,
        units=["uV"] * len(names),
        fs=_rate(sequences),
        comments=[],
    )


def _lead_name(code: str) -> str:
    """The canonical name of an MDC lead code (`MDC_ECG_LEAD_AVR` → aVR), else the code's suffix."""
    suffix = code[len(_LEAD_PREFIX) :]
    return canonical_lead(suffix) or suffix


def _rate(sequences: list[Element]) -> float:
    """Samples per second from the time sequence's increment (a value and a unit of time)."""
    timing = next((s for s in sequences if _attr(_find(s, "code"), "code").upper().startswith("TIME_")), None)
    increment = _find(timing, "value/increment")
    if increment is None:
        raise ReaderError("corrupt_section", "the sequence set has no time increment")
    unit = _attr(increment, "unit")
    if unit not in _SECONDS:
        raise ReaderError("unsupported_coding", f"time increment in unit {unit or 'missing'!r}")
    step = _number(_attr(increment, "value")) * _SECONDS[unit]
    if not math.isfinite(step) or step <= 0:
        raise ReaderError("corrupt_section", "the time increment is not a positive number")
    return 1.0 / step


def _number(text: str) -> float:
    """A decimal number, NaN when the text is not one."""
    try:
        return float(text)
    except ValueError:
        return math.nan


def _lead_microvolts(value: Element | None, name: str) -> np.ndarray:
    """One SLIST_PQ lead in µV: origin + scale × digits, each quantity in its own unit."""
    if value is None:
        raise ReaderError("corrupt_section", f"lead {name} has no value")
    kind = _attr(value, _XSI_TYPE)
    if kind and kind.rpartition(":")[2] != "SLIST_PQ":
        raise ReaderError("unsupported_coding", f"lead {name} is not an SLIST_PQ")
    origin = _quantity(_find(value, "origin"), name, default=0.0)
    scale = _quantity(_find(value, "scale"), name, default=None)
    tokens = (element_text(_find(value, "digits")) or "").split()
    if not tokens:
        raise ReaderError("no_signal", f"lead {name} has no digits")
    if len(tokens) > MAX_SAMPLES:
        raise ReaderError("too_large", f"lead {name} has {len(tokens)} samples (limit {MAX_SAMPLES})")
    try:
        digits = np.array(tokens, dtype=np.float64)
    except ValueError:
        raise ReaderError("corrupt_section", f"lead {name}: digits are not all numbers") from None
    if not np.isfinite(digits).all():
        raise ReaderError("corrupt_section", f"lead {name}: digits are not all finite")
    return origin + scale * digits


def _quantity(element: Element | None, name: str, default: float | None) -> float:
    """A physical quantity (`value`, `unit`) in µV; `default` when the element is absent."""
    if element is None and default is not None:
        return default
    unit = _attr(element, "unit")
    if unit not in _MICROVOLTS:
        raise ReaderError("unsupported_coding", f"lead {name}: origin/scale unit {unit or 'missing'!r}")
    amount = _number(_attr(element, "value")) * _MICROVOLTS[unit]
    if not math.isfinite(amount):
        raise ReaderError("corrupt_section", f"lead {name}: origin/scale is not a number")
    return amount


def _timestamp(value: str) -> datetime | date | None:
    """An HL7 TS (YYYYMMDD[hhmm[ss]][.fff][±zzzz]) as stated, local time without its zone."""
    match = _TIMESTAMP.fullmatch(value)
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(g) if g else None for g in match.groups())
    try:
        if hour is None:
            return date(year, month, day)
        return datetime(year, month, day, hour, minute or 0, second or 0)
    except ValueError:
        return None


def _device(series: Element) -> str | None:
    """Manufacturer and model of the device that wrote the rhythm series."""
    author = _find(series, "author/seriesAuthor")
    parts = [
        element_text(_find(author, "manufacturerOrganization/name")),
        element_text(_find(author, "manufacturedSeriesDevice/manufacturerModelName")),
    ]
    return " ".join(p for p in parts if p) or None


def _institution(root: Element) -> str | None:
    """Where the ECG was taken: the testing site, else the trial site, else the organization an
    author represents."""
    for path in (
        "location/testingSite/location/name",
        f"{_TRIAL}/location/trialSite/location/name",
        "controlVariable/relatedObservation/author/assignedEntity/representedAuthoringOrganization/name",
    ):
        name = element_text(_find(root, path))
        if name:
            return name
    return None


def _age(root: Element, person: Element | None, recorded: date | None) -> float | None:
    """The stated age, else the completed years from the birth time to the recording date."""
    stated = _reported_age(root)
    if stated is not None:
        return stated
    return age_at(_timestamp(_attr(_find(person, "birthTime"), "value")), recorded)


def _reported_age(root: Element) -> float | None:
    """The first plausible age the document states (LOINC 21612-7 related observation) in years;
    None when none is, or its unit of time is not stated (the birth date is tried next)."""
    for observation in _findall(root, "controlVariable/relatedObservation"):
        if _attr(_find(observation, "code"), "code") == _REPORTED_AGE:
            value = _find(observation, "value")
            factor = _AGE_UNITS_IN_YEARS.get(_attr(value, "unit"))
            age = plausible_age(_number(_attr(value, "value")) * factor if factor else math.nan)
            if age is not None:
                return age
    return None


def _patient_id(root: Element, person: Element | None) -> str | None:
    """The trial subject's id extension, else the person's own id, else a vendor `PatientID`."""
    return (
        _attr(_find(root, f"{_SUBJECT}/id"), "extension")
        or _attr(_find(person, "id"), "extension")
        or element_text(_find(person, "PatientID"))
    )


def _statements(series: Element) -> tuple[str, ...]:
    """The interpretation text of the annotation sets of the rhythm series and of its derived
    series, in document order without repeats: rhythm statements and the interpretation
    statements, summary and comments."""
    texts: list[str] = []
    for annotation_set in [
        *_findall(series, "subjectOf/annotationSet"),
        *_findall(series, "derivation/derivedSeries/subjectOf/annotationSet"),
    ]:
        for annotation in annotation_set.iter():
            if local_name(annotation.tag) != "annotation":
                continue
            code = _attr(_find(annotation, "code"), "code").upper()
            if code == _RHYTHM_CODE or code.startswith(_INTERPRETATION_PREFIX):
                text = _value_text(_find(annotation, "value"))
                if text and text not in texts:
                    texts.append(text)
    return tuple(texts)


def _value_text(value: Element | None) -> str | None:
    """The text of an annotation value: an ST's content, a CE's display name or code."""
    return element_text(value) or _attr(value, "displayName") or _attr(value, "code") or None
