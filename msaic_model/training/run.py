"""One training run on one fold of a split, end to end: fit on `train` (early stopping on `val`),
predict `val` and `test`, choose the threshold and fit the risk calibration on `val` only, evaluate
`test` (overall, per site, per device, held-out gap; reliability before and after calibration),
permutation importance on `test`, and register the model with its card.

Networks (`msaic`, `resnet1d`, `inception1d`) train on waveforms streamed from the store
(`msaic_model.training.fit.fit`); the feature baselines (`logreg`, `gbm`) on the feature store. Both end
as a `LoadedModel`, the object `load_model` returns, so what is evaluated here is what scoring runs.
`train_fold` is one fold whole (fit, evaluate, register), the unit the `train` flow runs in parallel;
`fit_share` is what a rank other than 0 of a `torchrun` training does for a fold.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.dataset as ds
from torch import nn

from data_contracts import load_json
from data_contracts.feature_columns import FEATURE_COLUMNS
from data_contracts.leads import CANONICAL_LEADS
from msaic_model.model.blocks import parameter_count
from msaic_model.model.config import ModelConfig, available_configs, load_config, with_overrides
from msaic_model.model.data import prepare_array
from msaic_model.model.feature_baselines import FeatureModel, fit_feature_model
from msaic_model.model.inference import WindowScores, predict_prepared, predict_store
from msaic_model.training.calibration import calibrate, load_calibration_config
from msaic_model.training.eligible import Eligible, feature_matrix
from msaic_model.training.evaluate import (
    EvaluationConfig,
    by_patient,
    evaluate_predictions,
    validation_threshold,
)
from msaic_model.training.fit import fit, store_features
from msaic_model.training.importance import lead_groups, permutation_importance
from msaic_model.training.metrics import compute_metrics
from msaic_model.training.model_card import (
    REAL_BENCHMARK,
    CardData,
    reliability_table,
    render_card,
    synthetic_sites,
)
from msaic_model.training.registry import (
    SPLIT_FILE,
    LoadedModel,
    Registration,
    data_snapshot,
    load_model,
    register,
    sha256_of,
)
from msaic_model.training.splits import ASSIGNMENT_COLUMNS, Split, labelled_records, make_split
from tasks import store as st
from tasks.store.location import Location, location
from tasks.store.model_files import (
    CONFIG,
    FEATURE_MODELS,
    METRICS,
    MODEL_CARD,
    NET,
    SNAPSHOT,
    THRESHOLDS,
    decision_threshold,
)

NETS: tuple[str, ...] = ("msaic", "resnet1d", "inception1d")
MODEL_CHOICES: tuple[str, ...] = (*NETS, *FEATURE_MODELS)


@dataclass(frozen=True)
class RunSpec:
    """What one fold's run needs; `model_config` for networks, `feature_columns` for baselines;
    `adjudications`: how the reviewers' decisions changed the labels (`msaic_model.training.eligible`)."""

    store: Location
    model: str
    split: Split
    fold: int
    excluded: dict[str, int]
    evaluation: EvaluationConfig
    model_config: ModelConfig | None = None
    feature_columns: list[str] | None = None
    adjudications: dict[str, int] = field(default_factory=dict)


def packaged_config(model: str) -> str:
    """The packaged config a network kind trains with when none is given. For MSAIC-Net it is the
    variant that bench/real.py's rule, fixed before its runs, chose on real data (`packaged_default`
    of data_contracts/real_benchmark.json, written by `bench/real.py --write-summary`)."""
    if model != "msaic":
        return model
    chosen = str(load_json(REAL_BENCHMARK)["packaged_default"])
    if chosen not in available_configs():
        raise ValueError(f"{REAL_BENCHMARK} names {chosen!r} as the default, which is not a packaged config")
    return chosen


def network_config(model: str, config_path: Path | None, epochs: int | None, seed: int) -> ModelConfig:
    """The packaged config of a network (or the file or packaged name given), with CLI overrides applied."""
    config = load_config(config_path or packaged_config(model))
    if config.architecture != model and model != config.name:
        raise ValueError(f"config {config.name} builds a {config.architecture}, not a {model}")
    overrides: dict[str, Any] = {"train.seed": seed}
    if epochs is not None:
        overrides["train.epochs"] = epochs
    return with_overrides(config, overrides)


