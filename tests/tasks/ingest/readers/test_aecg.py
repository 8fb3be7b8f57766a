"""HL7 aECG reader: the four sample documents decode like ecgdatakit's aECG parser, the stated
metadata is read as it stands in each file, and broken or hostile files are refused quickly."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from ecgdatakit.parsing.parsers.hl7_aecg import HL7aECGParser

from tasks.ingest.readers import FORMATS, aecg
from tasks.ingest.readers import read as read_format
from tasks.ingest.readers import sniff as sniff_format
from tasks.ingest.readers.base import ReaderError
from tests.conftest import SHARED_DATA

HOSPITAL = SHARED_DATA / "hospital"
FOLDER = HOSPITAL / "hl7_aecg"
SAMPLES = sorted(FOLDER.glob("*.xml"))
EXAMPLE = FOLDER / "fda_hl7_2003-12_Example_aECG.xml"
TWELVE = {"I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"}

# What each document states, read by eye from the files.
STATED = {
    "fda_ectd_subject1_0.xml": dict(
        fs=500.0,
        samples=5000,
        recorded_at="2002-11-22T09:10:00",  # effectiveTime/center (no low)
        device="Mortara Instrument, Inc. ELI250",
        institution="River City ECG Collection Service",  # location/testingSite
        age=46.0,  # reported age (the birth time would give 49)
        sex="M",
        patient_id="subject1",
        statements=("Sinus Rhythm",),  # MDC_ECG_RHY, the only interpretation it holds
    ),
    "fda_hl7_2003-12_Example_aECG.xml": dict(
        fs=500.0,
        samples=5000,
        recorded_at="2002-11-22T09:10:00",
        device="Mortara Instrument, Inc. ELI250",
        institution="River City ECG Collection Service",
        age=46.0,
        sex="M",
        patient_id="SBJ-123",
        statements=("Sinus Rhythm",),
    ),
    "liryc_hl7aecg_example.xml": dict(
        fs=100.0,  # increment 0.01 s
        samples=1000,
        recorded_at="2025-09-23T10:35:50",
        device="(C) Shenzhen Mindray Bio-Medical Electronics Co., Ltd. All rights reserved. BeneHeart R12",
        institution="ID302 - 3e EST - 1463",  # trial site (no testing site)
        age=None,  # <Age/> and birthTime are empty
        sex=None,  # administrativeGenderCode UN
        patient_id="25060897140",  # the writer's own <PatientID> (no trialSubject id)
        statements=(
            "Rythme sinusal avec ESA",
            "--- Interprétation sans connaître le sexe/l'âge du patient ---",
            "ECG limite",
            "Diagnostic non confirmé.",
        ),
    ),
    "philips_converted_ad4d3d80-d165_aecg.xml": dict(
        fs=500.0,
        samples=5500,
        recorded_at="2008-12-23T19:44:46",
        device="Philips Medical Systems PageWriter Touch",
        institution="y",  # the trial site name as the cart wrote it
        age=32.0,  # reported age empty: birthTime 19760101 to 2008-12-23
        sex="F",
        patient_id="20044",
        statements=(
            "(SB) SINUS BRADYCARDIA, V-rate<60,",
            "(NPTA) NO PREVIOUS TRACING AVAILABLE FOR COMPARISON, ,",
        ),
    ),
}


def test_samples_are_there() -> None:
    assert sorted(p.name for p in SAMPLES) == sorted(STATED)


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_sniffs_aecg_and_nothing_else(path: Path) -> None:
    assert aecg.sniff(path.read_bytes()[:4096])
    assert sniff_format(path.read_bytes()[:4096]) == FORMATS["aecg"] == aecg.FORMAT
    others = [*(HOSPITAL / "ge_muse_xml").glob("*.xml"), *(HOSPITAL / "philips_xml").glob("*")]
    assert others and not any(aecg.sniff(p.read_bytes()[:4096]) for p in others)


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_rhythm_matches_ecgdatakit(path: Path) -> None:
    """Lead II and V2 agree with ecgdatakit's decode (physical µV): correlation ≥ 0.98 and
    amplitude within 10 %; the whole rhythm strip is read at its own rate, not the beats."""
    decoded = read_format("hl7_aecg", path.read_bytes())
    raw, stated = decoded.raw, STATED[path.name]
    ref = {lead.label: lead.to_physical() for lead in HL7aECGParser().parse(path).leads}
    assert raw.fs == stated["fs"] and raw.signal.shape == (stated["samples"], 12)
    assert set(raw.sig_name) == TWELVE and raw.units == ["uV"] * 12 and raw.signal.dtype == np.float32
    assert raw.comments == [] and decoded.derived_leads == ()
    for name in ("II", "V2"):
        ours = raw.signal[:, raw.sig_name.index(name)]
        assert ref[name].units == "uV" and ref[name].sampling_rate == raw.fs
        corr = np.corrcoef(ours, ref[name].samples)[0, 1]
        ratio = np.std(ours) / np.std(ref[name].samples)
        assert corr >= 0.98 and abs(ratio - 1) <= 0.10, (name, corr, ratio)
        np.testing.assert_allclose(ours, ref[name].samples, atol=1e-3)
        assert np.ptp(ours) > 100  # a real deflection in µV, not an empty lead


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_stated_metadata(path: Path) -> None:
    decoded = aecg.read(path.read_bytes())
    stated = STATED[path.name]
    assert decoded.format == "hl7_aecg"
    for field in ("recorded_at", "device", "institution", "age", "sex", "patient_id", "statements"):
        assert getattr(decoded, field) == stated[field], field


def test_birth_time_is_never_kept() -> None:
    """The Philips export states a birth time: it only yields the age, no field carries it."""
    data = (FOLDER / "philips_converted_ad4d3d80-d165_aecg.xml").read_bytes()
    assert b'birthTime value="19760101"' in data
    decoded = aecg.read(data)
    fields = {f.name: getattr(decoded, f.name) for f in dataclasses.fields(decoded) if f.name != "raw"}
    assert not any("1976" in str(value) for value in fields.values())


def test_an_implausible_stated_age_gives_way_to_the_birth_time() -> None:
    """A reported age of 460 years (a typo) is no age: the birth time (1953-05-08) gives one."""
    data = EXAMPLE.read_bytes()
    assert data.count(b'value="46" unit="a"') == 1
    decoded = aecg.read(data.replace(b'value="46" unit="a"', b'value="460" unit="a"'))
    assert decoded.age == aecg.read(data.replace(b'value="46" unit="a"', b'value="" unit="a"')).age == 49.0


def _text() -> str:
    return EXAMPLE.read_text(encoding="utf-8")


def _write(tmp_path: Path, content: str | bytes, name: str = "edited.xml") -> bytes:
    """Write a document to disk and read it back, as the pipeline would."""
    path = tmp_path / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path.read_bytes()


def _lead_ii_digits(text: str) -> tuple[int, int]:
    """Where the rhythm's lead II digits start and end (the rhythm series comes first)."""
    start = text.index("<digits>", text.index('code="MDC_ECG_LEAD_II"')) + len("<digits>")
    return start, text.index("</digits>", start)


