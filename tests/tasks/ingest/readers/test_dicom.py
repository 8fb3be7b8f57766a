"""DICOM waveform reader: the two sample files (Mortara ELI 250 at 1000 Hz, GE MAC at 500 Hz)
decode like ecgdatakit's independent DICOM parser, the rhythm group is chosen over the median
beat, the stated metadata is read, and edited or broken files (written with pydicom or cut
short) are read or refused with a reason, quickly."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from ecgdatakit.parsing.parsers.dicom_waveform import DICOMWaveformParser
from pydicom.uid import CTImageStorage, DeflatedExplicitVRLittleEndian, HemodynamicWaveformStorage

from tasks.ingest.readers import FORMATS, dicom
from tasks.ingest.readers import read as read_format
from tasks.ingest.readers import sniff as sniff_format
from tasks.ingest.readers.base import Decoded, ReaderError
from tests.conftest import SHARED_DATA

HOSPITAL = SHARED_DATA / "hospital"
SAMPLES = sorted((HOSPITAL / "dicom").glob("*.dcm"))
MORTARA = HOSPITAL / "dicom" / "pydicom_waveform_ecg.dcm"
LEADS = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]


@cache
def _decoded(path: Path) -> Decoded:
    return dicom.read(path.read_bytes())


def _agreement(ours: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    """Pearson correlation and ratio of standard deviations of two equally long leads."""
    return float(np.corrcoef(ours, ref)[0, 1]), float(np.std(ours) / np.std(ref))


def test_samples_are_there() -> None:
    assert len(SAMPLES) == 2 and MORTARA in SAMPLES


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_sniffs_dicom_and_nothing_else(path: Path) -> None:
    assert dicom.sniff(path.read_bytes()[:4096]) and FORMATS["dicom"] == dicom.FORMAT
    assert sniff_format(path.read_bytes()[:4096]) == "dicom"
    others = [
        p
        for folder in HOSPITAL.iterdir()
        if folder.is_dir() and folder.name != "dicom"
        for p in folder.iterdir()
    ]
    assert len(others) > 10 and not any(dicom.sniff(p.read_bytes()[:4096]) for p in others)


@pytest.mark.parametrize(("path", "fs", "n"), [(MORTARA, 1000.0, 10000), (SAMPLES[0], 500.0, 5000)])
def test_rhythm_matches_ecgdatakit(path: Path, fs: float, n: int) -> None:
    """Lead II and V2 agree with ecgdatakit's decode in physical µV; the 10-s rhythm group is
    read, not the median beat group."""
    raw = read_format("dicom", path.read_bytes()).raw
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # about the multiplex groups it does not load
        record = DICOMWaveformParser().parse(path)
    ref = {lead.label: lead.samples * lead.resolution + lead.offset for lead in record.leads}
    assert {lead.resolution_unit for lead in record.leads} == {"uV"}
    assert raw.fs == fs and raw.signal.shape == (n, 12) and raw.signal.dtype == np.float32
    assert raw.sig_name == LEADS and raw.units == ["uV"] * 12 and raw.comments == []
    for name in ("II", "V2"):
        ours = raw.signal[:, raw.sig_name.index(name)]
        corr, ratio = _agreement(ours, ref[name])
        assert corr >= 0.98 and abs(ratio - 1) <= 0.10, (name, corr, ratio)
        np.testing.assert_allclose(ours, ref[name], atol=1e-3)
    assert np.ptp(raw.signal[:, 1]) > 500


EXPECTED = {
    "pydicom_waveform_ecg.dcm": (
        "2013-01-25T10:59:19",
        "Mortara Instrument, Inc. el250",
        "E. O. Ospedali Galliera",
        42.0,
        "F",
        "642341",
        ("RITMO SINUSALE", "ECG NORMALE"),
    ),
    "ecgprocess_example-DICOM1.dcm": (
        "2023-01-04T08:58:44",
        "GE Healthcare MV360",
        None,
        None,
        "F",
        "removed",
        (),
    ),
}


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_stated_metadata_is_read(path: Path) -> None:
    """AcquisitionDateTime, manufacturer and model, institution, age (`042Y`), sex, patient id
    and the annotation statements, as read by eye with pydicom; the birth date is not kept."""
    decoded = _decoded(path)
    stated = (decoded.recorded_at, decoded.device, decoded.institution, decoded.age, decoded.sex)
    assert (*stated, decoded.patient_id, decoded.statements) == EXPECTED[path.name]
    assert decoded.format == "dicom" and decoded.derived_leads == ()
    assert "1971" not in repr(decoded)  # PatientBirthDate 19710123 of the Mortara file


def _edited(tmp_path: Path, edit: Callable[[Any], None], source: Path = MORTARA) -> bytes:
    """A copy of a sample edited with pydicom, written to disk and read back."""
    ds = pydicom.dcmread(source)
    edit(ds)
    path = tmp_path / "edited.dcm"
    ds.save_as(path)
    return path.read_bytes()


def _sources(ds: Any) -> list[Any]:
    """The rhythm group's channel source codes."""
    return [channel.ChannelSourceSequence[0] for channel in ds.WaveformSequence[0].ChannelDefinitionSequence]


def test_ecg_under_a_hemodynamic_sop_class(tmp_path: Path) -> None:
    """A 12-lead ECG some device labels as a Hemodynamic Waveform reads the same."""

    def relabel(ds: Any) -> None:
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = HemodynamicWaveformStorage

    raw = dicom.read(_edited(tmp_path, relabel)).raw
    np.testing.assert_array_equal(raw.signal, _decoded(MORTARA).raw.signal)


