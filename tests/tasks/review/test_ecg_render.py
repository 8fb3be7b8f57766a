"""The ECG SVG of a real LUDB window: paper scale (25 mm/s, 10 mm/mV in the SVG's mm units, 1 mm
and 5 mm grid, 1 mV calibration pulse), the 3×4 layout and rhythm strip, highlighted leads and
quality flags, median-beat marks from feature values, size and speed; and the record read back from
its archive as scoring read it, refused when the file changed."""

from __future__ import annotations

import re
import shutil
import time
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from data_contracts.leads import CANONICAL_LEADS
from tasks.features.measure import measure_record
from tasks.ingest.archive import ArchiveLimits
from tasks.ingest.errors import RecordError
from tasks.ingest.records import content_sha256
from tasks.review.ecg_render import (
    CallInfo,
    SourceChanged,
    median_marks,
    record_unit,
    record_window,
    render_ecg,
    render_record,
)
from tasks.settings import Settings
from tests.helpers import copy_ludb

NS = {"s": "http://www.w3.org/2000/svg"}
FS = 500
INFO = CallInfo(
    record_id="r1",
    source_path="ward <b>&</b>/1.hea",
    site="ludb",
    window=0,
    model_id="m1",
    verdict="limited",
    probability=0.93,
    risk=0.81,
    risk_band="high",
    recorded_at="2019-03-01T10:22:05",
    territory="inferior",
    top_leads=("III", "aVF"),
    lead_flags={"V1": "flat, emg"},
    explanation="consistent with an inferior territory (leads III, aVF)",
)


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ludb-archive")
    (root / "data").mkdir()
    copy_ludb(root / "data", [1])
    return root


@pytest.fixture(scope="module")
def signal(archive: Path) -> np.ndarray:
    sha = content_sha256(record_unit(archive, "data/1.hea", ArchiveLimits()).files)
    return record_window(archive, "data/1.hea", 0, sha, Settings())


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def points_mm(path: ET.Element) -> list[np.ndarray]:
    """A trace's subpaths as (n × 2) points in the SVG's mm, its transform applied."""
    m = re.fullmatch(r"translate\(([-\d.]+) ([-\d.]+)\) scale\(([-\d.]+)\)", path.get("transform", ""))
    assert m, path.get("transform")
    tx, ty, scale = map(float, m.groups())
    subpaths = []
    for chunk in re.findall(r"M[^M]+", path.get("d", "")):
        head, _, rest = chunk[1:].partition("l")
        start = np.array([float(v) for v in re.findall(r"-?\d+", head)])
        moves = np.array([float(v) for v in re.findall(r"-?\d+", rest)]).reshape(-1, 2)
        pts = np.vstack([start, start + np.cumsum(moves, axis=0)]) if len(moves) else start[None]
        subpaths.append(pts * scale + [tx, ty])
    return subpaths


def lead_group(root: ET.Element, lead: str, rhythm: bool = False) -> ET.Element:
    kind = "lead rhythm" if rhythm else "lead"
    return root.find(f".//s:g[@class='{kind}'][@data-lead='{lead}']", NS)


def test_paper_grid_and_calibration_pulse_are_in_mm(signal: np.ndarray) -> None:
    root = parse(render_ecg(signal, INFO))
    width, height = (float(v) for v in root.get("viewBox").split()[2:])
    assert root.get("width") == f"{width:g}mm" and root.get("height") == f"{height:g}mm"  # 1 unit = 1 mm
    pattern = root.find(".//s:pattern", NS)
    assert (pattern.get("width"), pattern.get("height")) == ("5", "5")  # 5 mm major squares
    minor, major = pattern.findall("s:path", NS)
    assert sorted({float(x) for x in re.findall(r"M([\d.]+) 0V", minor.get("d"))}) == [1, 2, 3, 4]  # 1 mm
    assert float(major.get("stroke-width")) > float(minor.get("stroke-width"))
    cals = root.findall(".//s:path[@class='m cal']", NS)
    assert len(cals) == 4  # one per row: 3 rows of leads and the rhythm strip
    for cal in cals:
        up, across = re.search(r"v-([\d.]+)h([\d.]+)v", cal.get("d")).groups()
        assert float(up) == 10.0  # 1 mV at 10 mm/mV
        assert float(across) == 5.0  # 0.2 s at 25 mm/s


