"""`msaic train` on a store with reviewers' adjudications: the latest decision per record replaces
the source label ("mi" → 1, "not_mi" → 0), "unreadable" takes the record out, and the counts are
kept in the model's snapshot, card and the command's summary. A tiny model (the logistic feature
baseline) is trained on a copy of the session's synthetic store, written as the review page
writes decisions (`tasks.review.adjudication`)."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from data_contracts import load_json
from msaic_model.training.eligible import adjudicated, eligible_records
from tasks.review.adjudication import Decision, adjudication_row, append_decisions, reviewer_key
from tests.flows.scoring_setup import trained_store
from tests.helpers import copy_store

T0 = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)


def _row(store_records: pd.DataFrame, record_id: str, decision: str, at: datetime = T0) -> dict:
    """A decision row as the review page appends it (pseudonymous reviewer, the model reviewed)."""
    site = store_records["site"].get(record_id, "elsewhere")
    what = Decision(record_id, f"{site}/record.hea", site, decision, None, "reviewed-model")
    return adjudication_row(what, reviewer_key(b"k" * 32, "dr. test"), at)


def test_training_uses_the_latest_adjudication_over_the_source_label(
    tmp_path_factory: pytest.TempPathFactory,
    measured_store: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from flows.cli import main

    trained, _ = trained_store(tmp_path_factory, measured_store)
    store = copy_store(trained, tmp_path / "store")
    source = eligible_records(store).records.set_index("record_id")
    positives = source[source["mi_label"] == 1].head(2)
    negatives = source[source["mi_label"] == 0].head(4)
    flipped = {**dict.fromkeys(positives.index, 0), **dict.fromkeys(negatives.index[:2], 1)}
    unreadable, confirmed = negatives.index[2], negatives.index[3]
    rows = [
        *(_row(source, i, "not_mi") for i in positives.index),
        *(_row(source, i, "mi") for i in negatives.index[:2]),
        _row(source, unreadable, "unreadable"),
        # read as unreadable first, then judged not MI after all: the later decision counts
        _row(source, confirmed, "unreadable"),
        _row(source, confirmed, "not_mi", T0 + timedelta(days=1)),
        _row(source, "not-in-this-store", "mi"),
    ]
    append_decisions(store, rows)

    evaluation = copy.deepcopy(load_json("evaluation.json"))
    evaluation["metrics"]["bootstrap_resamples"] = 200
    (tmp_path / "evaluation.json").write_text(json.dumps(evaluation))
    args = [
        "--model",
        "logreg",
        "--split",
        "patient",
        "--evaluation-config",
        str(tmp_path / "evaluation.json"),
    ]
    assert main(["train", "--store", str(store), *args]) == 0
    (model,) = (store / "models").glob("logreg-patient-*")

    split = pd.read_parquet(model / "split.parquet").set_index("record_id")
    assert unreadable not in split.index  # left out of training and evaluation
    assert split.loc[list(flipped), "mi_label"].to_dict() == flipped
    assert split.loc[confirmed, "mi_label"] == 0
    untouched = split.index.difference([*flipped, confirmed])
    assert (split.loc[untouched, "mi_label"] == source.loc[untouched, "mi_label"]).all()
    assert (
        len(split) == len(source) - 1
        and split.loc[list(flipped), "part"].isin(["train", "val", "test"]).all()
    )

    expected = {
        "decisions": 7,
        "used": 6,
        "changed_label": 4,
        "labelled": 0,
        "confirmed": 1,
        "removed": 1,
        "not_eligible": 1,
    }
    snapshot = json.loads((model / "snapshot.json").read_text())
    assert snapshot["adjudications"] == expected
    assert "adjudications" in snapshot["store_files"]  # the decisions' part files identify the data
    assert json.loads((model / "config.json").read_text())["split"]["excluded"]["adjudicated_unreadable"] == 1
    card = (model / "model_card.html").read_text()
    assert "latest adjudication replaced the source&#x27;s label of 6 records: 4 changed a label" in card
    assert "adjudications used: 6 of 7 (changed a label 4" in capsys.readouterr().out.replace("\n", " ")


def test_adjudication_counts_a_record_the_source_left_unlabelled() -> None:
    records = pd.DataFrame({"record_id": ["a", "b", "c"], "mi_label": [None, 1.0, 0.0]})
    decisions = pd.DataFrame({"record_id": ["a", "c"], "decision": ["mi", "unreadable"]})
    labelled, counts = adjudicated(records, decisions)
    assert labelled["mi_label"].tolist() == [1.0, 1.0] and labelled["record_id"].tolist() == ["a", "b"]
    assert counts["labelled"] == 1 and counts["changed_label"] == 0 and counts["removed"] == 1
    with pytest.raises(ValueError, match="one known decision per record"):
        adjudicated(records, pd.DataFrame({"record_id": ["a"], "decision": ["maybe"]}))
