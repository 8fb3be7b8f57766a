"""`msaic train --split cv` on real data: LUDB records (a subset, to stay lean) ingested, checked
and measured through their own flows, then patient-grouped cross-validation: one registered model
per fold, thresholds from each fold's validation part only, and the pooled out-of-fold figure; the
folds trained at once in a process pool give the same models as one after another."""

from __future__ import annotations

import contextlib
import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import safetensors.torch
import torch

from data_contracts import load_json
from flows.cli import main
from flows.cluster import DaskCluster
from flows.features import features
from flows.ingest import ingest
from flows.quality import quality
from flows.train import TrainedModel, fold_runner, train
from msaic_model.model.config import load_config, with_overrides
from msaic_model.training.eligible import eligible_records
from msaic_model.training.evaluate import load_evaluation_config, validation_threshold
from msaic_model.training.registry import load_model
from msaic_model.training.run import calibrated
from tasks.settings import Settings
from tasks.store.model_files import THRESHOLDS, WEIGHTS
from tests.conftest import LUDB
from tests.helpers import TINIEST_MSAIC

LUDB_RECORDS = range(1, 31)  # the first 30 of the 200 records, 8 of them MI-positive
FOLDS = 3
TINY = {**TINIEST_MSAIC, "train.epochs": 1}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, prefect_harness: None) -> Path:
    root = tmp_path_factory.mktemp("train-cv")
    archive = root / "ludb" / "data"
    archive.mkdir(parents=True)
    for n in LUDB_RECORDS:
        for suffix in (".hea", ".dat"):
            shutil.copy(LUDB / f"{n}{suffix}", archive)
    settings = Settings(workers=1)
    ingest(archive.parent, root / "store", site="ludb", settings=settings)
    quality(root / "store", settings)
    features(root / "store", settings)
    return root / "store"


@pytest.fixture(scope="module")
def configs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("cv-config")
    raw = copy.deepcopy(load_json("evaluation.json"))
    raw["splits"]["cv_folds"] = FOLDS
    raw["metrics"]["bootstrap_resamples"] = 200
    raw["importance"] = {"repeats": 1, "max_records": 12}
    (root / "evaluation.json").write_text(json.dumps(raw))
    (root / "tiny.json").write_text(with_overrides(load_config("msaic"), TINY).model_dump_json())
    return root / "evaluation.json", root / "tiny.json"


@pytest.fixture(scope="module")
def trained(store: Path, configs: tuple[Path, Path]) -> list[TrainedModel]:
    """The folds trained one after another (the flow's own task runner)."""
    evaluation_path, tiny = configs
    return train(store, model="msaic", split="cv", config=tiny, seed=2, evaluation_config=evaluation_path)


