"""Benchmark of MSAIC-Net against its baselines in the small-data regime, on held-out sites.

A synthetic multi-site archive (`write_archive`) is ingested, checked and measured through the
product's flows; a `site` split (patient-disjoint, one site held out) is drawn, or with
`--split loso` every site is held out in turn; then for each training size the train and
validation parts are subsampled by whole patients (stratified; the validation part in the split's
val : train proportion) while the test part stays the same, and every model trains on exactly that
split (`fit_fold`, the flow's own training step), gets its threshold from validation only and is
evaluated on the test part (`evaluate_predictions`).
Per size and model: held-out-site AUROC and AUPRC with bootstrap 95 % intervals (and the
in-distribution test share for the shift), parameters, training seconds per epoch, inference
records/s (val + test, read from the store: waveforms for the networks, the precomputed feature
table for logreg/gbm, so the two kinds are not comparable there).
One held-out site holds few MI records (25 for site_c in a 2,000-record archive), so one split's
AUROC moves by several hundredths with the training subsample alone. `--repeats R` draws R splits
(seeds seed .. seed+R-1: partition, subsample and model seed); with several runs (repeats, LOSO
folds) each figure is the mean over runs, with its spread and the per-run values, per held-out
site and over all of them. The verdict of issue 6 is computed from the point estimates (means).
A size larger than a split's training part trains on the whole part: `train_records` gives the
records each size really trained on (min and max over the runs), `sizes_capped` the sizes that
fell short. With one of four sites held out and the validation part set aside, the training part
is 0.42-0.50 of the archive (4,000 records: 1,692-2,001), so the default archive is 5,000
records, for a full 2,000.
Progress lines go to stderr; one JSON object to stdout (and to WORKDIR/bench_train.json).

    .venv/bin/python bench/train.py [--records 5000] [--sizes 200 500 2000] [--epochs N] [--workdir DIR]
        [--models msaic ...] [--config MSAIC_CONFIG.json] [--split site|loso] [--repeats R] [--jobs 2]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import sys
import time
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
from _measure import emit, workdir
from scipy import stats

MODELS = ("msaic", "logreg", "gbm", "resnet1d", "inception1d")  # the slowest last
SITES = 4


def pretraining_seeds(config: Path | None) -> set[int]:
    """Seeds of the synthetic archives that the MSAIC-Net config (the packaged default when None)
    was pretrained on, from the provenance beside its packaged weights: a bench archive of such a
    seed would test the network on records it has seen."""
    from msaic_model.model.config import load_config, weights_provenance
    from msaic_model.training.run import packaged_config

    provenance = weights_provenance(load_config(config or packaged_config("msaic")))
    return {provenance["seed"]} if provenance else set()


def build_store(work: Path, records: int, seed: int) -> Path:
    """The synthetic archive ingested, quality-checked and measured (the archive and its ingest
    reused when present)."""
    from flows.ingest import ingest
    from flows.quality import quality
    from tasks.features.run import build_features
    from tasks.settings import Settings
    from tasks.synth.archive import SynthConfig, write_archive
    from tasks.synth.sites import first_sites

    store = work / "store"
    settings = Settings(workers=2)
    if not (store / "features").is_dir():
        archive = work / "archive"
        shutil.rmtree(archive, ignore_errors=True)
        shutil.rmtree(store, ignore_errors=True)
        write_archive(SynthConfig(n_records=records, sites=first_sites(SITES), seed=seed), archive, workers=2)
        ingest(archive, store, settings=settings)
    # a reused store is checked and measured again (incremental): one of an older QC profile or
    # feature version would give the feature readers NaN for every feature
    quality(store, settings)
    build_features(store, settings)
    return store


def _figure(metric: dict[str, Any]) -> dict[str, float | None]:
    return {k: None if metric[k] is None else round(metric[k], 4) for k in ("value", "low", "high")}


def run_model(
    store: Path,
    split: Any,
    fold: int,
    model: str,
    evaluation: Any,
    epochs: int | None,
    seed: int,
    config: Path | None,
) -> dict:
    """Train one model on `fold` of `split`, threshold on val, evaluate the test part."""
    from msaic_model.training.evaluate import evaluate_predictions, validation_threshold
    from msaic_model.training.run import RunSpec, fit_fold, model_arguments

    arguments = model_arguments(model, config if model == "msaic" else None, epochs, seed)
    spec = RunSpec(store, model, split, fold, split.excluded, evaluation, **arguments)
    start = time.perf_counter()
    fitted = fit_fold(spec, f"bench-{model}")
    wall = time.perf_counter() - start
    threshold = validation_threshold(fitted.predictions, evaluation)["threshold"]
    report = evaluate_predictions(fitted.predictions, threshold, evaluation, seed)
    shift = report["shift"]
    training = fitted.training
    return {
        "held_out": {k: _figure(shift["held_out"][k]) for k in ("auroc", "auprc")},
        "in_distribution": {k: _figure(shift["in_distribution"][k]) for k in ("auroc", "auprc")},
        "validation": {k: _figure(report["validation"][k]) for k in ("auroc", "auprc")},  # model selection
        "held_out_sensitivity_specificity_at_val_threshold": [
            _figure(shift["held_out"][k])["value"] for k in ("sensitivity", "specificity")
        ],
        "parameters": training["parameters"],
        "training_seconds_per_epoch": round(training["seconds_per_epoch"], 3),
        "epochs_run": len(training.get("history", [])) or None,
        "best_epoch": training.get("best_epoch"),
        "inference_records_per_s": round(training["inference_records_per_s"], 1),
        "wall_s_fit_and_predict": round(wall, 1),
    }


def aggregate(runs: list[dict]) -> dict:
    """One model at one size over several runs (repeats, held-out sites): each AUROC and AUPRC
    point estimate averaged ("value"), with its spread and the per-run values; speeds averaged.
    A single run is returned as it is."""
    if len(runs) == 1:
        return runs[0]

    def metric(group: str, name: str) -> dict[str, Any]:
        values = [r[group][name]["value"] for r in runs]
        known = [v for v in values if v is not None]
        return {
            "value": round(float(np.mean(known)), 4) if known else None,
            "sd": round(float(np.std(known, ddof=1)), 4) if len(known) > 1 else None,
            "min": min(known, default=None),
            "max": max(known, default=None),
            "runs": values,
        }

    return {
        "runs": len(runs),
        **{
            g: {m: metric(g, m) for m in ("auroc", "auprc")}
            for g in ("held_out", "in_distribution", "validation")
        },
        "parameters": runs[0]["parameters"],
        **{
            k: round(float(np.mean([r[k] for r in runs])), 3)
            for k in ("training_seconds_per_epoch", "inference_records_per_s")
        },
        "wall_s_fit_and_predict": round(sum(r["wall_s_fit_and_predict"] for r in runs), 1),
    }


def summarize(runs: list[dict]) -> dict[str, dict[str, dict]]:
    """size -> model -> `aggregate` of the runs."""
    grouped: dict[str, dict[str, list[dict]]] = {}
    for run in runs:
        grouped.setdefault(str(run["size"]), {}).setdefault(run["model"], []).append(run["result"])
    return {size: {m: aggregate(rs) for m, rs in models.items()} for size, models in grouped.items()}


def paired_difference(a: dict, b: dict) -> dict[str, float] | None:
    """Held-out AUROC of a minus b, run by run (both aggregates of the same splits in the same
    order), as the mean difference with a Student-t 95 % interval: whether a shortfall of the means
    is larger than the run-to-run noise. None for a single run."""
    runs_a, runs_b = a["held_out"]["auroc"].get("runs"), b["held_out"]["auroc"].get("runs")
    if not runs_a or not runs_b or len(runs_a) != len(runs_b):
        return None
    d = np.array([x - y for x, y in zip(runs_a, runs_b, strict=True) if x is not None and y is not None])
    if len(d) < 2:
        return None
    half = float(stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d)))
    mean = float(d.mean())
    return {
        "mean": round(mean, 4),
        "low": round(mean - half, 4),
        "high": round(mean + half, 4),
        "runs": len(d),
    }


def verdict(results: dict[str, dict[str, dict]]) -> dict[str, Any]:
    """Issue 6's target on held-out AUROC point estimates (means over runs): MSAIC-Net >= the best
    baseline at every size, and > resnet1d at 200 and 500 records; with several runs also the
    paired differences behind each comparison."""
    per_size = {}
    for size, models in results.items():
        auroc = {m: r["held_out"]["auroc"]["value"] for m, r in models.items()}
        if "msaic" not in auroc:
            continue
        baselines = {m: v for m, v in auroc.items() if m != "msaic" and v is not None}
        best = max(baselines, key=baselines.get) if baselines else None
        row = {"msaic": auroc["msaic"], "best_baseline": best, "best_baseline_auroc": baselines.get(best)}
        row["msaic_at_least_best"] = best is not None and auroc["msaic"] >= baselines[best]
        if best is not None:
            row["msaic_minus_best_baseline_paired"] = paired_difference(models["msaic"], models[best])
        if "resnet1d" in baselines:
            row["msaic_minus_resnet1d"] = round(auroc["msaic"] - baselines["resnet1d"], 4)
            row["msaic_minus_resnet1d_paired"] = paired_difference(models["msaic"], models["resnet1d"])
        per_size[size] = row
    small = [s for s in per_size if int(s) in (200, 500)]
    return {
        "per_size": per_size,
        "matches_best_baseline_at_every_size": bool(per_size)
        and all(r["msaic_at_least_best"] for r in per_size.values()),
        "beats_resnet1d_at_200_and_500": len(small) == 2
        and all(per_size[s].get("msaic_minus_resnet1d", -1.0) > 0 for s in small),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--records",
        type=int,
        default=5000,
        help="records in the synthetic archive (built unless WORKDIR holds one)",
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 500, 2000], help="training records")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--epochs", type=int, help="override every network config's epochs")
    parser.add_argument("--config", type=Path, help="MSAIC-Net config JSON (default: the packaged default)")
    parser.add_argument(
        "--split", choices=("site", "loso"), default="site", help="one held-out site, or each in turn"
    )
    parser.add_argument(
        "--held-out", nargs="+", help="site split: sites to hold out (default: drawn with the seed)"
    )
    parser.add_argument("--seed", type=int, default=1, help="archive seed and first split seed")
    parser.add_argument("--repeats", type=int, default=1, help="splits drawn with seeds seed .. seed+R-1")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch/OpenMP threads (2 on a loaded 2-core machine spin-wait)"
    )
    parser.add_argument("--jobs", type=int, default=1, help="runs trained at the same time (processes)")
    parser.add_argument("--workdir", type=Path, help="keep the archive and store here (default: temporary)")
    args = parser.parse_args()
    if args.split == "loso" and args.held_out:
        parser.error("--held-out applies to --split site (loso holds out every site in turn)")
    if args.seed in pretraining_seeds(args.config):
        parser.error(f"--seed {args.seed}: the pretrained MSAIC-Net saw that seed's synthetic archive")
    os.environ.setdefault("MSAIC_PSEUDONYM_KEY", "bench")
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # before torch and scikit-learn load OpenMP
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")  # a loaded machine

    import torch

    from msaic_model.training.eligible import check_contracts, eligible_records
    from msaic_model.training.evaluate import load_evaluation_config
    from msaic_model.training.splits import make_split, subsample_parts

    torch.set_num_threads(args.threads)
    with workdir(args.workdir, "msaic-bench-train-") as work:
        start = time.perf_counter()
        store = build_store(work, args.records, args.seed)
        prepare_s = time.perf_counter() - start
        evaluation = load_evaluation_config()
        check_contracts(store)
        eligible = eligible_records(store)
        runs: list[dict] = []
        parts: dict[str, dict[str, dict[str, int]]] = {}
        pending: list[tuple[dict[str, Any], Future[dict]]] = []
        pool = ProcessPoolExecutor(
            args.jobs, mp.get_context("spawn"), initializer=torch.set_num_threads, initargs=(args.threads,)
        )
        try:
            for seed in range(args.seed, args.seed + args.repeats):
                split = make_split(eligible.records, args.split, seed, evaluation.splits, args.held_out)
                val_per_train = len(split.assignment.query("part == 'val'")) / len(
                    split.assignment.query("part == 'train'")
                )
                for size in args.sizes:
                    small = subsample_parts(split, {"train": size, "val": round(size * val_per_train)}, seed)
                    for fold in small.folds:
                        a = small.assignment[small.assignment["fold"] == fold]
                        site = ",".join(sorted(set(a.loc[a["held_out"], "site"])))
                        counts = a.groupby("part")["mi_label"].agg(["size", "sum"])
                        key = f"seed {seed}, held out {site}"
                        parts.setdefault(key, {})[str(size)] = {
                            p: {"records": int(n), "mi": int(m)} for p, (n, m) in counts.iterrows()
                        }
                        print(
                            json.dumps({"run": key, "size": size, "parts": parts[key][str(size)]}),
                            file=sys.stderr,
                            flush=True,
                        )
                        for model in args.models:
                            job = (store, small, fold, model, evaluation, args.epochs, seed, args.config)
                            described = {"seed": seed, "held_out": site, "size": size, "model": model}
                            pending.append((described, pool.submit(run_model, *job)))
            for described, future in pending:  # in the order submitted, as one process runs them
                runs.append(described | {"result": future.result()})
                key = f"seed {described['seed']}, held out {described['held_out']}"
                line = {"run": key, "size": described["size"], "model": described["model"]}
                print(json.dumps(line | runs[-1]["result"]), file=sys.stderr, flush=True)
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)  # a failed run stops the bench, as one process did
            raise
        pool.shutdown()
        results = summarize(runs)
        trained = {
            str(size): [int(f(p[str(size)]["train"]["records"] for p in parts.values())) for f in (min, max)]
            for size in args.sizes
        }
        sites = sorted({r["held_out"] for r in runs})
        by_site = {site: summarize([r for r in runs if r["held_out"] == site]) for site in sites}
        out = {
            "bench": "train",
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "jobs": args.jobs,  # runs at once: the seconds and rates per run are under that load
            "archive_records": pq.read_metadata(
                work / "archive" / "truth.parquet"
            ).num_rows,  # a reused store: its own
            "split": args.split,
            "seeds": list(range(args.seed, args.seed + args.repeats)),
            "held_out_sites": sites,
            "eligible_excluded": eligible.excluded,
            "parts": parts,
            "train_records": trained,
            # whole patients land a size a few records either side of it
            "sizes_capped": [int(s) for s, (low, _) in trained.items() if low < 0.95 * int(s)],
            "epochs_override": args.epochs,
            "msaic_config": str(args.config or "packaged msaic"),
            "prepare_s": round(prepare_s, 1),
            "results": results,
            "verdict": verdict(results),
            **(
                {
                    "results_by_held_out_site": by_site,
                    "verdict_by_held_out_site": {s: verdict(r) for s, r in by_site.items()},
                }
                if len(sites) > 1
                else {}
            ),
        }
        emit(out, work / "bench_train.json")


if __name__ == "__main__":
    main()
