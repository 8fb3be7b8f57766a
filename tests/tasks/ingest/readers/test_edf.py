"""EDF reader: the Contec 12-lead recording decodes like biosig's save2gdf (an independent
reader), the sleep study without ECG leads is refused as `not_ecg`, labels and EDF+ fields are
read, and broken files are refused with a reason, quickly."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import edfio
import numpy as np
import pytest

from tasks.ingest.readers import FORMATS, edf
from tasks.ingest.readers import read as read_format
from tasks.ingest.readers import sniff as sniff_format
from tasks.ingest.readers.base import ReaderError
from tests.conftest import SHARED_DATA

HOSPITAL = SHARED_DATA / "hospital"
SAMPLES = sorted((HOSPITAL / "edf").glob("*.edf"))
CONTEC = HOSPITAL / "edf" / "ecgcontec_0000050_contec-ecg2edf.edf"
PSG = HOSPITAL / "edf" / "edfio_short_psg.edf"
LEADS = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
HEADER = 256 * 13  # the Contec file's header: 12 signals


def _agreement(ours: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    """Pearson correlation and ratio of standard deviations of two equally long leads."""
    return float(np.corrcoef(ours, ref)[0, 1]), float(np.std(ours) / np.std(ref))


def test_samples_are_there() -> None:
    assert SAMPLES == [CONTEC, PSG]


def test_sniffs_edf_and_nothing_else() -> None:
    assert all(edf.sniff(p.read_bytes()[:4096]) for p in SAMPLES) and FORMATS["edf"] == edf.FORMAT
    assert {sniff_format(p.read_bytes()[:4096]) for p in SAMPLES} == {"edf"}
    others = [
        p
        for folder in HOSPITAL.iterdir()
        if folder.is_dir() and folder.name != "edf"
        for p in folder.iterdir()
    ]
    assert len(others) > 10 and not any(edf.sniff(p.read_bytes()[:4096]) for p in others)


def _save2gdf(path: Path, tmp_path: Path) -> np.ndarray:
    """biosig's decode of an EDF file in physical units (its CSV export), samples × channels."""
    save2gdf = shutil.which("save2gdf")
    assert save2gdf, "biosig's save2gdf (Debian biosig-tools) is the reference decoder of this test"
    out = tmp_path / "reference.csv"
    subprocess.run([save2gdf, "-CSV", str(path), str(out)], check=True, capture_output=True, timeout=60)
    return np.loadtxt(out, delimiter=",", skiprows=1)


def test_contec_matches_save2gdf(tmp_path: Path) -> None:
    """Lead II and aVF agree with save2gdf (correlation, amplitude and value by value); the
    precordial leads of this recording are flat (electrodes not connected), V2 is the same
    constant in both readers."""
    raw = read_format("edf", CONTEC.read_bytes()).raw
    ref = _save2gdf(CONTEC, tmp_path)
    assert raw.fs == 800.0 and raw.signal.shape == ref.shape == (37855, 12)
    assert raw.sig_name == LEADS and raw.units == ["mV"] * 12 and raw.comments == []
    assert raw.signal.dtype == np.float32
    for name in ("II", "aVF"):
        k = raw.sig_name.index(name)
        corr, ratio = _agreement(raw.signal[:, k], ref[:, k])
        assert corr >= 0.98 and abs(ratio - 1) <= 0.10, (name, corr, ratio)
        np.testing.assert_allclose(raw.signal[:, k], ref[:, k], atol=1e-4)
    assert np.ptp(raw.signal[:, 1]) > 1.0  # mV: QRS complexes, not an empty lead
    v2 = raw.signal[:, raw.sig_name.index("V2")]
    assert np.ptp(v2) == 0 and np.allclose(v2, ref[:, 7], atol=1e-5)


def test_contec_metadata() -> None:
    """Start date and time as stated; the plain-EDF patient field ("0 dd-MMM-yyyy") is free text,
    not EDF+ subfields, and the recording field names no equipment: nothing else is read."""
    decoded = edf.read(CONTEC.read_bytes())
    assert decoded.format == "edf" and decoded.recorded_at == "2020-11-16T21:44:39"
    assert (decoded.device, decoded.institution, decoded.age, decoded.sex, decoded.patient_id) == (None,) * 5
    assert decoded.statements == () and decoded.derived_leads == ()


def test_sleep_study_is_not_an_ecg() -> None:
    """The polysomnography has EEG, EOG, EMG, respiration and temperature but no ECG lead: it is
    refused with its channel labels in the detail."""
    with pytest.raises(ReaderError) as refused:
        edf.read(PSG.read_bytes())
    assert refused.value.reason == "not_ecg"
    assert all(label in str(refused.value) for label in ("EEG Fpz-Cz", "EOG horizontal", "Temp rectal"))


def _patched(data: bytes, offset: int, value: str, width: int) -> bytes:
    """A header field overwritten with an ASCII value padded to its width."""
    field = value.encode("ascii").ljust(width)
    assert len(field) == width
    return data[:offset] + field + data[offset + width :]


def _write(tmp_path: Path, data: bytes, name: str = "edited.edf") -> bytes:
    path = tmp_path / name
    path.write_bytes(data)
    return path.read_bytes()