def model_arguments(model: str, config_path: Path | None, epochs: int | None, seed: int) -> dict[str, Any]:
    """The `RunSpec` fields of a model kind: the network config, or the feature columns."""
    if model not in MODEL_CHOICES:
        raise ValueError(f"unknown model {model!r}; choose one of {', '.join(MODEL_CHOICES)}")
    if model in NETS:
        return {"model_config": network_config(model, config_path, epochs, seed)}
    return {"feature_columns": list(FEATURE_COLUMNS)}


@dataclass
class Fitted:
    loaded: LoadedModel
    weights: dict[str, Any]
    predictions: pd.DataFrame  # the fold's val and test rows with their probability and logit
    training: dict[str, Any]


def fit_fold(spec: RunSpec, model_id: str) -> Fitted:
    """Train the model of `spec` on its fold and predict the fold's val and test rows."""
    rows = spec.split.assignment[spec.split.assignment["fold"] == spec.fold]
    train, scored = rows[rows["part"] == "train"], rows[rows["part"] != "train"].copy()
    scored_ids = scored["record_id"].tolist()
    config = {
        "model_id": model_id,
        "name": spec.model,
        "created_at": datetime.now(UTC).isoformat(),
        "split": split_description(spec),
    }
    if spec.model in NETS:
        assert spec.model_config is not None
        result = fit(spec.store, train, rows[rows["part"] == "val"], spec.model_config)
        training = {
            "history": result.history.to_dict(orient="records"),
            "best_epoch": result.best_epoch,
            "seconds_per_epoch": float(result.history["seconds"].mean()),
            "parameters": parameter_count(result.model),
        }
        if spec.model_config.stack is not None:
            training["stacked_tree_nodes"] = stack_trees(result.model, spec, train)
        kind_config = {"kind": NET, "model": spec.model_config.model_dump(mode="json")}
        loaded = LoadedModel(model_id, None, config | kind_config, net=result.model)
        weights = dict(result.model.state_dict())
    else:
        assert spec.feature_columns is not None
        start = time.perf_counter()
        model = fit_on_features(spec.model, spec, train, spec.feature_columns)
        fit_seconds = time.perf_counter() - start
        kind_config = {"kind": spec.model, "feature_columns": spec.feature_columns}
        loaded = LoadedModel(model_id, None, config | kind_config, feature_model=model)
        weights = model.to_arrays()
        training = {
            "seconds_per_epoch": fit_seconds,
            "parameters": int(sum(v.size for v in weights.values())),
        }
    start = time.perf_counter()
    scores = score_rows(spec.store, loaded, scored_ids)
    scored["probability"], scored["logit"] = scores.probability.astype(np.float64), scores.logit
    seconds = time.perf_counter() - start
    training["inference_records_per_s"] = len(scored_ids) / seconds if seconds > 0 else None
    return Fitted(loaded, weights, scored.reset_index(drop=True), training)


def fit_on_features(kind: str, spec: RunSpec, train: pd.DataFrame, columns: list[str]) -> FeatureModel:
    """A feature model of `kind` fitted on the stored `columns` of the training rows, their labels
    and the split's seed: a feature baseline, or the trees stacked on a network."""
    x_train = feature_matrix(spec.store, train["record_id"].tolist(), columns)
    return fit_feature_model(kind, x_train, train["mi_label"].to_numpy(int), spec.split.seed)


def stack_trees(net: nn.Module, spec: RunSpec, train: pd.DataFrame) -> int:
    """Fit a stacked network's trees (`fusion.stack`) on the training rows after the network: the
    feature baseline of that kind on the feature store's measurements, as `fit_fold` fits the
    baseline itself (`fit_on_features`); returns their node count."""
    assert spec.model_config is not None and spec.model_config.stack is not None
    trees = fit_on_features(spec.model_config.stack, spec, train, list(FEATURE_COLUMNS))
    net.features.trees.set_trees(trees)
    return int(trees.feature.size)


# torch's random generator and thread count belong to the process: folds running in threads of one
# process (a thread pool, a Dask worker with several threads) take turns, so that each fold gives
# what it gives alone; folds in separate processes run at the same time
_ONE_FOLD_PER_PROCESS = threading.Lock()


def train_fold(spec: RunSpec, model_id: str, description: str) -> tuple[Location, pd.DataFrame]:
    """One fold trained, evaluated and registered (`fit_fold`, then `finish_fold`): the model's
    directory and the fold's val and test predictions."""
    with _ONE_FOLD_PER_PROCESS:
        fitted = fit_fold(spec, model_id)
        return finish_fold(spec, fitted, description), fitted.predictions


