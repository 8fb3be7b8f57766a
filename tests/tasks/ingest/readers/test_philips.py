"""Philips SierraECG/PhilipsECG reader: the five sample exports (1.03 UTF-8 and 1.04 UTF-16, XLI)
decode like ecgdatakit's independent Sierra parser and like Philips' own aECG conversion, the
calibration pulse is cut, the stated metadata is read, and broken or hostile files are refused
with a reason, quickly."""

from __future__ import annotations

import base64
import re
import time
import warnings
from collections.abc import Callable
from functools import cache
from pathlib import Path

import numpy as np
import pytest
from ecgdatakit.parsing.parsers.sierra_xml import SierraXMLParser

from tasks.ingest.readers import FORMATS, philips
from tasks.ingest.readers import read as read_format
from tasks.ingest.readers import sniff as sniff_format
from tasks.ingest.readers.base import Decoded, ReaderError
from tasks.ingest.readers.xml import local_name, parse_xml
from tests.conftest import SHARED_DATA

HOSPITAL = SHARED_DATA / "hospital"
SAMPLES = sorted((HOSPITAL / "philips_xml").glob("*"))
V103 = HOSPITAL / "philips_xml" / "sierra_1_03_129DYPRG.XML"
V104 = HOSPITAL / "philips_xml" / "sierra_1_04_ad4d3d80-d165_orig.xml"
CONVERTED = HOSPITAL / "hl7_aecg" / "philips_converted_ad4d3d80-d165_aecg.xml"
DECLARED = 5500  # durationperchannel 11000 ms at 500 Hz in every sample
WAVES = re.compile(r"(<parsedwaveforms[^>]*>)([^<]*)(</parsedwaveforms>)")


@cache
def _decoded(path: Path) -> Decoded:
    return philips.read(path.read_bytes())


