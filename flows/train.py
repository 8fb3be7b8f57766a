"""Prefect flows `train` and `evaluate` and their commands `msaic train` / `msaic evaluate`.

`train` checks the quality and feature contracts of the store, takes the eligible records with
the reviewers' adjudicated labels over the source's (STORE/adjudications/, counted in each model's
snapshot and card), splits them (patient-disjoint; `loso` gives one fold per site and `cv` one per
patient fold, each trained and registered as its own model), then per fold trains, evaluates and
registers `STORE/models/<model_id>/`. A `cv` run also pools the folds' test predictions (each
labelled record tested once) into one AUROC/AUPRC with intervals, written to
`STORE/models/<model>-cv-<stamp>.json`.
Each fold is one task (`train-fold`) submitted to the flow's task runner: folds run one after
another by default, at the same time with `--fold-workers N` (a process pool) or on a Dask cluster
with `--dask-address`/`--dask-local` (one fold per worker thread; give workers one thread each, since folds in
threads of one process take turns), with the same results either way. Under `torchrun` the ranks
train each fold's network together (`msaic_model.training.distributed`), fold after fold; rank 0
alone evaluates and registers, the other ranks return no models.
`evaluate` re-evaluates a registered model at its saved threshold on its own split or on another
store; with `--all`, on every eligible labelled record of a store (a hospital's own archive: the
records that trained or validated the model left out), per source and per device, by window and
by patient, with the calibration on those records, and the figures are added to the model's card
(`STORE/models/<id>/external/`).
The work lives in `msaic_model.training.eligible`, `msaic_model.training.splits` and
`msaic_model.training.run`.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ProcessPoolTaskRunner, TaskRunner
from rich.console import Console
from rich.table import Table

from flows.args import existing_path, existing_store, model_config, positive_int
from flows.cluster import on_cluster
from flows.options import add_dask, cluster_of
from msaic_model.training.distributed import launched, process_group
from msaic_model.training.eligible import check_contracts, eligible_records
from msaic_model.training.evaluate import load_evaluation_config, pooled_out_of_fold
from msaic_model.training.model_card import metric_cell
from msaic_model.training.registry import model_dir, new_model_id
from msaic_model.training.run import (
    MODEL_CHOICES,
    RunSpec,
    card_description,
    fit_share,
    model_arguments,
    record_external,
    reevaluate,
    train_fold,
)
from msaic_model.training.splits import MODES, make_split
from tasks import store as st
from tasks.settings import Settings
from tasks.store.location import Location, location
from tasks.store.model_files import METRICS

check_task = task(check_contracts, name="check-contracts", cache_policy=NO_CACHE)
eligible_task = task(eligible_records, name="eligible-records", cache_policy=NO_CACHE)
split_task = task(make_split, name="split", cache_policy=NO_CACHE)
fold_task = task(train_fold, name="train-fold", cache_policy=NO_CACHE)
share_task = task(fit_share, name="fit-share", cache_policy=NO_CACHE)
reevaluate_task = task(reevaluate, name="re-evaluate", cache_policy=NO_CACHE)
pooled_task = task(pooled_out_of_fold, name="pool-folds", cache_policy=NO_CACHE)
record_task = task(record_external, name="record-external", cache_policy=NO_CACHE)
FOLDED_SPLITS = ("loso", "cv")


@dataclass(frozen=True)
class TrainedModel:
    model_id: str
    path: Location
    fold: int
    metrics: dict[str, Any]
    # what the adjudicated labels did (msaic_model.training.eligible.adjudicated)
    adjudications: dict[str, int]
    cross_validation: dict[str, Any] | None = None  # cv: the pooled figure (with its "path"), every fold


@flow(name="train")
def train(
    store: Location,
    model: str = "msaic",
    split: str = "site",
    epochs: int | None = None,
    config: Path | None = None,
    seed: int = 0,
    held_out: list[str] | None = None,
    evaluation_config: Path | None = None,
) -> list[TrainedModel]:
    """Train, evaluate and register `model` on `store`, one model per fold of the split (the
    folds as tasks of the flow's task runner; under torchrun, see the module docstring)."""
    spec_args = model_arguments(model, config, epochs, seed)
    store = location(store)
    evaluation = load_evaluation_config(evaluation_config)
    ranks = process_group()
    unchecked = check_task(store)["features_not_checked"]
    if unchecked:
        get_run_logger().warning(
            "features/ of %s hold too few rows to check against the contract (see msaic features)",
            ", ".join(unchecked),
        )
    eligible = eligible_task(store)
    the_split = split_task(eligible.records, split, seed, evaluation.splits, held_out)
    excluded = eligible.excluded | the_split.excluded
    specs = [
        RunSpec(
            store,
            model,
            the_split,
            fold,
            excluded,
            evaluation,
            adjudications=eligible.adjudications,
            **spec_args,
        )
        for fold in the_split.folds
    ]
    if not ranks.main:
        for spec in specs:  # in fold order, as rank 0 does: the ranks' collective steps must pair up
            share_task(spec)
        return []
    description = card_description(model, store, split)
    ids = [new_model_id(model, split, s.fold if split in FOLDED_SPLITS else None) for s in specs]
    if ranks.parallel:
        done = [fold_task(spec, model_id, description) for spec, model_id in zip(specs, ids, strict=True)]
    else:
        futures = [fold_task.submit(s, model_id, description) for s, model_id in zip(specs, ids, strict=True)]
        done = [future.result() for future in futures]
    trained, fold_predictions = [], []
    for spec, model_id, (path, predictions) in zip(specs, ids, done, strict=True):
        metrics = json.loads((path / METRICS).read_text())
        trained.append(TrainedModel(model_id, path, spec.fold, metrics, eligible.adjudications))
        fold_predictions.append((predictions, metrics["evaluation"]["threshold"]))
    if split == "cv":
        pooled = pooled_task(fold_predictions, evaluation, seed)
        out = model_dir(store, new_model_id(model, split)).with_suffix(".json")
        summary = {"model": model, "fold_model_ids": [t.model_id for t in trained], "pooled": pooled}
        _write_json(out, summary | {"evaluation_config_version": evaluation.version})
        trained = [replace(t, cross_validation=summary | {"path": str(out)}) for t in trained]
    create_markdown_artifact(
        train_markdown(trained), key="train-summary", description=f"train {model} on {store}"
    )
    return trained


@flow(name="evaluate")
def evaluate(
    store: Location,
    model_id: str | None = None,
    model_store: Location | None = None,
    split: str | None = None,
    seed: int | None = None,
    evaluation_config: Path | None = None,
    model: Location | None = None,
    all_records: bool = False,
) -> dict[str, Any]:
    """Re-evaluate a registered model (`model_id` in `model_store`, or the directory `model`); the
    report goes to STORE/reports/evaluations/. With `all_records`, every eligible labelled record of
    the store is evaluated and the report is also recorded in the model's directory and card."""
    store = location(store)
    path = location(model) if model is not None else model_dir(model_store or store, str(model_id))
    if not path.is_dir():
        raise FileNotFoundError(f"no registered model {path.name} in {path.parent}")
    check_task(store)
    eligible = eligible_task(store)
    evaluation = load_evaluation_config(evaluation_config)
    report = reevaluate_task(store, path, eligible, evaluation, split, seed, all_records)
    out = store / "reports" / "evaluations" / f"{path.name}-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    _write_json(out, report)
    if all_records:
        report["recorded_in"] = str(record_task(path, report))
    report["path"] = str(out)
    return report


def _write_json(path: Location, content: dict[str, Any]) -> None:
    """Write atomically (a temporary file renamed into place)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    st.write_atomic(path, json.dumps(content, indent=2))


def _rows(evaluation: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    rows = [("test", evaluation["test"])]
    if evaluation["shift"] is not None:
        rows += [
            ("in-distribution", evaluation["shift"]["in_distribution"]),
            ("held-out", evaluation["shift"]["held_out"]),
        ]
    return rows


def adjudication_line(counts: dict[str, int]) -> str:
    """One line on the adjudicated labels a training used."""
    return (
        f"adjudications used: {counts['used']} of {counts['decisions']} (changed a label "
        f"{counts['changed_label']}, labelled {counts['labelled']}, confirmed {counts['confirmed']}, "
        f"removed as unreadable {counts['removed']}; not eligible {counts['not_eligible']})"
    )


def train_markdown(trained: list[TrainedModel]) -> str:
    lines = [
        "| model | part | n | AUROC | AUPRC | sensitivity | specificity |",
        "|---|---|---|---|---|---|---|",
    ]
    for t in trained:
        for name, m in _rows(t.metrics["evaluation"]):
            cells = " | ".join(metric_cell(m[k]) for k in ("auroc", "auprc", "sensitivity", "specificity"))
            lines.append(f"| {t.model_id} | {name} | {m['n']} | {cells} |")
    if trained:
        lines += ["", adjudication_line(trained[0].adjudications)]
    return "\n".join(lines)


def print_evaluation(title: str, evaluation: dict[str, Any], console: Console) -> None:
    table = Table(title=title)
    for col in ("part", "n", "MI+", "AUROC", "AUPRC", "sensitivity", "specificity"):
        table.add_column(col, justify="left" if col == "part" else "right")
    for name, m in _rows(evaluation):
        metrics = (metric_cell(m[k]) for k in ("auroc", "auprc", "sensitivity", "specificity"))
        table.add_row(name, str(m["n"]), str(m["positives"]), *metrics)
    console.print(table)
    if evaluation["shift"] is not None:
        gap = evaluation["shift"]["gap"]
        console.print(f"distribution shift (held-out − in-distribution): AUROC {metric_cell(gap['auroc'])}")


_EVALUATION_HELP = "splits/threshold/metrics config JSON (default: data_contracts/evaluation.json)"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train, evaluate and register an MI model on the store")
    p.add_argument(
        "--store",
        type=existing_store,
        required=True,
        help="store with records, quality and features (a directory or s3://bucket/prefix)",
    )
    p.add_argument("--model", choices=MODEL_CHOICES, default="msaic", help="network or feature baseline")
    p.add_argument("--split", choices=MODES, default="site", help="patient-disjoint split mode")
    p.add_argument("--epochs", type=positive_int, help="override the config's epochs")
    p.add_argument("--config", type=model_config, help="packaged config name or JSON file")
    p.add_argument("--seed", type=int, default=0, help="seed of the split and the training")
    p.add_argument("--held-out", nargs="+", help="sites (devices) to hold out in site (device) mode")
    p.add_argument("--evaluation-config", type=existing_path, help=_EVALUATION_HELP)
    p.add_argument(
        "--fold-workers", type=positive_int, default=1, help="folds trained at once, in processes (default 1)"
    )
    add_dask(p)
    p.set_defaults(func=run_train, usage_problem=train_usage_problem)
    e = sub.add_parser("evaluate", help="re-evaluate a registered model on its split or another store")
    e.add_argument(
        "--store", type=existing_store, required=True, help="store to evaluate on (a directory or s3://…)"
    )
    which = e.add_mutually_exclusive_group(required=True)
    which.add_argument("--model-id", help="a directory name under STORE/models/ (or --model-store)")
    which.add_argument("--model", type=existing_store, help="a registered model's directory (or s3://…)")
    e.add_argument(
        "--model-store", type=existing_store, help="store the model is registered in (default: --store)"
    )
    what = e.add_mutually_exclusive_group()
    what.add_argument(
        "--split", choices=MODES, help="evaluate this split's test part (default: the saved one)"
    )
    what.add_argument(
        "--all",
        action="store_true",
        dest="all_records",
        help="every eligible labelled record of the store, per source and device; added to the model card",
    )
    e.add_argument("--seed", type=int, help="split and bootstrap seed (default: the model's own)")
    e.add_argument("--evaluation-config", type=existing_path, help=_EVALUATION_HELP)
    e.set_defaults(func=run_evaluate)


def fold_runner(fold_workers: int) -> TaskRunner | None:
    """The task runner of the folds off a Dask cluster: a pool of `fold_workers` processes (torch
    threads shared out among them), or None for the flow's own (one fold after another)."""
    if fold_workers == 1:
        return None
    import torch

    threads = max(1, (os.cpu_count() or 1) // fold_workers)
    return ProcessPoolTaskRunner(
        max_workers=fold_workers, initializer=torch.set_num_threads, initargs=(threads,)
    )


def train_usage_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with a combination of `msaic train` options, found before anything starts
    (the CLI's bad usage: one line, exit 2), or None."""
    on_dask = cluster_of(args, Settings()) is not None
    if on_dask and args.fold_workers > 1:
        return "--fold-workers trains folds in local processes: leave it out on a Dask cluster"
    if (on_dask or args.fold_workers > 1) and launched().parallel:
        return "under torchrun the ranks train the folds together: leave out --fold-workers/--dask-*"
    return None


def run_train(args: argparse.Namespace) -> int:
    cluster = cluster_of(args, Settings())
    runner = fold_runner(args.fold_workers)
    with on_cluster(train if runner is None else train.with_options(task_runner=runner), cluster) as flow_:
        trained = flow_(
            store=args.store,
            model=args.model,
            split=args.split,
            epochs=args.epochs,
            config=args.config,
            seed=args.seed,
            held_out=args.held_out,
            evaluation_config=args.evaluation_config,
        )
    console = Console()
    for t in trained:
        print_evaluation(f"{t.model_id} (fold {t.fold})", t.metrics["evaluation"], console)
        console.print(f"registered: {t.path}")
    if trained:
        excluded = json.loads((trained[0].path / "config.json").read_text())["split"]["excluded"]
        console.print("left out before the split: " + ", ".join(f"{k} {v}" for k, v in excluded.items()))
        console.print(adjudication_line(trained[0].adjudications))
    if trained and trained[0].cross_validation is not None:
        cv = trained[0].cross_validation
        for unit in ("windows", "patients"):
            pooled = cv["pooled"][unit]
            console.print(
                f"{cv['pooled']['folds']}-fold cross-validation, pooled out-of-fold by {unit} "
                f"({pooled['n']}, {pooled['positives']} MI+): AUROC {metric_cell(pooled['auroc'])}, "
                f"AUPRC {metric_cell(pooled['auprc'])}"
            )
        console.print(f"cross-validation summary: {cv['path']}")
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    report = evaluate(
        args.store,
        args.model_id,
        args.model_store,
        args.split,
        args.seed,
        args.evaluation_config,
        args.model,
        args.all_records,
    )
    console = Console()
    print_evaluation(f"{report['model_id']} on {args.store}", report["evaluation"], console)
    if "external" in report:
        patients = report["external"]["patients"]
        console.print(
            f"by patient ({patients['n']}, {patients['positives']} MI+): "
            f"AUROC {metric_cell(patients['auroc'])}, "
            f"AUPRC {metric_cell(patients['auprc'])}"
        )
        for group, title in (("per_site", "source"), ("per_device", "device")):
            for name, m in report["evaluation"][group].items():
                count = f"({m['n']}, {m['positives']} MI+)"
                console.print(f"  {title} {name} {count}: AUROC {metric_cell(m['auroc'])}")
    if "recorded_in" in report:
        console.print(f"added to the model card: {report['recorded_in']}")
    console.print(f"excluded: {report['excluded']}\nreport: {report['path']}")
    return 0