def fit_share(spec: RunSpec) -> None:
    """A rank other than 0 of a distributed training: its share of the fold's network training
    (`fit`, together with rank 0's `fit_fold`), nothing evaluated or written. A feature baseline
    trains on rank 0 alone."""
    if spec.model not in NETS:
        return
    assert spec.model_config is not None
    rows = spec.split.assignment[spec.split.assignment["fold"] == spec.fold]
    fit(spec.store, rows[rows["part"] == "train"], rows[rows["part"] == "val"], spec.model_config)


def score_rows(store: Location, loaded: LoadedModel, record_ids: list[str]) -> WindowScores:
    """Probabilities and log-odds of stored records, aligned with `record_ids`: networks stream
    the waveforms, feature baselines read the feature store."""
    if loaded.net is not None:
        features = store_features(store, record_ids, loaded.model_config)
        return predict_store(loaded.net, loaded.model_config, store, record_ids, features)
    return loaded.feature_scores(feature_matrix(store, record_ids, loaded.feature_columns))


def predict_rows(store: Location, loaded: LoadedModel, record_ids: list[str]) -> np.ndarray:
    """Probabilities (float64) of stored records, aligned with `record_ids` (`score_rows`)."""
    return score_rows(store, loaded, record_ids).probability.astype(np.float64)


def split_description(spec: RunSpec) -> dict[str, Any]:
    rows = spec.split.assignment[spec.split.assignment["fold"] == spec.fold]
    return {
        "mode": spec.split.mode,
        "seed": spec.split.seed,
        "fold": spec.fold,
        "held_out_sites": sorted(set(rows.loc[rows["held_out"], "site"])),
        "held_out_devices": sorted(set(rows.loc[rows["held_out"], "device"])),
        "excluded": spec.excluded,
        "evaluation_config_version": spec.evaluation.version,
    }


def signals_for(store: Location, record_ids: list[str]) -> np.ndarray:
    """The windows of a few records (n, 12, 5000) in the given order, read with a record filter."""
    table = st.read_table(store, "waveforms", ["record_id", "signal"], ds.field("record_id").isin(record_ids))
    position = {r: i for i, r in enumerate(table["record_id"].to_pylist())}
    return st.signals_of(table["signal"])[[position[r] for r in record_ids]]


def lead_importance(
    store: Location, loaded: LoadedModel, test: pd.DataFrame, config: EvaluationConfig, seed: int
) -> dict[str, pd.DataFrame]:
    """Permutation importance of single leads and of territories on (at most
    `importance_max_records` of) the test part, sampled within each class so that both stay in
    the sample (a plain sample of a small or skewed test part could hold one class only); empty
    when the test part holds a single class."""
    if test["mi_label"].nunique() < 2:
        return {}
    share = min(1.0, config.importance_max_records / len(test))
    sample = pd.concat(
        rows.sample(n=max(1, round(share * len(rows))), random_state=seed)
        for _, rows in test.groupby("mi_label", sort=True)
    ).sort_values("record_id")
    signals = signals_for(store, sample["record_id"].tolist())
    labels = sample["mi_label"].to_numpy(int)
    if loaded.net is None:  # a feature baseline: the shuffled leads are measured again
        inputs, predict = signals, loaded.predict_proba
    else:  # a network: shuffle the prepared leads (for median beats, another record's own beat)
        cfg = loaded.model_config  # a fused network's features stay with their record
        features = store_features(store, sample["record_id"].tolist(), cfg)
        inputs = prepare_array(signals, cfg)
        predict = partial(predict_prepared, loaded.net, cfg, features=features)
    frame = permutation_importance(predict, inputs, labels, lead_groups(), config.importance_repeats, seed)
    single = frame["group"].isin(CANONICAL_LEADS)
    return {"lead": frame[single].reset_index(drop=True), "territory": frame[~single].reset_index(drop=True)}


def calibrated(predictions: pd.DataFrame, threshold: float) -> tuple[dict[str, Any], pd.DataFrame]:
    """The `calibration` entry of thresholds.json, fitted on the `val` rows' log-odds only
    (`msaic_model.training.calibration`), with the risk at the decision threshold; and the predictions
    with each row's calibrated `risk`."""
    val = predictions[predictions["part"] == "val"]
    calibration, report = calibrate(val["logit"], val["mi_label"].to_numpy(int), load_calibration_config())
    threshold_logit = np.log(threshold) - np.log1p(-threshold)
    entry = calibration.to_json() | {
        "chosen_by": report,
        "risk_at_threshold": float(calibration.risk(threshold_logit)),
    }
    return entry, predictions.assign(risk=calibration.risk(predictions["logit"]))