def test_names_from_meanings_inverted_avr_and_millivolts(tmp_path: Path) -> None:
    """Without lead codes the names come from the code meanings ("Lead I (Einthoven)"); a
    channel stated as -aVR is turned back into aVR; a channel in mV stays in mV."""

    def recode(ds: Any) -> None:
        for source in _sources(ds):
            source.CodeValue = "X"
        _sources(ds)[3].CodeMeaning = "-aVR"
        ds.WaveformSequence[0].ChannelDefinitionSequence[1].ChannelSensitivityUnitsSequence[
            0
        ].CodeValue = "mV"

    raw, original = dicom.read(_edited(tmp_path, recode)).raw, _decoded(MORTARA).raw
    assert raw.sig_name == LEADS and raw.units[:3] == ["uV", "mV", "uV"]
    np.testing.assert_array_equal(raw.signal[:, 3], -original.signal[:, 3])
    np.testing.assert_array_equal(raw.signal[:, :3], original.signal[:, :3])


def test_rhythm_group_is_chosen_whatever_the_order(tmp_path: Path) -> None:
    """With the median group first and no group labels, the longest group is the rhythm."""

    def reorder(ds: Any) -> None:
        groups = list(ds.WaveformSequence)
        for group in groups:
            del group.MultiplexGroupLabel
        ds.WaveformSequence = pydicom.Sequence(groups[::-1])

    raw = dicom.read(_edited(tmp_path, reorder)).raw
    np.testing.assert_array_equal(raw.signal, _decoded(MORTARA).raw.signal)


def _pressure(ds: Any) -> None:
    """Every channel a pressure in mmHg."""
    for channel in ds.WaveformSequence[0].ChannelDefinitionSequence:
        channel.ChannelSourceSequence[0].CodeValue = "P"
        channel.ChannelSourceSequence[0].CodeMeaning = "Arterial pressure"
        channel.ChannelSensitivityUnitsSequence[0].CodeValue = "mm[Hg]"
    del ds.WaveformSequence[1]


def _group(**values: Any) -> Callable[[Any], None]:
    """An edit setting attributes of the rhythm group."""

    def edit(ds: Any) -> None:
        for keyword, value in values.items():
            setattr(ds.WaveformSequence[0], keyword, value)

    return edit


def _no_waveform(sop_class: str) -> Callable[[Any], None]:
    def edit(ds: Any) -> None:
        del ds.WaveformSequence
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = sop_class

    return edit


def _deflated(ds: Any) -> None:
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian


EDITED: dict[str, tuple[Callable[[Any], None], str]] = {
    "pressure_channels": (_pressure, "not_ecg"),
    "no_waveform_in_an_image": (_no_waveform(CTImageStorage), "not_ecg"),
    "no_waveform_in_an_ecg": (_no_waveform(pydicom.uid.TwelveLeadECGWaveformStorage), "no_signal"),
    "samples_beyond_data": (_group(NumberOfWaveformSamples=10001), "truncated_signal"),
    "data_beyond_samples": (_group(NumberOfWaveformSamples=9900), "length_mismatch"),
    "samples_too_many": (_group(NumberOfWaveformSamples=2**24 + 1), "too_large"),
    "no_samples": (_group(NumberOfWaveformSamples=0), "no_signal"),
    "channels_undefined": (_group(NumberOfWaveformChannels=13), "corrupt_section"),
    "mu_law": (_group(WaveformBitsAllocated=8, WaveformSampleInterpretation="MB"), "unsupported_coding"),
    "bits_against_coding": (_group(WaveformBitsAllocated=32), "unsupported_coding"),
    "deflated": (_deflated, "unsupported_coding"),
}


def _reason(data: bytes) -> ReaderError:
    """The refusal of a file, checking it is quick and names no patient field."""
    start = time.perf_counter()
    with pytest.raises(ReaderError) as refused:
        dicom.read(data)
    assert time.perf_counter() - start < 2.0
    assert not any(word in str(refused.value) for word in ("642341", "19710123", "Galliera"))
    return refused.value


@pytest.mark.parametrize("case", sorted(EDITED))
def test_edited_files_are_refused_with_a_reason(tmp_path: Path, case: str) -> None:
    edit, reason = EDITED[case]
    assert _reason(_edited(tmp_path, edit)).reason == reason


def test_not_ecg_names_the_channels(tmp_path: Path) -> None:
    assert "Arterial pressure" in str(_reason(_edited(tmp_path, _pressure)))


def _cut(path: Path, end: int) -> bytes:
    return path.read_bytes()[:end]


BROKEN: dict[str, tuple[Callable[[], bytes], str]] = {
    "empty": (lambda: b"", "corrupt_section"),
    "no_magic": (lambda: bytes(200), "corrupt_section"),
    "garbage_after_magic": (lambda: bytes(128) + b"DICM" + bytes(range(256)) * 16, "corrupt_section"),
    "cut_in_an_element": (lambda: _cut(MORTARA, 1003), "truncated_signal"),
    "cut_in_the_rhythm": (lambda: _cut(MORTARA, MORTARA.stat().st_size // 2), "truncated_signal"),
    "cut_by_one_byte": (lambda: _cut(MORTARA, MORTARA.stat().st_size - 1), "truncated_signal"),
    "cut_in_a_sequence": (lambda: _cut(SAMPLES[0], SAMPLES[0].stat().st_size - 7), "truncated_signal"),
    "only_file_meta": (lambda: _cut(MORTARA, 300), "no_signal"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_files_are_refused_with_a_reason(tmp_path: Path, case: str) -> None:
    make, reason = BROKEN[case]
    path = tmp_path / f"{case}.dcm"
    path.write_bytes(make())
    assert _reason(path.read_bytes()).reason == reason