def test_traces_are_drawn_at_25_mm_per_s_and_10_mm_per_mv(signal: np.ndarray) -> None:
    root = parse(render_ecg(signal, INFO))
    ii = signal[CANONICAL_LEADS.index("II")]
    [strip] = points_mm(lead_group(root, "II", rhythm=True).find("s:path", NS))
    assert strip[-1, 0] - strip[0, 0] == pytest.approx(10 * 25, abs=0.2)  # 10 s → 250 mm
    peak_x = strip[np.argmin(strip[:, 1]), 0] - strip[0, 0]  # SVG y grows downwards
    assert peak_x / 25 == pytest.approx(np.nanargmax(ii) / FS, abs=0.011)
    height_mm = strip[:, 1].max() - strip[:, 1].min()
    assert height_mm == pytest.approx(10 * (np.nanmax(ii) - np.nanmin(ii)), abs=0.2)
    # 3×4 layout: V2 is column 3 of row 2, its 2.5 s are seconds 5 to 7.5 of the window
    [v2] = points_mm(lead_group(root, "V2").find("s:path", NS))
    seg = signal[CANONICAL_LEADS.index("V2"), 2500:3750]
    assert v2[0, 0] == pytest.approx(10 + 2 * 62.5) and v2[-1, 0] - v2[0, 0] == pytest.approx(62.5, abs=0.2)
    assert v2[:, 1].max() - v2[:, 1].min() == pytest.approx(10 * np.ptp(seg), abs=0.2)
    rows = {lead: float(lead_group(root, lead).find("s:path", NS).get("transform").split()[1][:-1])
            for lead in ("I", "II", "III", "V4", "V6")}  # fmt: skip
    assert rows["I"] == rows["V4"] < rows["II"] < rows["III"] == rows["V6"]


def test_leads_behind_the_call_and_quality_flags_are_marked(signal: np.ndarray) -> None:
    root = parse(render_ecg(signal, INFO))
    marks = {g.get("data-lead"): g.get("data-highlight") for g in root.findall(".//s:g[@class='lead']", NS)}
    assert marks["III"] == marks["aVF"] == "top"  # the leads the explanation names
    assert marks["II"] == "ter"  # the rest of the inferior territory
    assert {lead for lead, m in marks.items() if m} == {"II", "III", "aVF"}
    assert lead_group(root, "III").find("s:rect[@class='top']", NS) is not None
    assert lead_group(root, "II", rhythm=True).get("data-highlight") == ""
    v1 = lead_group(root, "V1")
    assert v1.get("data-flags") == "flat, emg" and v1.find("s:rect[@class='bad']", NS) is not None
    assert "flat, emg" in [t.text for t in v1.findall("s:text", NS)]
    header = " ".join(t.text for t in root.findall("s:text[@class='h']", NS))
    assert (
        "ward <b>&</b>/1.hea" in header and "risk 0.810 (high)" in header and "2019-03-01T10:22:05" in header
    )


def test_missing_samples_break_the_trace_and_a_missing_lead_says_so(signal: np.ndarray) -> None:
    gappy = signal.copy()
    gappy[CANONICAL_LEADS.index("V3")] = np.nan
    gappy[CANONICAL_LEADS.index("II"), 1000:1500] = np.nan
    root = parse(render_ecg(gappy, INFO))
    v3 = lead_group(root, "V3")
    assert v3.find("s:path", NS) is None and "no signal" in [t.text for t in v3.findall("s:text", NS)]
    parts = points_mm(lead_group(root, "II", rhythm=True).find("s:path", NS))
    assert len(parts) == 2 and parts[1][0, 0] - parts[0][-1, 0] == pytest.approx(25, abs=0.2)  # 1 s gap


def test_small_and_fast(signal: np.ndarray) -> None:
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        svg = render_ecg(signal, INFO)
        times.append(time.perf_counter() - t0)
    assert len(svg.encode()) < 40_000
    assert sorted(times)[2] < 0.05  # median of five renders under 50 ms
    assert len(parse(svg).findall(".//s:path[@class='t']", NS)) == 13  # one path per lead, and the strip