def reliability(
    test: pd.DataFrame,
    threshold: float,
    config: EvaluationConfig,
    seed: int,
    columns: tuple[str, ...] = ("probability", "risk"),
) -> dict[str, Any]:
    """Brier score and ECE (with bootstrap intervals, over `ece_bins` equal-width bins) of the test
    part's probabilities and of their calibrated risks."""
    y = test["mi_label"].to_numpy(int)
    out = {}
    for column in columns:
        result = compute_metrics(y, test[column].to_numpy(float), threshold, config.metrics, seed).to_dict()
        out[column] = {"brier": result["brier"], "ece": result["ece"]}
    return {"n": len(test), "ece_bins": config.metrics.ece_bins, **out}


def finish_fold(spec: RunSpec, fitted: Fitted, description: str) -> Location:
    """Threshold and calibration (val only), evaluation (test), importance, model card; register;
    the model dir. The decision threshold stays on the raw probability: the calibration is
    non-decreasing, so it could only restate the same calls (or merge isotonic ties)."""
    config = spec.evaluation
    thresholds = validation_threshold(fitted.predictions, config)
    thresholds["calibration"], predictions = calibrated(fitted.predictions, thresholds["threshold"])
    loaded = replace(fitted.loaded, threshold=thresholds["threshold"])
    evaluation = evaluate_predictions(predictions, thresholds["threshold"], config, spec.split.seed)
    test = predictions[predictions["part"] == "test"]
    importance = (
        lead_importance(spec.store, loaded, test, config, spec.split.seed) if spec.model in NETS else {}
    )
    fold_rows = spec.split.assignment[spec.split.assignment["fold"] == spec.fold]
    snapshot = data_snapshot(spec.store, fold_rows) | {"adjudications": spec.adjudications}
    snapshot_id = sha256_of([json.dumps(snapshot, sort_keys=True)])
    metrics = {
        "evaluation": evaluation,
        "calibration": reliability(test, thresholds["threshold"], config, spec.split.seed),
        "training": fitted.training,
        "importance": {name: frame.to_dict(orient="records") for name, frame in importance.items()},
        "evaluation_config_version": config.version,
    }
    scored = predictions[["record_id", "probability", "logit", "risk"]]
    split_rows = fold_rows.merge(scored, on="record_id", how="left")
    card = CardData(
        model_id=loaded.model_id,
        description=description,
        config=loaded.config,
        thresholds=thresholds,
        metrics=metrics,
        predictions=split_rows,
        split_summary={**loaded.config["split"], "snapshot_sha256": snapshot_id},
        importance=importance,
        synthetic_sites=synthetic_sites(fold_rows),
        adjudications=spec.adjudications,
    )
    return register(
        spec.store,
        Registration(
            model_id=loaded.model_id,
            config=loaded.config,
            weights=fitted.weights,
            thresholds=thresholds,
            metrics=metrics,
            snapshot=snapshot | {"snapshot_sha256": snapshot_id},
            split=split_rows,
            card_html=render_card(card),
        ),
    )


EXTERNAL_DIR = "external"


def card_description(model: str, store: Location, split: str) -> str:
    """The model card's subtitle."""
    return f"{model} trained on {location(store).name}, split {split}"


def card_from_directory(model_path: Location) -> CardData:
    """The card data of a registered model, read back from its directory, with the external
    evaluations recorded in it (`record_external`)."""

    def read(name: str) -> dict[str, Any]:
        return json.loads((model_path / name).read_text())

    config, metrics, snapshot = read(CONFIG), read(METRICS), read(SNAPSHOT)
    split = st.read_table_file(model_path / SPLIT_FILE).to_pandas()
    external = sorted((model_path / EXTERNAL_DIR).glob("*.json"))
    return CardData(
        model_id=config["model_id"],
        description=card_description(config["name"], model_path.parent.parent, config["split"]["mode"]),
        config=config,
        thresholds=read(THRESHOLDS),
        metrics=metrics,
        predictions=split,
        split_summary={**config["split"], "snapshot_sha256": snapshot["snapshot_sha256"]},
        importance={name: pd.DataFrame(rows) for name, rows in metrics["importance"].items()},
        synthetic_sites=synthetic_sites(split),
        adjudications=snapshot.get("adjudications", {}),
        external=[json.loads(p.read_text()) for p in external],
    )