def test_cv_registers_a_model_per_fold_with_validation_thresholds(
    store: Path, configs: tuple[Path, Path], trained: list[TrainedModel]
) -> None:
    evaluation_path, _ = configs
    assert [t.fold for t in trained] == list(range(FOLDS))
    evaluation = load_evaluation_config(evaluation_path)
    tested = []
    for t in trained:
        assert t.path.parent == store / "models" and t.model_id.startswith(f"msaic-cv-fold{t.fold}-")
        model = load_model(t.path)  # safetensors, no code executed
        assert model.net is not None and model.config["split"]["fold"] == t.fold
        split = pd.read_parquet(t.path / "split.parquet")
        assert (split.groupby("patient_key")["part"].nunique() == 1).all()
        scored = split[split["part"] != "train"]
        threshold = json.loads((t.path / "thresholds.json").read_text())
        assert threshold["chosen_on"] == "val" and model.threshold == threshold["threshold"]
        # the threshold is a function of the validation rows alone: scrambling the test fold's
        # probabilities (and labels) leaves it unchanged
        test = scored["part"] == "test"
        rng = np.random.default_rng(t.fold)
        scrambled = scored.assign(
            probability=np.where(test, rng.random(len(scored)), scored["probability"]),
            logit=np.where(test, rng.normal(0, 5, len(scored)), scored["logit"]),
            mi_label=np.where(test, rng.integers(0, 2, len(scored)), scored["mi_label"]),
        )
        assert validation_threshold(scrambled, evaluation)["threshold"] == threshold["threshold"]
        calibration = threshold.pop("calibration")  # so is the risk calibration
        refit, _ = calibrated(scrambled, threshold["threshold"])
        assert refit["parameters"] == pytest.approx(calibration["parameters"], rel=1e-6)
        assert validation_threshold(scored, evaluation) == threshold
        tested.append(scored.loc[test, ["record_id", "patient_key"]])
    tested_ids = pd.concat(tested)["record_id"]
    eligible = eligible_records(store).records
    assert sorted(tested_ids) == sorted(eligible.loc[eligible["mi_label"].notna(), "record_id"])

    cv = trained[0].cross_validation
    assert all(t.cross_validation == cv for t in trained)
    summary = json.loads(Path(cv["path"]).read_text())
    assert Path(cv["path"]).parent == store / "models"
    assert summary["fold_model_ids"] == [t.model_id for t in trained]
    pooled = summary["pooled"]
    assert pooled["folds"] == FOLDS and pooled["patients"]["n"] == len(tested_ids)  # one window each
    assert pooled["windows"]["positives"] == int(eligible["mi_label"].sum())
    auroc = pooled["windows"]["auroc"]
    assert auroc["low"] <= auroc["value"] <= auroc["high"]
    assert [f["n"] for f in pooled["per_fold"]] == [len(t) for t in tested]


def test_cv_through_the_cli_prints_the_pooled_figure(
    store: Path, configs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["train", "--store", str(store), "--model", "logreg", "--split", "cv"]
    assert main([*args, "--evaluation-config", str(configs[0])]) == 0
    out = capsys.readouterr().out.replace("\n", " ")
    assert f"{FOLDS}-fold cross-validation, pooled out-of-fold by patients" in out
    (summary,) = (store / "models").glob("logreg-cv-*.json")
    assert str(summary) in out.replace(" ", "") or summary.name in out.replace(" ", "")
    assert len(list((store / "models").glob("logreg-cv-fold*"))) == FOLDS


@pytest.mark.parametrize("where", ["processes", "dask"])
def test_folds_at_once_give_the_sequential_models(
    store: Path, configs: tuple[Path, Path], trained: list[TrainedModel], where: str
) -> None:
    """Every fold a task at the same time: in a pool of two processes (`--fold-workers 2`), or on a
    real Dask cluster of two one-thread worker processes (`--dask-address`)."""
    evaluation_path, tiny = configs
    with contextlib.ExitStack() as stack:
        if where == "dask":
            from distributed import LocalCluster

            cluster = LocalCluster(
                n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
            )
            runner = DaskCluster(stack.enter_context(cluster).scheduler_address).task_runner()
        else:
            runner = fold_runner(2)
        parallel = train.with_options(task_runner=runner)(
            store, model="msaic", split="cv", config=tiny, seed=2, evaluation_config=evaluation_path
        )
        if where == "dask":  # the folds ran as tasks of the cluster
            assert "train_fold" in cluster.scheduler.task_prefixes
    assert [t.fold for t in parallel] == [t.fold for t in trained]
    for one, other in zip(trained, parallel, strict=True):
        assert one.model_id != other.model_id
        weights = [safetensors.torch.load_file(t.path / WEIGHTS) for t in (one, other)]
        assert weights[0].keys() == weights[1].keys()
        assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
        assert one.metrics["evaluation"] == other.metrics["evaluation"]
        thresholds = [json.loads((t.path / THRESHOLDS).read_text()) for t in (one, other)]
        assert thresholds[0] == thresholds[1]
        pd.testing.assert_frame_equal(
            pd.read_parquet(one.path / "split.parquet"), pd.read_parquet(other.path / "split.parquet")
        )
    pooled = [
        json.loads(Path(t[0].cross_validation["path"]).read_text())["pooled"] for t in (trained, parallel)
    ]
    assert pooled[0] == pooled[1]