def _replace_once(old: str, new: str) -> Callable[[], str]:
    """A document edit: the first `old` (in the rhythm series) replaced by `new`."""

    def edit() -> str:
        text = _text()
        assert old in text
        return text.replace(old, new, 1)

    return edit


def test_units_origin_and_increment_are_applied(tmp_path: Path) -> None:
    """Lead II rewritten with its scale in mV, an origin of 0.1 mV and the increment in ms: the
    same samples 100 µV higher at the same rate."""
    plain = aecg.read(EXAMPLE.read_bytes()).raw
    text = _text().replace('<increment value="0.002" unit="s"/>', '<increment value="2" unit="ms"/>', 1)
    at = text.index('code="MDC_ECG_LEAD_II"')
    lead = text[at:].replace('<origin value="0" unit="uV"/>', '<origin value="0.1" unit="mV"/>', 1)
    lead = lead.replace('<scale value="2.5" unit="uV"/>', '<scale value="0.0025" unit="mV"/>', 1)
    edited = aecg.read(_write(tmp_path, text[:at] + lead)).raw
    assert edited.fs == pytest.approx(500.0)
    np.testing.assert_allclose(edited.signal[:, 1], plain.signal[:, 1] + 100, atol=1e-3)
    np.testing.assert_array_equal(edited.signal[:, 0], plain.signal[:, 0])


def test_document_without_namespace_reads_the_same(tmp_path: Path) -> None:
    plain = aecg.read(EXAMPLE.read_bytes())
    bare = _text().replace('xmlns="urn:hl7-org:v3" ', "", 1)
    assert 'xmlns="urn:hl7-org:v3"' not in bare
    decoded = aecg.read(_write(tmp_path, bare))
    np.testing.assert_array_equal(decoded.raw.signal, plain.raw.signal)
    assert decoded.patient_id == plain.patient_id and decoded.statements == plain.statements