def test_median_beats_mark_the_feature_values(signal: np.ndarray) -> None:
    features = measure_record(signal, np.ones(12, bool))  # what the feature store holds for it
    features |= {"crit_ste_V2": True, "crit_q_II": False}
    flags = {"V6": "flat"}  # unusable for features: no median beat
    root = parse(render_ecg(signal, INFO, median_marks(signal, flags, features)))
    beats = {g.get("data-lead"): g for g in root.findall(".//s:g[@class='beat']", NS)}
    assert set(beats) == set(CANONICAL_LEADS)
    assert beats["V6"].find("s:path[@class='t']", NS) is None
    assert "not measured (unusable lead)" in [t.text for t in beats["V6"].findall("s:text", NS)]
    measured = [lead for lead in CANONICAL_LEADS if lead != "V6"]
    for lead in measured:
        trace = beats[lead].find("s:path[@class='t']", NS)
        baseline = float(trace.get("transform").split()[1][:-1])
        [tick] = [p for p in beats[lead].findall("s:path", NS) if p.get("class").endswith("stj")]
        tick_y = float(re.match(r"M[-\d.]+ ([-\d.]+)h", tick.get("d")).group(1))
        assert baseline - tick_y == pytest.approx(20 * features[f"st_j_{lead}"], abs=0.01)  # 20 mm/mV
    assert beats["V2"].find("s:path[@class='st hit stj']", NS) is not None  # cut-point met: red
    with_q = [lead for lead in measured if features[f"q_amp_{lead}"] < 0]
    assert with_q
    for lead in with_q:
        q = beats[lead].find("s:rect[@class='q qwave']", NS)
        assert float(q.get("width")) == pytest.approx(features[f"q_dur_{lead}"] / 1000 * 50, abs=0.01)
        assert float(q.get("height")) == pytest.approx(-20 * features[f"q_amp_{lead}"], abs=0.01)
    j_lines = beats["I"].find("s:path[@class='j']", NS).get("d")
    on, j = (float(x) for x in re.findall(r"M([\d.]+) ", j_lines))
    assert (j - on) / 50 * 1000 == pytest.approx(features["qrs_ms"], abs=2.1)  # J − onset is the QRS


def test_the_record_is_read_as_scored_and_a_changed_file_is_refused(
    archive: Path, signal: np.ndarray, tmp_path: Path
) -> None:
    settings = Settings()
    sha = content_sha256(record_unit(archive, "data/1.hea", ArchiveLimits()).files)
    zipped = tmp_path / "archive.zip"
    with zipfile.ZipFile(zipped, "w") as zf:
        for ext in ("hea", "dat"):
            zf.write(archive / "data" / f"1.{ext}", f"data/1.{ext}")
    np.testing.assert_array_equal(record_window(zipped, "data/1.hea", 0, sha, settings), signal)
    changed = tmp_path / "changed"
    shutil.copytree(archive, changed)
    data = bytearray((changed / "data" / "1.dat").read_bytes())
    data[100] ^= 0xFF
    (changed / "data" / "1.dat").write_bytes(bytes(data))
    with pytest.raises(SourceChanged, match="changed since it was scored"):
        record_window(changed, "data/1.hea", 0, sha, settings)
    with pytest.raises(RecordError, match="no file inside the archive"):
        record_unit(changed, "../ludb-archive0/data/1.hea", ArchiveLimits())
    with pytest.raises(RecordError) as too_many:
        record_window(archive, "data/1.hea", 5, sha, settings)
    assert too_many.value.reason == "no_window"


def test_a_record_without_features_says_so(archive: Path, signal: np.ndarray) -> None:
    sha = content_sha256(record_unit(archive, "data/1.hea", ArchiveLimits()).files)
    info = replace(INFO, source_path="data/1.hea")
    plain = parse(render_record(archive, info, sha, Settings()))
    assert plain.find(".//s:g[@class='median']", NS) is None
    missing = parse(render_record(archive, info, sha, Settings(), {}))
    header = " ".join(t.text for t in missing.findall("s:text[@class='h']", NS))
    assert (
        missing.find(".//s:g[@class='median']", NS) is None and "holds no features of this record" in header
    )
    features = measure_record(signal, np.ones(12, bool))
    with_beats = parse(render_record(archive, info, sha, Settings(), features))
    assert len(with_beats.findall(".//s:g[@class='median']/s:g[@class='beat']", NS)) == 12