@cache
def _reference(path: Path) -> dict[str, np.ndarray]:
    """ecgdatakit's decode in µV, the full declared 5500 samples (calibration pulse included)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # it warns about the representative beats it skips
        leads = SierraXMLParser().parse(path).leads
    return {lead.label: lead.samples * lead.resolution for lead in leads}


def _agreement(ours: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    """Pearson correlation and ratio of standard deviations of two equally long leads."""
    return float(np.corrcoef(ours, ref)[0, 1]), float(np.std(ours) / np.std(ref))


def test_samples_are_there() -> None:
    assert len(SAMPLES) == 5 and V103 in SAMPLES and V104 in SAMPLES


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_sniffs_philips_and_nothing_else(path: Path) -> None:
    assert philips.sniff(path.read_bytes()[:4096]) and FORMATS["philips"] == philips.FORMAT
    assert sniff_format(path.read_bytes()[:4096]) == "philips_xml"
    others = [*(HOSPITAL / "hl7_aecg").glob("*.xml"), *(HOSPITAL / "ge_muse_xml").glob("*.xml")]
    assert others and not any(philips.sniff(p.read_bytes()[:4096]) for p in others)


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_rhythm_matches_ecgdatakit(path: Path) -> None:
    """Lead II, V2 and the rebuilt III and aVF agree with ecgdatakit (correlation, amplitude and
    sample by sample) over the signal, which ends before the calibration pulse."""
    decoded = read_format("philips_xml", path.read_bytes())
    raw, ref = decoded.raw, _reference(path)
    assert raw.fs == 500.0 and raw.signal.dtype == np.float32 and raw.comments == []
    assert raw.sig_name == ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
    assert raw.units == ["uV"] * 12 and decoded.derived_leads == ("III", "aVR", "aVL", "aVF")
    n = raw.signal.shape[0]
    assert 5200 < n < DECLARED
    for name in ("II", "V2", "III", "aVF"):
        ours = raw.signal[:, raw.sig_name.index(name)]
        corr, ratio = _agreement(ours, ref[name][:n])
        assert corr >= 0.98 and abs(ratio - 1) <= 0.10, (name, corr, ratio)
        np.testing.assert_allclose(ours, ref[name][:n], atol=1e-3)
    assert np.ptp(raw.signal[:, 1]) > 300  # a QRS of some hundred µV, not an empty lead


def _converted_leads() -> dict[str, np.ndarray]:
    """Philips' own aECG export of the 1.04 sample: each rhythm lead's digits × scale (µV)."""
    root = parse_xml(CONVERTED.read_bytes())
    leads: dict[str, np.ndarray] = {}
    for component in root.iter():
        code = next((c for c in component if local_name(c.tag) == "code"), None)
        value = next((c for c in component if local_name(c.tag) == "value"), None)
        if code is None or value is None or not code.get("code", "").startswith("MDC_ECG_LEAD_"):
            continue
        scale = next(c for c in value if local_name(c.tag) == "scale")
        digits = next(c for c in value if local_name(c.tag) == "digits")
        name = code.get("code", "").removeprefix("MDC_ECG_LEAD_")
        leads.setdefault(
            name, np.array((digits.text or "").split(), dtype=float) * float(scale.get("value", ""))
        )
    return leads


def test_limb_leads_match_philips_own_aecg_export() -> None:
    """The same ECG exported by Philips as HL7 aECG (its own decoder, full leads): all 12 leads,
    the four rebuilt from XLI residuals included, agree to 20 µV (the README's figure)."""
    raw = _decoded(V104).raw
    converted = _converted_leads()
    n = raw.signal.shape[0]
    for k, name in enumerate(raw.sig_name):
        reference = converted[name.upper() if name.startswith("aV") else name][:n]
        assert np.abs(raw.signal[:, k] - reference).max() <= 20.0, name
        assert np.corrcoef(raw.signal[:, k], reference)[0, 1] >= 0.99, name


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_rebuilt_limb_leads_follow_einthoven(path: Path) -> None:
    """III = II − I and aVR + aVL + aVF = 0 up to the XLI residual (a few 5-µV counts)."""
    raw = _decoded(path).raw
    lead = {name: raw.signal[:, k].astype(np.float64) for k, name in enumerate(raw.sig_name)}
    assert np.abs(lead["III"] - (lead["II"] - lead["I"])).max() <= 15.0
    assert np.abs(lead["aVR"] + lead["aVL"] + lead["aVF"]).max() <= 15.0


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_calibration_pulse_is_cut(path: Path) -> None:
    """The declared 11 s end with a flat gap and a 200-ms, 1-mV pulse on every lead (visible in
    the reference decode); the reader stops where the gap begins."""
    raw, ref = _decoded(path).raw, _reference(path)
    n = raw.signal.shape[0]
    assert np.all(ref["II"][5350:5450] == 1000.0) and np.all(ref["V2"][5350:5450] == 1000.0)
    assert np.all(np.stack([ref[name][n:5350] for name in raw.sig_name]) == 0.0)
    assert np.any(raw.signal[-5:] != 0.0)  # the signal itself runs to the cut
    assert not np.any(np.all(np.abs(raw.signal - 1000.0) <= 5.0, axis=1))


EXPECTED = {
    "sierra_1_03_129DYPRG.XML": (
        "2011-12-01T07:27:34",
        "HeartstartMRx",
        "GE EMS",
        50.0,
        "M",
        "1112010721168bdc",
    ),
    "sierra_1_03_repbeats_example.xml": (
        "2011-12-01T07:27:34",
        "HeartstartMRx",
        "GE EMS",
        50.0,
        "M",
        "1112010721168bdc",
    ),
    "sierra_mrx_B9A3EKRG_129DYNRG.XML": (
        "2011-12-01T07:22:37",
        "HeartstartMRx",
        "GE EMS",
        50.0,
        "M",
        "1112010721168bdc",
    ),
    "sierra_1_04_3191723_ZZDEMOPTONLY_orig.xml": (
        "2010-01-19T15:19:22",
        "Philips Medical Products PageWriter Touch",
        "Y",
        60.0,  # born 1950-01-01, recorded 2010-01-19
        "M",
        "9999",
    ),
    "sierra_1_04_ad4d3d80-d165_orig.xml": (
        "2008-12-23T19:44:46",
        "Philips Medical Products PageWriter Touch",
        "z",
        32.0,  # born 1976-01-01, recorded 2008-12-23
        "F",
        "9999",
    ),
}
STATEMENTS = {
    "sierra_1_03_129DYPRG.XML": (
        "Sinus bradycardia: rate< 50",
        "Nonspecific intraventricular conduction delay: QRSd >115mS, not LBBB/RBBB",
        "Inferior infarct, acute (LCx): ST>0.10mV, II III aVF, STd V1-V3",
        ">>> Acute MI <<<",
    ),
    "sierra_mrx_B9A3EKRG_129DYNRG.XML": (
        "Sinus rhythm: normal P axis, V-rate 50- 99",
        "Extensive anterior infarct, acute (LAD): ST >0.20mV, V1-V6",
        ">>> Acute MI <<<",
    ),
    "sierra_1_04_3191723_ZZDEMOPTONLY_orig.xml": (
        "SINUS RHYTHM: normal P axis, V-rate 60-99",
        "PROBABLE LEFT VENTRICULAR HYPERTROPHY: (RaVL+SV3)xQRSd >280",
        "ANTERIOR ST ELEVATION, PROBABLY DUE TO LVH: ST >0.20 mV in V1-V4 & LVH",
    ),
    "sierra_1_04_ad4d3d80-d165_orig.xml": (
        "SINUS BRADYCARDIA: V-rate<60",
        "NO PREVIOUS TRACING AVAILABLE FOR COMPARISON",
    ),
}


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_stated_metadata_is_read(path: Path) -> None:
    """Date and time, device, institution, age, sex and patient id as the files state them (read
    by eye); the statements in order, never the signature line with the confirming physician."""
    decoded = _decoded(path)
    stated = (decoded.recorded_at, decoded.device, decoded.institution, decoded.age, decoded.sex)
    assert (*stated, decoded.patient_id) == EXPECTED[path.name]
    assert decoded.format == "philips_xml"
    expected = STATEMENTS.get(path.name, STATEMENTS["sierra_1_03_129DYPRG.XML"])
    assert decoded.statements == expected
    assert "Masoudi" not in repr(decoded) and "ZZDEMOPTONLY" not in repr(decoded)


def _text(path: Path) -> str:
    data = path.read_bytes()
    return data.decode("utf-16" if data.startswith((b"\xff\xfe", b"\xfe\xff")) else "utf-8")


def _write(tmp_path: Path, text: str, encoding: str = "utf-8", name: str = "edited.xml") -> bytes:
    """Write an edited export to disk and read it back, as the pipeline would."""
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path.read_bytes()


def _with_waves(text: str, attributes: str, content: str) -> str:
    """The export with its parsedwaveforms element's attributes and content replaced."""
    assert WAVES.search(text)
    return WAVES.sub(lambda m: f"<parsedwaveforms {attributes}>{content}</parsedwaveforms>", text, count=1)


def _counts(path: Path) -> np.ndarray:
    """All 12 leads of the reference decode as 5-µV counts, 5500 samples each."""
    ref = _reference(path)
    return np.stack([np.round(ref[name] / 5.0) for name in _decoded(path).raw.sig_name]).astype("<i2")


def test_uncompressed_base64_and_plain_waveforms(tmp_path: Path) -> None:
    """The same ECG stored uncompressed (full leads, lead after lead) as Base64 16-bit or as
    Plain text decodes to the XLI result; no lead is rebuilt then."""
    counts, expected = _counts(V103), _decoded(V103).raw.signal
    attributes = (
        'compressflag="False" compressmethod="Uncompressed" dataencoding="{}" durationperchannel="11000"'
    )
    encoded = base64.b64encode(counts.tobytes()).decode()
    plain = " ".join(map(str, counts.ravel()))
    for encoding, content in (("Base64", encoded), ("Plain", plain)):
        edited = _with_waves(_text(V103), attributes.format(encoding), content)
        decoded = philips.read(_write(tmp_path, edited))
        np.testing.assert_array_equal(decoded.raw.signal, expected)
        assert decoded.derived_leads == ()


def test_namespace_free_and_utf8_exports(tmp_path: Path) -> None:
    """Without the Philips namespace, and a 1.04 export re-encoded as UTF-8, read the same."""
    bare = re.sub(r'\sxmlns="[^"]*"', "", _text(V103), count=1)
    assert 'www3.medical.philips.com"' not in bare.split(">", 2)[1]
    np.testing.assert_array_equal(philips.read(_write(tmp_path, bare)).raw.signal, _decoded(V103).raw.signal)
    utf8 = _text(V104).replace('encoding="utf-16"', 'encoding="utf-8"', 1)
    assert philips.read(_write(tmp_path, utf8)).statements == STATEMENTS[V104.name]


def _lzw_bomb() -> str:
    """One XLI chunk whose 10-bit LZW codes (packed most significant bit first, as the decoder
    reads them) build ever longer strings, then repeat the longest: ~26 kB that would expand to
    ~20 MB of bytes in Python lists."""
    codes = [0, *range(256, 1023), *[1022] * 20000]
    bits = "".join(f"{code:010b}" for code in codes)
    bits += "0" * (-len(bits) % 8)
    stream = int(bits, 2).to_bytes(len(bits) // 8, "big")
    header = len(stream).to_bytes(4, "little") + bytes(4)
    return base64.b64encode(header + stream).decode()


def _xli_payload(path: Path) -> bytes:
    return base64.b64decode("".join(WAVES.search(_text(path)).group(2).split()))


def _with_payload(path: Path, payload: bytes) -> str:
    text = _text(path)
    match = WAVES.search(text)
    return text[: match.start(2)] + base64.b64encode(payload).decode() + text[match.end(2) :]


def _first_chunks(path: Path, count: int) -> bytes:
    """The first `count` XLI chunks of an export's payload."""
    payload, offset = _xli_payload(path), 0
    for _ in range(count):
        offset += 8 + int.from_bytes(payload[offset : offset + 4], "little")
    return payload[:offset]


BROKEN: dict[str, tuple[Callable[[], str | bytes], str]] = {
    "empty": (lambda: b"", "xml_parse"),
    "garbage": (lambda: bytes(range(256)) * 40, "xml_parse"),
    "truncated_file": (lambda: V104.read_bytes()[: V104.stat().st_size // 2], "xml_parse"),
    "entities": (
        lambda: (
            '<?xml version="1.0"?><!DOCTYPE restingecgdata [<!ENTITY a "aaaa">]><restingecgdata>&a;'
            "</restingecgdata>"
        ),
        "xml_entities",
    ),
    "other_root": (lambda: "<restingecg><x/></restingecg>", "not_ecg"),
    "no_waveform": (lambda: WAVES.sub("", _text(V103)), "no_signal"),
    "not_base64": (
        lambda: _with_waves(
            _text(V103), 'compressmethod="XLI" dataencoding="Base64" durationperchannel="11000"', "!!!!"
        ),
        "corrupt_section",
    ),
    "eleven_chunks": (lambda: _with_payload(V103, _first_chunks(V103, 11)), "truncated_signal"),
    "cut_chunk": (lambda: _with_payload(V103, _first_chunks(V103, 12)[:-100]), "truncated_signal"),
    "garbage_chunks": (lambda: _with_payload(V103, bytes(range(7, 256)) * 40), "truncated_signal"),
    "lzw_bomb": (
        lambda: _with_waves(
            _text(V103), 'compressmethod="XLI" dataencoding="Base64" durationperchannel="11000"', _lzw_bomb()
        ),
        "length_mismatch",
    ),
    "duration_longer_than_data": (
        lambda: _text(V103).replace('durationperchannel="11000"', 'durationperchannel="20000"'),
        "truncated_signal",
    ),
    "duration_too_large": (
        lambda: _text(V103).replace('durationperchannel="11000"', f'durationperchannel="{2**26}"'),
        "too_large",
    ),
    "no_duration": (lambda: _text(V103).replace('durationperchannel="11000"', ""), "corrupt_section"),
    "other_compression": (
        lambda: _text(V103).replace('compressmethod="XLI"', 'compressmethod="ZIP"'),
        "unsupported_coding",
    ),
    "uncompressed_short": (
        lambda: _with_waves(
            _text(V103),
            'compressflag="False" dataencoding="Base64" durationperchannel="11000"',
            base64.b64encode(bytes(2 * 12 * 5000)).decode(),
        ),
        "truncated_signal",
    ),
    "no_ecg_lead": (
        lambda: (
            _text(V104)
            .replace('leadlabels="I II III aVR aVL aVF V1 V2 V3 V4 V5 V6"', 'leadlabels="a b c"')
            .replace('numberofleads="12"', 'numberofleads="3"')
            .encode("utf-16")
        ),
        "not_ecg",
    ),
}


def _reason(data: bytes) -> str:
    """The reason a file is refused, checking the refusal is quick."""
    start = time.perf_counter()
    with pytest.raises(ReaderError) as refused:
        philips.read(data)
    assert time.perf_counter() - start < 2.0
    assert "1112010721168bdc" not in str(refused.value)  # never the patient id
    return refused.value.reason


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_files_are_refused_with_a_reason(tmp_path: Path, case: str) -> None:
    make, reason = BROKEN[case]
    content = make()
    path = tmp_path / f"{case}.xml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    assert _reason(path.read_bytes()) == reason
