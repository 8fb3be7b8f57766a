"""Benchmark of MSAIC-Net against its baselines in the small-data regime, on held-out sites.

A synthetic multi-site archive (`write_archive`) is ingested, checked and measured through the
product's flows; one `site` split (patient-disjoint, one site held out) is drawn; then for each
training size the train and validation parts are subsampled by whole patients (stratified; the
validation part in the split's val : train proportion) while the test part stays the same, and
every model trains on exactly that split (`fit_fold`, the flow's own training step), gets its
threshold from validation only and is evaluated on the test part (`evaluate_predictions`).
Per size and model: held-out-site AUROC and AUPRC with bootstrap 95 % intervals (and the
in-distribution test share for the shift), parameters, training seconds per epoch, inference
records/s (val + test, read from the store: waveforms for the networks, the precomputed feature
table for logreg/gbm, so the two kinds are not comparable there). The verdict of issue 6 is
computed from the point estimates. Progress lines go to stderr; one JSON object to stdout (and
to WORKDIR/bench_train.json).

    .venv/bin/python bench/train.py [--records 4000] [--sizes 200 500 2000] [--epochs N] [--workdir DIR]
        [--models msaic ...] [--config MSAIC_CONFIG.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("msaic", "logreg", "gbm", "resnet1d", "inception1d")  # the slowest last
SITES = 4


def build_store(work: Path, records: int, seed: int) -> Path:
    """The synthetic archive ingested, quality-checked and measured (reused when present)."""
    from flows.ingest import ingest
    from flows.quality import quality
    from tasks.features.run import build_features
    from tasks.settings import Settings
    from tasks.synth.archive import SynthConfig, write_archive
    from tasks.synth.sites import first_sites

    store = work / "store"
    if (store / "features").is_dir():
        return store
    archive = work / "archive"
    shutil.rmtree(archive, ignore_errors=True)
    shutil.rmtree(store, ignore_errors=True)
    write_archive(SynthConfig(n_records=records, sites=first_sites(SITES), seed=seed), archive, workers=2)
    settings = Settings(workers=2)
    ingest(archive, store, settings=settings)
    quality(store, settings)
    build_features(store, settings)
    return store


def _figure(metric: dict[str, Any]) -> dict[str, float | None]:
    return {k: None if metric[k] is None else round(metric[k], 4) for k in ("value", "low", "high")}


def run_model(
    store: Path, split: Any, model: str, evaluation: Any, epochs: int | None, seed: int, config: Path | None
) -> dict:
    """Train one model on fold 0 of `split`, threshold on val, evaluate the test part."""
    from msaic_model.evaluate import evaluate_predictions, validation_threshold
    from msaic_model.training_run import RunSpec, fit_fold, model_arguments

    arguments = model_arguments(model, config if model == "msaic" else None, epochs, seed)
    spec = RunSpec(store, model, split, 0, split.excluded, evaluation, **arguments)
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


def verdict(results: dict[str, dict[str, dict]]) -> dict[str, Any]:
    """Issue 6's target on held-out AUROC point estimates: MSAIC-Net >= the best baseline at every
    size, and > resnet1d at 200 and 500 records."""
    per_size = {}
    for size, models in results.items():
        auroc = {m: r["held_out"]["auroc"]["value"] for m, r in models.items()}
        if "msaic" not in auroc:
            continue
        baselines = {m: v for m, v in auroc.items() if m != "msaic" and v is not None}
        best = max(baselines, key=baselines.get) if baselines else None
        row = {"msaic": auroc["msaic"], "best_baseline": best, "best_baseline_auroc": baselines.get(best)}
        row["msaic_at_least_best"] = best is not None and auroc["msaic"] >= baselines[best]
        if "resnet1d" in baselines:
            row["msaic_minus_resnet1d"] = round(auroc["msaic"] - baselines["resnet1d"], 4)
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
    parser.add_argument("--records", type=int, default=4000, help="records in the synthetic archive")
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 500, 2000], help="training records")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--epochs", type=int, help="override every network config's epochs")
    parser.add_argument("--config", type=Path, help="MSAIC-Net config JSON (default: the packaged msaic)")
    parser.add_argument("--held-out", nargs="+", help="sites to hold out (default: drawn with the seed)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch/OpenMP threads (2 on a loaded 2-core machine spin-wait)"
    )
    parser.add_argument("--workdir", type=Path, help="keep the archive and store here (default: temporary)")
    args = parser.parse_args()
    os.environ.setdefault("MSAIC_PSEUDONYM_KEY", "bench")
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # before torch and scikit-learn load OpenMP
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")  # a loaded machine

    import torch

    from msaic_model.evaluate import load_evaluation_config
    from tasks.splits import make_split, subsample_parts
    from tasks.training_data import check_contracts, eligible_records

    torch.set_num_threads(args.threads)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="msaic-bench-train-"))
    try:
        start = time.perf_counter()
        store = build_store(work, args.records, args.seed)
        prepare_s = time.perf_counter() - start
        evaluation = load_evaluation_config()
        check_contracts(store)
        eligible = eligible_records(store)
        split = make_split(eligible.records, "site", args.seed, evaluation.splits, args.held_out)
        val_per_train = len(split.part("val")) / len(split.part("train"))
        results: dict[str, dict[str, dict]] = {}
        parts: dict[str, dict[str, int]] = {}
        for size in args.sizes:
            small = subsample_parts(split, {"train": size, "val": round(size * val_per_train)}, args.seed)
            counts = small.assignment.groupby("part")["mi_label"].agg(["size", "sum"])
            parts[str(size)] = {p: {"records": int(n), "mi": int(m)} for p, (n, m) in counts.iterrows()}
            print(json.dumps({"size": size, "parts": parts[str(size)]}), file=sys.stderr, flush=True)
            results[str(size)] = {}
            for model in args.models:
                result = run_model(store, small, model, evaluation, args.epochs, args.seed, args.config)
                results[str(size)][model] = result
                print(json.dumps({"size": size, "model": model, **result}), file=sys.stderr, flush=True)
        held_out = sorted(set(split.assignment.loc[split.assignment["held_out"], "site"]))
        out = {
            "bench": "train",
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "archive_records": args.records,
            "held_out_sites": held_out,
            "eligible_excluded": eligible.excluded,
            "parts_per_size": parts,
            "epochs_override": args.epochs,
            "msaic_config": str(args.config or "packaged msaic"),
            "prepare_s": round(prepare_s, 1),
            "results": results,
            "verdict": verdict(results),
        }
        text = json.dumps(out, indent=2)
        (work / "bench_train.json").write_text(text)
        print(text)
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