def test_prefixed_labels_and_edf_plus_fields(tmp_path: Path) -> None:
    """Labels such as "ECG I", "EKG-II", "ECG V1" name the leads; an EDF+ header gives the patient
    code, sex, the age at the start (from the birth date, which is not kept) and the equipment."""
    data = CONTEC.read_bytes()
    labels = ["ECG I", "EKG-II", "ECG_III", "ECG aVR", "aVL", "Lead aVF", *[f"ECG V{k}" for k in range(1, 7)]]
    for k, label in enumerate(labels):
        data = _patched(data, 256 + 16 * k, label, 16)
    data = _patched(data, 8, "MCH-0234567 F 02-MAY-1951 Haagse_Harry", 80)
    data = _patched(data, 88, "Startdate 16-NOV-2020 EMR-1 tech Contec_ECG90A", 80)
    data = _patched(data, 192, "EDF+C", 44)
    decoded = edf.read(_write(tmp_path, data))
    assert decoded.raw.sig_name == LEADS
    assert (decoded.patient_id, decoded.sex, decoded.age, decoded.device) == (
        "MCH-0234567",
        "F",
        69.0,
        "Contec ECG90A",
    )
    assert "Haagse" not in repr(decoded) and "1951" not in repr(decoded)
    np.testing.assert_array_equal(decoded.raw.signal, edf.read(CONTEC.read_bytes()).raw.signal)


def _built(tmp_path: Path, signals: list[edfio.EdfSignal]) -> bytes:
    """A small EDF written by edfio (plain EDF with EDF+-style patient and recording fields)."""
    recording = edfio.Edf(
        signals,
        patient=edfio.Patient(code="P-7", sex="M", birthdate=dt.date(1960, 3, 1), name="Doe_John"),
        recording=edfio.Recording(startdate=dt.date(2021, 5, 10), equipment_code="Holter_X"),
        starttime=dt.time(13, 15, 18),
    )
    path = tmp_path / "built.edf"
    recording.write(path)
    return path.read_bytes()


def _signal(label: str, fs: float, unit: str = "uV") -> edfio.EdfSignal:
    t = np.arange(int(10 * fs)) / fs
    return edfio.EdfSignal(
        500 * np.sin(2 * np.pi * t), sampling_frequency=fs, label=label, physical_dimension=unit
    )


def test_ecg_channels_among_others(tmp_path: Path) -> None:
    """Only the lead channels in µV/mV are kept (a respiration channel and an unlabelled ECG are
    not leads); subfields in the EDF+ layout are read from a plain EDF header too."""
    data = _built(
        tmp_path,
        [_signal("Resp", 25, "Ohm"), _signal("ECG II", 250), _signal("ECG", 250), _signal("V1", 250)],
    )
    decoded = edf.read(data)
    assert (
        decoded.raw.sig_name == ["II", "V1"] and decoded.raw.units == ["uV", "uV"] and decoded.raw.fs == 250.0
    )
    assert decoded.raw.signal.shape == (2500, 2)
    np.testing.assert_allclose(
        decoded.raw.signal[:, 0], 500 * np.sin(2 * np.pi * np.arange(2500) / 250), atol=0.1
    )
    assert (decoded.recorded_at, decoded.age, decoded.sex) == ("2021-05-10T13:15:18", 61.0, "M")
    assert (decoded.patient_id, decoded.device) == ("P-7", "Holter X")


BUILT: dict[str, tuple[list[tuple[str, float, str]], str]] = {
    "rates_differ": ([("ECG I", 500, "uV"), ("ECG II", 250, "uV")], "unsupported_coding"),
    "lead_without_voltage_unit": ([("ECG II", 250, "")], "not_ecg"),
}


@pytest.mark.parametrize("case", sorted(BUILT))
def test_built_files_are_refused(tmp_path: Path, case: str) -> None:
    specs, reason = BUILT[case]
    data = _built(tmp_path, [_signal(*spec) for spec in specs])
    with pytest.raises(ReaderError) as refused:
        edf.read(data)
    assert refused.value.reason == reason


def _contec() -> bytes:
    return CONTEC.read_bytes()


BROKEN: dict[str, tuple[Callable[[], bytes], str]] = {
    "empty": (lambda: b"", "corrupt_section"),
    "garbage_after_magic": (lambda: b"0       " + bytes(range(32, 127)) * 40, "corrupt_section"),
    "header_cut": (lambda: _contec()[:200], "truncated_signal"),
    "signal_headers_cut": (lambda: _contec()[:1000], "truncated_signal"),
    "header_only": (lambda: _contec()[:HEADER], "truncated_signal"),
    "records_cut": (lambda: _contec()[: len(_contec()) // 2], "truncated_signal"),
    "one_byte_short": (lambda: _contec()[:-1], "truncated_signal"),
    "bytes_beyond_records": (lambda: _contec() + bytes(24), "length_mismatch"),
    "more_records_declared": (lambda: _patched(_contec(), 236, "40000", 8), "truncated_signal"),
    "fewer_records_declared": (lambda: _patched(_contec(), 236, "30000", 8), "length_mismatch"),
    "records_unknown": (lambda: _patched(_contec(), 236, "-1", 8), "no_signal"),
    "too_many_samples": (lambda: _patched(_contec(), 236, str(2**24 + 1), 8), "too_large"),
    "header_size_wrong": (lambda: _patched(_contec(), 184, "3072", 8), "corrupt_section"),
    "no_duration": (lambda: _patched(_contec(), 244, "0", 8), "corrupt_section"),
    "no_signals": (lambda: _patched(_contec(), 252, "0", 4), "no_signal"),
    "discontinuous": (lambda: _patched(_contec(), 192, "EDF+D", 44), "unsupported_coding"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_files_are_refused_with_a_reason(tmp_path: Path, case: str) -> None:
    make, reason = BROKEN[case]
    data = _write(tmp_path, make(), f"{case}.edf")
    start = time.perf_counter()
    with pytest.raises(ReaderError) as refused:
        edf.read(data)
    assert time.perf_counter() - start < 2.0
    assert refused.value.reason == reason