def _billion_laughs() -> str:
    """An AnnotatedECG document whose entities expand to 10^9 copies of "lol"."""
    entities = ['<!ENTITY lol0 "lol">'] + [f'<!ENTITY lol{k} "{f"&lol{k - 1};" * 10}">' for k in range(1, 10)]
    return (
        '<?xml version="1.0"?>\n<!DOCTYPE AnnotatedECG [\n'
        + "\n".join(entities)
        + '\n]>\n<AnnotatedECG xmlns="urn:hl7-org:v3"><title>&lol9;</title></AnnotatedECG>\n'
    )


def _external_entity() -> str:
    text = _text()
    head, _, body = text.partition("<AnnotatedECG")
    body = body.replace("<name>Clark</name>", "<name>&x;</name>", 1)
    return head + '<!DOCTYPE AnnotatedECG [<!ENTITY x SYSTEM "file:///etc/passwd">]>\n<AnnotatedECG' + body


def _shorter_lead_ii() -> str:
    text = _text()
    start, end = _lead_ii_digits(text)
    cut = text.rindex(" ", start, end - 40)
    return text[:cut] + text[end:]


def _insert_in_lead_ii(token: str) -> Callable[[], str]:
    def edit() -> str:
        text = _text()
        start, _ = _lead_ii_digits(text)
        return text[:start] + f" {token} " + text[start:]

    return edit


def _empty_lead_ii() -> str:
    text = _text()
    start, end = _lead_ii_digits(text)
    return text[:start] + text[end:]


BROKEN: dict[str, tuple[Callable[[], str | bytes], str]] = {
    "empty": (lambda: b"", "xml_parse"),
    "garbage": (lambda: bytes(range(256)) * 40, "xml_parse"),
    "truncated_file": (lambda: EXAMPLE.read_bytes()[: EXAMPLE.stat().st_size // 2], "xml_parse"),
    "billion_laughs": (_billion_laughs, "xml_entities"),
    "external_entity": (_external_entity, "xml_entities"),
    "unequal_lengths": (_shorter_lead_ii, "length_mismatch"),
    "empty_lead": (_empty_lead_ii, "no_signal"),
    "digit_not_a_number": (_insert_in_lead_ii("12x"), "corrupt_section"),
    "digit_nan": (_insert_in_lead_ii("nan"), "corrupt_section"),
    "no_increment": (_replace_once('<increment value="0.002" unit="s"/>', ""), "corrupt_section"),
    "zero_increment": (
        _replace_once('<increment value="0.002" unit="s"/>', '<increment value="0" unit="s"/>'),
        "corrupt_section",
    ),
    "increment_in_hz": (
        _replace_once('<increment value="0.002" unit="s"/>', '<increment value="500" unit="Hz"/>'),
        "unsupported_coding",
    ),
    "increment_without_unit": (
        _replace_once('<increment value="0.002" unit="s"/>', '<increment value="0.002"/>'),
        "unsupported_coding",
    ),
    "scale_in_mmhg": (
        _replace_once('<scale value="2.5" unit="uV"/>', '<scale value="2.5" unit="mm[Hg]"/>'),
        "unsupported_coding",
    ),
    "not_slist_pq": (_replace_once('xsi:type="SLIST_PQ"', 'xsi:type="SLIST_INT"'), "unsupported_coding"),
    "no_rhythm_series": (_replace_once('code="RHYTHM"', 'code="REPRESENTATIVE_BEAT"'), "no_signal"),
    "no_lead_sequence": (lambda: _text().replace("MDC_ECG_LEAD_", "MDC_ECG_OTHER_"), "no_signal"),
    "no_ecg_lead": (lambda: _text().replace("MDC_ECG_LEAD_", "MDC_ECG_LEAD_X"), "not_ecg"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_files_are_refused_with_a_reason(tmp_path: Path, case: str) -> None:
    make, reason = BROKEN[case]
    data = _write(tmp_path, make(), f"{case}.xml")
    start = time.perf_counter()
    with pytest.raises(ReaderError) as refused:
        aecg.read(data)
    assert refused.value.reason == reason
    assert time.perf_counter() - start < 2.0
    assert not any(word in str(refused.value) for word in ("Clark", "SBJ-123", "19530508"))
