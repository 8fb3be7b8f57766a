"""`msaic report quality` end to end: the synthetic store (plus a few unreadable inputs) goes
through the real ingest and quality flows, then the report flow; the HTML page is checked for
its sections, its embedded images and its numbers against the store's own tables."""

from __future__ import annotations

import base64
import io
import re
from contextlib import redirect_stdout
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image
from prefect.artifacts import Artifact

from data_contracts.catalog import CATALOG
from data_contracts.leads import CANONICAL_LEADS
from data_contracts.suites import SUITES
from flows.cli import main
from flows.ingest import ingest
from flows.quality import quality
from tasks import store as st
from tasks.settings import Settings
from tests.helpers import copy_store, write_record

SECTIONS = {
    "summary": "Summary",
    "verdicts-site": "Verdicts by site",
    "verdicts-device": "Verdicts by device",
    "verdicts-recorded": "Verdicts over acquisition month",
    "verdicts-date": "Verdicts over ingest date",
    "flags": "Flag rates by site and lead",
    "noise": "Noise indices by site",
    "worst": "Worst records",
    "quarantine": "Quarantine",
    "validation": "Data contract validation (Great Expectations)",
}


class _Tables(HTMLParser):
    """Every <table id=...> of a page as a DataFrame of cell texts (first row = header)."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._id: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self._id = dict(attrs)["id"]
            self.tables[self._id] = []
        elif tag == "tr" and self._id:
            self.tables[self._id].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._id and self._cell is not None:
            self.tables[self._id][-1].append("".join(self._cell))
            self._cell = None
        elif tag == "table":
            self._id = None

    def frame(self, table_id: str) -> pd.DataFrame:
        header, *rows = self.tables[table_id]
        return pd.DataFrame(rows, columns=header)


@pytest.fixture(scope="module")
def checked_store(synth_store: Path, tmp_path_factory: pytest.TempPathFactory, prefect_harness: None) -> Path:
    """The synthetic store, plus a site with one good and two unreadable records, after `msaic qc`."""
    work = tmp_path_factory.mktemp("report")
    store = copy_store(synth_store, work / "store")
    site = work / "extra" / "site_q"
    write_record(site, "good")
    truncated = write_record(site, "truncated", seed=1).with_suffix(".dat")
    truncated.write_bytes(truncated.read_bytes()[:1000])
    write_record(site, "no_signal", seed=2).with_suffix(".dat").unlink()
    ingest(work / "extra", store, settings=Settings(workers=1))
    quality(store, settings=Settings(workers=2))
    return store


@pytest.fixture(scope="module")
def report(checked_store: Path) -> tuple[Path, str]:
    """`msaic report quality --store STORE`, run in-process: the flow reports to the test harness."""
    printed = io.StringIO()
    with redirect_stdout(printed):
        assert main(["report", "quality", "--store", str(checked_store)]) == 0
    (path,) = (checked_store / "reports").glob("quality-*.html")
    out = printed.getvalue()
    assert "quality report written to" in out and path.name in out.replace("\n", "")
    assert re.search(r"\d+ records: \d+ pass, \d+ limited, \d+ reject; \d+ inputs quarantined", out)
    return path, path.read_text(encoding="utf-8")


def test_report_files_are_self_contained_with_every_section(
    checked_store: Path, report: tuple[Path, str]
) -> None:
    path, html = report
    assert path.parent == checked_store / "reports"
    assert re.fullmatch(r"quality-\d{8}T\d{6}Z\.html", path.name)
    assert (path.parent / "quality.html").read_text(encoding="utf-8") == html
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html)
    assert "<script" not in html and "<link" not in html
    for key, title in SECTIONS.items():
        assert f'<section id="{key}"><h2>{title}</h2>' in html
    images = re.findall(r'<img src="data:image/png;base64,([^"]+)"', html)
    worst = _Tables()
    worst.feed(html)
    n_strips = len(worst.frame("worst-table"))
    assert len(images) == 6 + n_strips  # verdicts by site, device, month, day; heat map; noise; strips
    for data in images:
        with Image.open(io.BytesIO(base64.b64decode(data))) as im:
            assert im.format == "PNG" and im.size[0] > 500
            im.load()
    patient_keys = st.read_table(checked_store, "records", ["patient_key"])["patient_key"].to_pylist()
    assert not any(key in html for key in patient_keys)


def test_report_numbers_agree_with_the_store(checked_store: Path, report: tuple[Path, str]) -> None:
    _, html = report
    tables = _Tables()
    tables.feed(html)
    q = st.read_table(checked_store, "quality").to_pandas()
    expected = q.groupby(["site", "verdict"]).size().unstack(fill_value=0)
    by_site = tables.frame("verdicts-site-table").set_index("site")
    assert set(by_site.index) == set(expected.index) and "site_q" in by_site.index
    for site in expected.index:
        for verdict in expected.columns:
            assert int(by_site.loc[site, verdict]) == expected.loc[site, verdict], (site, verdict)
    assert (q["verdict"] != "pass").any()

    per_lead = tables.frame("flags-per-lead").set_index("lead")
    for lead in CANONICAL_LEADS:
        rate = 100 * (q[f"flags_{lead}"] != "").mean()
        assert per_lead.loc[lead, "any"] == f"{rate:.1f}"
        powerline = 100 * q[f"flags_{lead}"].str.split(",").map(lambda f: "powerline" in f).mean()
        assert per_lead.loc[lead, "powerline"] == f"{powerline:.1f}"

    # the synthetic archive states each record's acquisition time, the extra site's headers do not
    records = st.read_table(checked_store, "records", columns=["record_id", "recorded_at"]).to_pandas()
    months = records["recorded_at"].str.slice(0, 7).dropna()
    by_month = tables.frame("verdicts-recorded-table").set_index("recorded_month")
    assert by_month["records"].astype(int).to_dict() == months.value_counts().to_dict()
    undated = int(records["recorded_at"].isna().sum())
    assert undated > 0 and f"{undated} of {len(records)} records state no acquisition date" in html

    worst = tables.frame("worst-table")
    verdicts = q.set_index("record_id")["verdict"]
    assert len(worst) == min(Settings().report_worst_records, (verdicts != "pass").sum())
    assert (worst["record_id"].map(verdicts) != "pass").all()
    assert worst.loc[0, "verdict"] == ("reject" if (verdicts == "reject").any() else "limited")

    quarantine = st.read_table(checked_store, "quarantine").to_pandas()
    listed = tables.frame("quarantine-table")
    assert len(quarantine) >= 2
    assert sorted(zip(listed["source_path"], listed["reason"], strict=True)) == sorted(
        zip(quarantine["source_path"], quarantine["reason"], strict=True)
    )
    assert {"site_q/truncated.hea", "site_q/no_signal.hea"} <= set(listed["source_path"])

    validation = tables.frame("validation-table").set_index("table")
    assert set(validation.index) == set(SUITES)
    assert validation.loc["records", "success"] == "yes"
    for table in SUITES:  # the real pipeline's tables meet their contracts; later stages' are not there
        stored = st.dataset(checked_store, table) if table in CATALOG else None  # feature_leads: a view
        row = validation.loc[table]
        if stored is None:
            assert row["success"] == "no rows stored", table
            continue
        assert row["success"] == "yes" and int(row["evaluated"]) > 5 and row["failed"] == "0", table
        assert int(row["rows"]) == stored.count_rows()


def test_markdown_artifact_carries_the_headline_tables(report: tuple[Path, str]) -> None:
    path, _ = report
    artifact = Artifact.get("quality-report")
    assert artifact is not None and artifact.type == "markdown"
    for heading in ("## Verdicts by site", "## Flag rates per lead", "## Quarantine", "## Data contract"):
        assert heading in artifact.data
    assert str(path) in artifact.data


def test_cli_refuses_a_store_without_quality(
    synth_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], prefect_harness: None
) -> None:
    unchecked = copy_store(synth_store, tmp_path / "store")
    assert main(["report", "quality", "--store", str(unchecked)]) == 1
    assert "run `msaic qc --store" in capsys.readouterr().err
    assert not (unchecked / "reports").exists()
    with pytest.raises(SystemExit) as exc:  # a store that does not exist is a usage error
        main(["report", "quality", "--store", str(tmp_path / "nothing")])
    assert exc.value.code == 2
    assert "does not exist" in capsys.readouterr().err
