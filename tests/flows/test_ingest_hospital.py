"""Hospital export formats through the ingest flow: the real exports of `shared/data/hospital`
(GE MUSE, Philips, HL7 aECG, DICOM, SCP-ECG, EDF) read by content, every file accounted for,
hostile files quarantined quickly, and no identifier from a file's demographics in the store."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pandas as pd
import pyarrow.dataset as ds
import pytest

from flows.ingest import ingest
from tasks import store as st
from tasks.ingest.records import IngestTotals
from tasks.settings import Settings
from tests.conftest import SHARED_DATA

HOSPITAL = SHARED_DATA / "hospital"
MUSE = HOSPITAL / "ge_muse_xml" / "braveheart_example1.xml"
# every file that holds a 12-lead ECG, with the format it must be read as
ECG_FILES = {
    **{f"ge_muse_xml/braveheart_example{i}.xml": "ge_muse_xml" for i in range(1, 5)},
    **{
        f"philips_xml/{name}": "philips_xml"
        for name in (
            "sierra_1_03_129DYPRG.XML",
            "sierra_1_03_repbeats_example.xml",
            "sierra_1_04_3191723_ZZDEMOPTONLY_orig.xml",
            "sierra_1_04_ad4d3d80-d165_orig.xml",
            "sierra_mrx_B9A3EKRG_129DYNRG.XML",
        )
    },
    **{
        f"hl7_aecg/{name}": "hl7_aecg"
        for name in (
            "fda_ectd_subject1_0.xml",
            "fda_hl7_2003-12_Example_aECG.xml",
            "liryc_hl7aecg_example.xml",
            "philips_converted_ad4d3d80-d165_aecg.xml",
        )
    },
    "dicom/ecgprocess_example-DICOM1.dcm": "dicom",
    "dicom/pydicom_waveform_ecg.dcm": "dicom",
    "scp_ecg/swifteen_Example.scp": "scp_ecg",
    "scp_ecg/ecgcontec_ecgviewer_demo.scp": "scp_ecg",
    "edf/ecgcontec_0000050_contec-ecg2edf.edf": "edf",
}
REFUSED = {"scp_ecg/healforce_62.SCP", "edf/edfio_short_psg.edf"}
Ingested = tuple[Path, IngestTotals]


def _first_windows(store: Path):
    rec = st.read_table(store, "records").to_pandas()
    return rec[rec["window"] == 0].set_index("source_path")


@pytest.fixture(scope="module")
def hospital_store(
    tmp_path_factory: pytest.TempPathFactory, prefect_harness: None
) -> tuple[Path, IngestTotals]:
    store = tmp_path_factory.mktemp("hospital") / "store"
    return store, ingest(HOSPITAL, store, settings=Settings(workers=2, shard_size=4))


def test_every_file_is_read_by_its_content_or_accounted_for(
    hospital_store: tuple[Path, IngestTotals],
) -> None:
    store, totals = hospital_store
    first = _first_windows(store)
    assert first["format"].to_dict() == ECG_FILES
    assert (first["site"] == first.index.str.split("/").str[0]).all()  # the folder rule
    quarantine = st.read_table(store, "quarantine").to_pandas().set_index("source_path")
    assert set(quarantine.index) == REFUSED
    assert quarantine.loc["edf/edfio_short_psg.edf", "reason"] == "not_ecg"
    assert quarantine.loc["scp_ecg/healforce_62.SCP", "reason"] in {"unknown_format", "corrupt_section"}
    assert dict(totals.skipped) == {"documentation": 1}  # hospital/README.md
    assert sum(totals.records.values()) == len(ECG_FILES)
    assert dict(totals.formats) == {f: list(ECG_FILES.values()).count(f) for f in set(ECG_FILES.values())}


def test_stated_metadata_reaches_the_record(hospital_store: Ingested) -> None:
    first = _first_windows(hospital_store[0])
    muse = first.loc["ge_muse_xml/braveheart_example1.xml"]
    assert list(muse["leads_derived"]) == ["III", "aVR", "aVL", "aVF"]
    assert pd.isna(muse["mi_label"])  # no statement: null, never 0
    # Philips 1.03 (PageWriter): "Inferior infarct, acute (LCx)", ">>> Acute MI <<<"
    philips = first.loc["philips_xml/sierra_1_03_129DYPRG.XML"]
    assert philips["mi_label"] == 1 and philips["mi_territory"] == "inferior"
    assert "myocardial infarction" in list(philips["dx"])
    # Philips 1.04: sinus rhythm, LVH, ST elevation "probably due to LVH": stated, and not MI
    assert first.loc["philips_xml/sierra_1_04_3191723_ZZDEMOPTONLY_orig.xml", "mi_label"] == 0
    dicom = first.loc["dicom/pydicom_waveform_ecg.dcm"]
    assert dicom["device"] and dicom["recorded_at"][:2] in {"19", "20"}
    assert first["recorded_at"].notna().sum() >= 10
    # the same ECG in two formats is one patient only if the files say so; every source_fs is native
    assert first.loc["dicom/pydicom_waveform_ecg.dcm", "source_fs"] == 1000
    assert first.loc["hl7_aecg/liryc_hl7aecg_example.xml", "source_fs"] == 100


def _muse_with(demographics: str, statements: list[str]) -> bytes:
    text = MUSE.read_bytes().decode("iso-8859-1")
    diagnosis = "".join(
        f"<DiagnosisStatement><StmtFlag>ENDSLINE</StmtFlag><StmtText>{s}</StmtText></DiagnosisStatement>"
        for s in statements
    )
    block = f"{demographics}<Diagnosis><Modality>RESTING</Modality>{diagnosis}</Diagnosis>"
    return text.replace("</MuseInfo>", "</MuseInfo>" + block, 1).encode("iso-8859-1")


NAME, GIVEN, MRN, BIRTH, DOCTOR = "Quixbury", "Hortensia", "MRN-4417-ZQX", "03-14-1951", "Wexlerton"


def _identified(mrn: str) -> str:
    return (
        f"<PatientDemographics><PatientID>{mrn}</PatientID><PatientAge>73</PatientAge>"
        f"<AgeUnits>YEARS</AgeUnits><DateofBirth>{BIRTH}</DateofBirth><Gender>FEMALE</Gender>"
        f"<PatientLastName>{NAME}</PatientLastName><PatientFirstName>{GIVEN}</PatientFirstName>"
        "</PatientDemographics><TestDemographics><AcquisitionDevice>MAC55</AcquisitionDevice>"
        "<AcquisitionTime>13:15:18</AcquisitionTime><AcquisitionDate>05-10-2021</AcquisitionDate>"
        f"<OverreaderLastName>{DOCTOR}</OverreaderLastName></TestDemographics>"
    )


def test_no_identifier_from_the_demographics_reaches_the_store(tmp_path: Path, prefect_harness: None) -> None:
    """A MUSE export with a made-up name, patient ID, birth date and a physician's name in a
    statement: ingest, quality gate and quality report write none of them anywhere in the store."""
    from flows.quality import quality
    from flows.report import quality_report

    archive = tmp_path / "muse"
    archive.mkdir()
    statements = [
        "Sinus rhythm",
        "Inferior infarct , age undetermined",
        f"Confirmed by {DOCTOR}, {GIVEN} (1234)",
    ]
    (archive / "a.xml").write_bytes(_muse_with(_identified(MRN), statements))
    (archive / "b.xml").write_bytes(_muse_with(_identified(MRN), ["Sinus rhythm"]))  # same patient
    (archive / "c.xml").write_bytes(_muse_with(_identified("MRN-0000-OTHER"), ["Sinus rhythm"]))
    store = tmp_path / "store"
    settings = Settings(workers=1)
    ingest(archive, store, settings=settings)
    quality(store, settings)
    quality_report(store, settings)

    rec = _first_windows(store)
    assert rec.loc["a.xml", "mi_label"] == 1 and rec.loc["a.xml", "mi_territory"] == "inferior"
    assert rec.loc["a.xml", "recorded_at"] == "2021-05-10T13:15:18" and rec.loc["a.xml", "age"] == 73
    assert (
        rec.loc["a.xml", "patient_key"] == rec.loc["b.xml", "patient_key"] != rec.loc["c.xml", "patient_key"]
    )
    secrets = [NAME, GIVEN, MRN, BIRTH, "1951", DOCTOR]
    texts = []
    for path in store.rglob("*"):
        if path.suffix == ".parquet":
            texts.append(str(ds.dataset(path).to_table().to_pylist()))
        elif path.is_file() and path.name != ".pseudonym_key":
            texts.append(path.read_bytes().decode("utf-8", "replace"))
    assert len(texts) > 5
    found = [(s, i) for s in secrets for i, t in enumerate(texts) if s.lower() in t.lower()]
    assert not found, found


BILLION_LAUGHS = (
    b'<?xml version="1.0"?>\n<!DOCTYPE RestingECG [\n<!ENTITY a "aaaaaaaaaa">\n'
    + b"".join(f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">\n'.encode() for i in range(9))
    + b"]>\n<RestingECG><MuseInfo>&j;</MuseInfo></RestingECG>\n"
)
XXE = (
    b'<?xml version="1.0"?>\n<!DOCTYPE RestingECG [<!ENTITY x SYSTEM "file:///etc/passwd">]>\n'
    b"<RestingECG><MuseInfo>&x;</MuseInfo></RestingECG>\n"
)


def test_hostile_and_broken_files_are_quarantined_quickly(tmp_path: Path, prefect_harness: None) -> None:
    archive = tmp_path / "archive"
    archive.mkdir()
    shutil.copy(MUSE, archive / "good.xml")
    (archive / "garbage.bin").write_bytes(bytes(range(256)) * 40)
    (archive / "empty.xml").write_bytes(b"")
    (archive / "laughs.xml").write_bytes(BILLION_LAUGHS)
    (archive / "xxe.xml").write_bytes(XXE)
    (archive / "cut.xml").write_bytes(MUSE.read_bytes()[:60_000])  # a MUSE export cut mid-waveform
    shutil.copy(HOSPITAL / "scp_ecg" / "healforce_62.SCP", archive / "healforce.SCP")
    shutil.copy(HOSPITAL / "edf" / "edfio_short_psg.edf", archive / "psg.edf")
    store = tmp_path / "store"
    start = time.perf_counter()
    totals = ingest(archive, store, settings=Settings(workers=1))
    assert time.perf_counter() - start < 60  # no hang: entity expansion is refused, not attempted
    reasons = st.read_table(store, "quarantine").to_pandas().set_index("source_path")["reason"].to_dict()
    assert reasons.pop("garbage.bin") == "unknown_format"
    assert reasons.pop("empty.xml") == "empty_file"
    assert reasons.pop("laughs.xml") == "xml_entities"
    assert reasons.pop("xxe.xml") == "xml_entities"
    assert reasons.pop("cut.xml") == "xml_parse"
    assert reasons.pop("healforce.SCP") in {"unknown_format", "corrupt_section"}
    assert reasons.pop("psg.edf") == "not_ecg"
    assert not reasons
    assert list(_first_windows(store).index) == ["good.xml"]
    assert sum(totals.quarantined.values()) == 7
