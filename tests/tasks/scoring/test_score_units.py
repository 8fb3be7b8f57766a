"""One shard of real LUDB records scored by `score_units`: should the model fail on one record's
windows, that record alone is quarantined (stage `score`) and the others are scored as they would
be without it. No known input makes the gate or a model raise, so the failure is injected through
the model the shard is given (the `ProbabilityModel` protocol), not by patching a library."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from data_contracts.feature_columns import FEATURE_COLUMNS
from msaic_model.model.feature_baselines import fit_feature_model
from msaic_model.training.registry import LoadedModel, extract_features
from tasks.ingest.records import IngestConfig, Task, content_sha256, record_rows
from tasks.ingest.run import walk_archive
from tasks.quality.gate import load_profile
from tasks.scoring.score import ScoreConfig, load_explainer, score_units
from tasks.settings import Settings
from tests.helpers import copy_ludb


@dataclass
class FailsOn:
    """A real feature-baseline model that raises when it is asked about one given window."""

    model: LoadedModel
    bad: np.ndarray

    def __getattr__(self, name: str) -> Any:  # model_id, threshold, config, calibration
        return getattr(self.model, name)

    def occlusion(self, signals: np.ndarray, *args: Any) -> Any:
        if any(np.array_equal(w, self.bad, equal_nan=True) for w in signals):
            raise ValueError("boom")
        return self.model.occlusion(signals, *args)


@pytest.fixture(scope="module")
def shard(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Any], ScoreConfig]:
    root = tmp_path_factory.mktemp("score-units")
    archive = copy_ludb(root / "archive", range(1, 7))
    settings = Settings(workers=1)
    cfg = ScoreConfig(IngestConfig.for_store(root / "store", settings), root / "model", 1)
    items = [(unit, "ludb") for unit in walk_archive(archive, settings)]
    return items, cfg


def test_a_record_the_model_fails_on_is_quarantined_and_the_shard_goes_on(
    shard: tuple[list[Any], ScoreConfig],
) -> None:
    items, cfg = shard
    windows = {
        unit.source_path: record_rows(Task(unit, "ludb", None), content_sha256(unit.files), cfg.ingest)[1]
        for unit, _ in items
    }
    measured = extract_features(np.concatenate(list(windows.values()))).to_numpy(np.float64)
    rng = np.random.default_rng(0)
    x = np.concatenate([measured + rng.normal(0, 0.1, measured.shape) for _ in range(8)])
    model = LoadedModel(
        "logreg-test",
        0.5,
        {"kind": "logreg", "feature_columns": list(FEATURE_COLUMNS)},
        feature_model=fit_feature_model("logreg", x, np.arange(len(x)) % 2),
    )
    bad_path = items[2][0].source_path
    profile, explainer = load_profile(), load_explainer()

    got = score_units(items, cfg, FailsOn(model, windows[bad_path][0]), profile, explainer)
    (row,) = got.quarantine
    assert (row["source_path"], row["stage"], row["reason"], row["detail"]) == (
        bad_path, "score", "score_error", "ValueError: boom"
    )  # fmt: skip
    assert row["content_sha256"] is not None and got.records == len(items)
    others = [item for item in items if item[0].source_path != bad_path]
    expected = score_units(others, cfg, model, profile, explainer)
    assert not expected.quarantine and len(got.rows) == len(expected.rows) == len(others)
    for a, b in zip(got.rows, expected.rows, strict=True):
        assert (a["record_id"], a["verdict"]) == (b["record_id"], b["verdict"])
        assert a["probability"] == pytest.approx(b["probability"], nan_ok=True)