def record_external(model_path: Location, report: dict[str, Any]) -> Location:
    """Add an external evaluation (`reevaluate` on every record of another store) to a registered
    model: `external/<time>-<store>.json`, then the model card rendered again with it; each file
    written beside its place and renamed into it, so a reader never sees half of one."""
    folder = model_path / EXTERNAL_DIR
    folder.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    path = folder / f"{stamp}-{report['store_name']}-{uuid.uuid4().hex[:6]}.json"
    st.write_atomic(path, json.dumps(report, indent=2, default=str))
    st.write_atomic(model_path / MODEL_CARD, render_card(card_from_directory(model_path)))
    return path


def reevaluate(
    store: Location,
    model_path: Location,
    eligible: Eligible,
    config: EvaluationConfig,
    split_mode: str | None = None,
    seed: int | None = None,
    all_records: bool = False,
) -> dict[str, Any]:
    """Evaluate a registered model, at its saved threshold, on a store: its own val/test parts
    when `store` is the one it was trained on and no split is asked for; else the test part of
    `split_mode` on this store, or every eligible labelled record (`all_records`, and by default
    on another store). Records that trained or validated the model are never evaluated; held out =
    a site it never trained on. Evaluating every record adds the `external` figures
    (`external_figures`): by patient, and the calibration on these records."""
    if all_records and split_mode is not None:
        raise ValueError("evaluate every labelled record or one split's test part, not both")
    loaded = load_model(model_path)
    threshold = decision_threshold(loaded)  # refused before any scoring
    seed = loaded.config["split"]["seed"] if seed is None else seed
    model_path, store = location(model_path), location(store)
    saved = st.read_table_file(model_path / SPLIT_FILE).to_pandas()
    trained_here = model_path.resolve().parent.parent == store.resolve()
    excluded = dict(eligible.excluded)
    if split_mode is None and trained_here and not all_records:
        rows = saved[saved["part"] != "train"].drop(columns=["probability", "logit", "risk"], errors="ignore")
    else:
        if split_mode in ("loso", "cv"):
            raise ValueError("re-evaluation takes one test part: use site, device, patient or strat_fold")
        if split_mode is None:
            labelled = labelled_records(eligible.records)
            excluded["mi_label_null"] = len(eligible.records) - len(labelled)
            rows = labelled.assign(part="test", fold=0, held_out=False)[ASSIGNMENT_COLUMNS]
        else:
            split = make_split(eligible.records, split_mode, seed, config.splits)
            excluded |= split.excluded
            rows = split.part("test")
        seen = rows["record_id"].isin(saved.loc[saved["part"] != "test", "record_id"])
        excluded["seen_in_training"] = int(seen.sum())
        trained_sites = set(saved.loc[saved["part"] == "train", "site"])
        rows = rows[~seen].assign(held_out=lambda f: ~f["site"].isin(trained_sites))
    rows = rows.reset_index(drop=True)
    scores = score_rows(store, loaded, rows["record_id"].tolist())
    rows["probability"] = scores.probability.astype(np.float64)
    everything = all_records or (split_mode is None and not trained_here)
    report = {
        "model_id": loaded.model_id,
        "store": str(store),
        "store_name": store.name,
        "evaluated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "split": "all" if everything else (split_mode or "saved"),
        "excluded": excluded,
        "evaluation": evaluate_predictions(rows, threshold, config, seed),
    }
    if everything:
        report["external"] = external_figures(rows.assign(logit=scores.logit), loaded, config, seed)
    return report


def external_figures(
    rows: pd.DataFrame, loaded: LoadedModel, config: EvaluationConfig, seed: int
) -> dict[str, Any]:
    """What an evaluation on every labelled record of a store adds to `evaluate_predictions`'
    figures by window (overall, per source, per device): the figures by patient (a patient's
    probability is the mean over its windows), and the calibration on these records: Brier and
    ECE with intervals and the reliability bins of the probability and, for a model with a risk
    calibration, of the calibrated risk."""
    threshold = decision_threshold(loaded)
    patients = by_patient(rows)
    y = patients["mi_label"].to_numpy(int)
    by_patients = compute_metrics(y, patients["probability"].to_numpy(float), threshold, config.metrics, seed)
    columns: tuple[str, ...] = ("probability",)
    if loaded.calibration is not None:
        rows = rows.assign(risk=loaded.calibration.risk(rows["logit"]))
        columns += ("risk",)
    labels, bins = rows["mi_label"].to_numpy(int), config.metrics.ece_bins
    return {
        "patients": by_patients.to_dict(),
        "calibration": reliability(rows, threshold, config, seed, columns),
        "reliability_bins": {
            c: reliability_table(labels, rows[c].to_numpy(float), bins)
            .reset_index()
            .to_dict(orient="records")
            for c in columns
        },
    }
