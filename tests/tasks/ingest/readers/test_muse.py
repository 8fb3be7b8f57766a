"""GE MUSE reader: the four BRAVEHEART exports decode like ecgdatakit's MUSE parser, the stated
metadata is read, and broken or hostile files are refused with a reason, quickly."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from ecgdatakit.parsing.parsers.ge_muse_xml import GEMuseXMLParser

from tasks.ingest.readers import FORMATS, muse
from tasks.ingest.readers import read as read_format
from tasks.ingest.readers import sniff as sniff_format
from tasks.ingest.readers.base import ReaderError
from tests.conftest import SHARED_DATA

HOSPITAL = SHARED_DATA / "hospital"
SAMPLES = sorted((HOSPITAL / "ge_muse_xml").glob("*.xml"))
EXAMPLE = HOSPITAL / "ge_muse_xml" / "braveheart_example1.xml"
RHYTHM = "<WaveformType>Rhythm</WaveformType>"


def _agreement(ours: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    """Pearson correlation and ratio of standard deviations of two equally long leads."""
    return float(np.corrcoef(ours, ref)[0, 1]), float(np.std(ours) / np.std(ref))


def test_samples_are_there() -> None:
    assert len(SAMPLES) == 4


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_sniffs_muse_and_nothing_else(path: Path) -> None:
    assert muse.sniff(path.read_bytes()[:4096])
    assert sniff_format(path.read_bytes()[:4096]) == FORMATS["muse"] == muse.FORMAT
    others = [*(HOSPITAL / "hl7_aecg").glob("*.xml"), *(HOSPITAL / "philips_xml").glob("*")]
    assert others and not any(muse.sniff(p.read_bytes()[:4096]) for p in others)


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_rhythm_matches_ecgdatakit(path: Path) -> None:
    """Lead II, V2 and the derived III and aVF agree with ecgdatakit's decode (physical µV) in
    shape and amplitude; the rhythm strip is read, not the 600-sample median beat."""
    decoded = read_format("ge_muse_xml", path.read_bytes())
    raw = decoded.raw
    ref = {lead.label: lead.to_physical() for lead in GEMuseXMLParser().parse(path).leads}
    assert raw.fs == 500.0 and raw.signal.shape == (5000, 12) and raw.signal.dtype == np.float32
    assert raw.units == ["uV"] * 12 and raw.comments == []
    assert raw.sig_name == ["I", "II", "V1", "V2", "V3", "V4", "V5", "V6", "III", "aVR", "aVL", "aVF"]
    assert decoded.derived_leads == ("III", "aVR", "aVL", "aVF")
    assert {ref[name].units for name in ("I", "II", "V2")} == {"uV"}
    expected = {
        "II": ref["II"].samples,
        "V2": ref["V2"].samples,
        "III": ref["II"].samples - ref["I"].samples,
        "aVF": ref["II"].samples - ref["I"].samples / 2,
    }
    for name, reference in expected.items():
        corr, ratio = _agreement(raw.signal[:, raw.sig_name.index(name)], reference)
        assert corr >= 0.98 and abs(ratio - 1) <= 0.10, (name, corr, ratio)
    np.testing.assert_allclose(raw.signal[:, 1], ref["II"].samples, atol=1e-3)
    assert np.ptp(raw.signal[:, 1]) > 500  # a QRS of several hundred µV, not an empty lead


def test_derived_limb_leads_follow_einthoven_and_goldberger() -> None:
    raw = muse.read(EXAMPLE.read_bytes()).raw
    lead = {name: raw.signal[:, k].astype(np.float64) for k, name in enumerate(raw.sig_name)}
    np.testing.assert_allclose(lead["III"], lead["II"] - lead["I"], atol=1e-3)
    np.testing.assert_allclose(lead["aVR"], -(lead["I"] + lead["II"]) / 2, atol=1e-3)
    np.testing.assert_allclose(lead["aVL"], lead["I"] - lead["II"] / 2, atol=1e-3)
    np.testing.assert_allclose(lead["aVF"], lead["II"] - lead["I"] / 2, atol=1e-3)
    np.testing.assert_allclose(lead["aVR"] + lead["aVL"] + lead["aVF"], 0, atol=1e-3)


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_samples_state_no_demographics(path: Path) -> None:
    """The BRAVEHEART exports carry no Patient/TestDemographics and no Diagnosis (checked by
    eye): nothing is invented."""
    decoded = muse.read(path.read_bytes())
    assert decoded.format == "ge_muse_xml"
    stated = (decoded.recorded_at, decoded.device, decoded.institution, decoded.age, decoded.sex)
    assert stated == (None,) * 5
    assert decoded.patient_id is None and decoded.statements == ()


def _write(tmp_path: Path, text: str, name: str = "edited.xml") -> bytes:
    """Write an edited export to disk and read it back, as the pipeline would."""
    path = tmp_path / name
    path.write_bytes(text.encode("iso-8859-1"))
    return path.read_bytes()


def _example() -> str:
    return EXAMPLE.read_bytes().decode("iso-8859-1")


def _edit_rhythm(old: str, new: str, count: int = 1) -> str:
    """The example with `old` replaced by `new` inside the rhythm waveform only."""
    head, _, rhythm = _example().partition(RHYTHM)
    assert old in rhythm
    return head + RHYTHM + rhythm.replace(old, new, count)


_DEMOGRAPHICS = """
   <PatientDemographics>
      <PatientID>MRN0042</PatientID>
      <PatientAge>67</PatientAge>
      <AgeUnits>YEARS</AgeUnits>
      <DateofBirth>02-14-1952</DateofBirth>
      <Gender>FEMALE</Gender>
      <PatientLastName>DOE</PatientLastName>
   </PatientDemographics>
   <TestDemographics>
      <DataType>RESTING</DataType>
      <Site>11</Site>
      <SiteName>Research</SiteName>
      <AcquisitionDevice>MAC55</AcquisitionDevice>
      <Status>CONFIRMED</Status>
      <LocationName>FL Research Location</LocationName>
      <AcquisitionTime>13:15:18</AcquisitionTime>
      <AcquisitionDate>05-10-2021</AcquisitionDate>
   </TestDemographics>"""
_DIAGNOSIS = """
   <Diagnosis>
      <Modality>RESTING</Modality>
      <DiagnosisStatement>
         <StmtFlag>ENDSLINE</StmtFlag>
         <StmtText>Sinus rhythm</StmtText>
      </DiagnosisStatement>
      <DiagnosisStatement>
         <StmtText>Inferior infarct</StmtText>
      </DiagnosisStatement>
      <DiagnosisStatement>
         <StmtFlag>ENDSLINE</StmtFlag>
         <StmtText>, age undetermined</StmtText>
      </DiagnosisStatement>
      <DiagnosisStatement>
         <StmtFlag>ENDSLINE</StmtFlag>
         <StmtText>Abnormal ECG</StmtText>
      </DiagnosisStatement>
   </Diagnosis>"""
_ORIGINAL = """
   <OriginalDiagnosis>
      <DiagnosisStatement>
         <StmtText>Sinus bradycardia</StmtText>
      </DiagnosisStatement>
      <DiagnosisStatement>
         <StmtText>Anterior infarct</StmtText>
         <StmtText>, possibly acute</StmtText>
      </DiagnosisStatement>
   </OriginalDiagnosis>"""


def _with_blocks(*blocks: str) -> str:
    return _example().replace("</MuseInfo>", "</MuseInfo>" + "".join(blocks), 1)


def test_stated_metadata_is_read(tmp_path: Path) -> None:
    """An export with MUSE's demographic and diagnosis blocks (the layout of a MUSE 9 export):
    date and time, cart model, site, age, sex, patient id and the statements, the line pieces
    joined where MUSE flags the line end."""
    decoded = muse.read(_write(tmp_path, _with_blocks(_DEMOGRAPHICS, _DIAGNOSIS, _ORIGINAL)))
    assert decoded.recorded_at == "2021-05-10T13:15:18"
    assert decoded.device == "MAC55"
    assert decoded.institution == "Research"
    assert decoded.age == 67.0 and decoded.sex == "F" and decoded.patient_id == "MRN0042"
    assert decoded.statements == ("Sinus rhythm", "Inferior infarct , age undetermined", "Abnormal ECG")
    assert decoded.raw.signal.shape == (5000, 12)


def test_original_diagnosis_when_there_is_no_diagnosis(tmp_path: Path) -> None:
    """Without `Diagnosis` the device's `OriginalDiagnosis` is read; without line-end flags each
    DiagnosisStatement is one statement, its StmtText pieces joined."""
    decoded = muse.read(_write(tmp_path, _with_blocks(_ORIGINAL)))
    assert decoded.statements == ("Sinus bradycardia", "Anterior infarct , possibly acute")


def test_location_and_months_when_no_site(tmp_path: Path) -> None:
    """`LocationName` stands in for a missing `SiteName`, an age in months is converted, and a
    date without a time is kept as a date."""
    text = _with_blocks(_DEMOGRAPHICS)
    text = text.replace("<SiteName>Research</SiteName>", "").replace("YEARS", "MONTHS")
    text = text.replace("<AcquisitionTime>13:15:18</AcquisitionTime>", "")
    decoded = muse.read(_write(tmp_path, text))
    assert decoded.institution == "FL Research Location"
    assert decoded.age == pytest.approx(67 / 12)
    assert decoded.recorded_at == "2021-05-10"


def _reason(data: bytes) -> str:
    """The reason a file is refused, checking the refusal is quick."""
    start = time.perf_counter()
    with pytest.raises(ReaderError) as refused:
        muse.read(data)
    assert time.perf_counter() - start < 2.0
    return refused.value.reason


def _billion_laughs() -> str:
    """A RestingECG document whose entities expand to 10^9 copies of "lol"."""
    entities = ['<!ENTITY lol0 "lol">'] + [f'<!ENTITY lol{k} "{f"&lol{k - 1};" * 10}">' for k in range(1, 10)]
    return (
        '<?xml version="1.0"?>\n<!DOCTYPE RestingECG [\n'
        + "\n".join(entities)
        + "\n]>\n<RestingECG><MuseInfo><MuseVersion>&lol9;</MuseVersion></MuseInfo></RestingECG>\n"
    )


def test_entity_expansion_and_external_entities_are_refused(tmp_path: Path) -> None:
    """Billion laughs and an external entity in a MUSE-rooted file: `xml_entities`, at once;
    the plain DOCTYPE line every MUSE export has is accepted."""
    laughs = _write(tmp_path, _billion_laughs(), "laughs.xml")
    assert muse.sniff(laughs[:4096]) and _reason(laughs) == "xml_entities"
    external = _example().replace(
        '<!DOCTYPE RestingECG SYSTEM "restecg.dtd">',
        '<!DOCTYPE RestingECG [<!ENTITY x SYSTEM "file:///etc/passwd">]>',
    )
    external = external.replace("<MuseVersion>9.0.7.17363", "<MuseVersion>&x;", 1)
    assert "&x;" in external and _reason(_write(tmp_path, external, "xxe.xml")) == "xml_entities"
    declared = _write(tmp_path, _example(), "doctype.xml")
    assert b'<!DOCTYPE RestingECG SYSTEM "restecg.dtd">' in declared[:200]
    assert muse.read(declared).raw.signal.shape == (5000, 12)


def _first_rhythm_data(text: str) -> tuple[int, int]:
    """Where the base64 of the rhythm's first lead starts and ends in the export's text."""
    start = text.index("<WaveFormData>", text.index(RHYTHM)) + len("<WaveFormData>")
    start += len(text[start:]) - len(text[start:].lstrip())
    return start, text.index("</WaveFormData>", start)


def _cut_base64(text: str) -> str:
    """The export with the last 400 base64 characters of the rhythm's first lead cut off."""
    end = _first_rhythm_data(text)[1]
    return text[: end - 400] + text[end:]


def _overwrite_base64(text: str, offset: int, new: str) -> str:
    """The export with base64 characters of the first rhythm lead overwritten, its length kept."""
    at = _first_rhythm_data(text)[0] + offset
    assert text[at : at + len(new)] != new
    return text[:at] + new + text[at + len(new) :]


BROKEN: dict[str, tuple[Callable[[], str | bytes], str]] = {
    "empty": (lambda: b"", "xml_parse"),
    "garbage": (lambda: bytes(range(256)) * 40, "xml_parse"),
    "truncated_file": (lambda: EXAMPLE.read_bytes()[: EXAMPLE.stat().st_size // 2], "xml_parse"),
    "truncated_base64": (lambda: _cut_base64(_example()), "truncated_signal"),
    "count_larger_than_data": (
        lambda: _edit_rhythm("<LeadSampleCountTotal>5000<", "<LeadSampleCountTotal>6000<").replace(
            "<LeadByteCountTotal>10000<", "<LeadByteCountTotal>12000<"
        ),
        "truncated_signal",
    ),
    "count_against_byte_count": (
        lambda: _edit_rhythm("<LeadSampleCountTotal>5000<", "<LeadSampleCountTotal>6000<"),
        "length_mismatch",
    ),
    "count_smaller_than_data": (
        lambda: _edit_rhythm("<LeadSampleCountTotal>5000<", "<LeadSampleCountTotal>4000<").replace(
            "<LeadByteCountTotal>10000<", "<LeadByteCountTotal>8000<", 1
        ),
        "length_mismatch",
    ),
    "count_too_large": (
        lambda: _edit_rhythm("<LeadSampleCountTotal>5000<", f"<LeadSampleCountTotal>{2**24 + 1}<"),
        "too_large",
    ),
    "crc_mismatch": (lambda: _overwrite_base64(_example(), 0, "BBBB"), "corrupt_section"),
    "not_base64": (lambda: _overwrite_base64(_example(), 0, "!!!!"), "corrupt_section"),
    "no_rhythm": (lambda: _example().replace(RHYTHM, "<WaveformType>Other</WaveformType>"), "no_signal"),
    "unknown_unit": (
        lambda: _edit_rhythm("MICROVOLTS", "FURLONGS"),
        "unsupported_coding",
    ),
    "no_rate": (lambda: _edit_rhythm("<SampleBase>500</SampleBase>", ""), "corrupt_section"),
    "no_ecg_lead": (lambda: _edit_rhythm("</LeadID>", "x</LeadID>", count=-1), "not_ecg"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_files_are_refused_with_a_reason(tmp_path: Path, case: str) -> None:
    make, reason = BROKEN[case]
    content = make()
    path = tmp_path / f"{case}.xml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode("iso-8859-1"))
    assert _reason(path.read_bytes()) == reason


def test_refusals_do_not_quote_identifying_fields(tmp_path: Path) -> None:
    """A refused export's detail names sizes and leads, never the patient's fields."""
    text = _cut_base64(_with_blocks(_DEMOGRAPHICS))
    with pytest.raises(ReaderError) as refused:
        muse.read(_write(tmp_path, text))
    assert refused.value.reason == "truncated_signal"
    assert not any(word in str(refused.value) for word in ("MRN0042", "DOE", "1952"))
