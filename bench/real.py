"""Every model on the real labelled records of ../shared/data, in one harness (issue 22).

LUDB (site `ludb`) and the CinC 2021 sample (one site per source folder: PTB_PTBXL,
CPSC_CPSC-Extra, ChapmanShaoxing_Ningbo, G12EC) are ingested, quality checked and measured through
the product's own flows into a store ingested once per --workdir (checked and measured again on
every run, incrementally). Every model trains through the
flow's own step (`fit_fold`: early stopping and, for the figures here, the threshold on the
validation part only) on the same splits:
- `cv`: patient-grouped 5-fold cross-validation (`msaic_model.training.splits` mode `cv`), repeated with seeds
  seed .. seed+R-1 (partition and model seed). Each repeat tests every labelled patient once; the
  figure is AUROC / AUPRC by patient (a patient's probability is the mean over its windows) of
  the pooled out-of-fold predictions, averaged over the repeats. Its 95 % interval is a stratified
  bootstrap over patients applied to every repeat and model alike (the same resamples:
  `compute_metrics` with one seed on the same patients), so the interval of the mean over
  repeats, and of the paired difference of two models, reflect patient sampling.
- `loso`: leave one source out (mode `loso`, one seed): by patient on the held-out source, per
  source and pooled over the sources (each record is held out once), with bootstrap intervals.
Paired differences: each model minus the best baseline (the baseline with the highest mean CV
AUROC by patient), AUROC and AUPRC, CV, pooled LOSO and per source, with paired bootstrap intervals.

Models: `msaic` (the packaged config), `msaic_fused` (the packaged `msaic_fused` config: the
feature-store measurements and criteria as a second input, late fusion), `msaic_pretrained` (the
packaged config starting from weights pretrained on a synthetic archive of --synthetic-records
records, `msaic_model.training.pretrain`, built once per workdir, then fine-tuned on each real training
fold exactly as `msaic` trains), `msaic_fused_pretrained` (the packaged `msaic_fused_pretrained`
config: `msaic_fused` whose waveform branch starts from the same pretrained weights, its feature
head from a fresh start), `msaic_stacked` (the packaged `msaic_stacked` config:
`msaic_fused_pretrained` with gradient boosting on the feature store stacked on it after training,
the two log-odds averaged, `msaic_model.model.stacked`), `gbm` and `logreg` (feature store), and,
on request (rhythm input,
several times slower), `resnet1d` and `inception1d`.

Rule for the packaged default network, fixed before the candidates were run: the MSAIC-Net
variant (msaic, msaic_fused, msaic_pretrained, msaic_fused_pretrained, msaic_stacked) with the
highest mean over
the CV repeats of the pooled out-of-fold AUROC by patient becomes the packaged default; a
challenger replaces the current default (msaic) only when its mean is higher by at least 0.005,
and of two challengers within 0.005 of each other the simpler wins (msaic < msaic_fused, which
needs the feature store at training and scoring, < msaic_pretrained, which needs a shipped
weights file, < msaic_fused_pretrained, which needs both, < msaic_stacked, which adds a second
model; msaic_fused_pretrained was added in session 13 and msaic_stacked in session 18 at the end
of this order, the rule otherwise unchanged). Taken in that order, each
candidate replaces the choice so far only when higher by the margin; without msaic in the run
there is no choice (and no summary to write). LOSO, AUPRC and the baselines do not enter the
choice; they are reported. The choice reads the same CV
figures that are reported (these ~250 patients leave no separate selection set), so the winner's
figure carries a small selection optimism.

Test predictions of every (model, split, seed, fold) are cached under WORKDIR/predictions (keyed
by the model's full configuration and, for a model that reads the feature store, the feature
version), so a run that stopped resumes, and several runs started on one
workdir share the folds (each fold is claimed by the process that computes it; the others go on
to unclaimed folds, then wait for the claimed ones); the JSON covers the models asked for.
Progress lines go to stderr; one JSON object to stdout (and to WORKDIR/bench_real.json).

    .venv/bin/python bench/real.py [--workdir DIR] [--models msaic gbm ...] [--repeats 5] [--seed 0]
        [--no-loso] [--synthetic-records 20000] [--threads 1] [--write-summary]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

import pandas as pd
from _measure import emit, workdir
from train import _figure

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
CANDIDATES = (
    "msaic",
    "msaic_fused",
    "msaic_pretrained",
    "msaic_fused_pretrained",
    "msaic_stacked",
)  # simplest first
# the config fine-tuned from the workdir's pretrained weights
PRETRAINED = {
    "msaic_pretrained": "msaic",
    "msaic_fused_pretrained": "msaic_fused",
    "msaic_stacked": "msaic_stacked",
}
BASELINES = ("gbm", "logreg", "resnet1d", "inception1d")
MODELS = (*CANDIDATES, *BASELINES)
DEFAULT_MODELS = (*CANDIDATES, "gbm", "logreg")
TIE_MARGIN = 0.005
BOOTSTRAP_SEED = 22  # one seed for every bootstrap: the same patient resamples for every model


def build_real_store(work: Path) -> Path:
    """LUDB (site `ludb`) and the CinC 2021 sample (one site per source folder) ingested, quality
    checked and measured through the product's flows; ingested once per workdir, and checked and
    measured again on every run (both incremental: a store of an older QC profile or feature
    version is brought up to date, one already current costs a few seconds)."""
    from flows.features import features
    from flows.ingest import ingest
    from flows.quality import quality
    from tasks.settings import Settings

    store = work / "real_store"
    settings = Settings(workers=2)
    if not (store / "features").is_dir():
        shutil.rmtree(store, ignore_errors=True)
        ingest(SHARED / "ludb", store, site="ludb", settings=settings)
        ingest(SHARED / "cinc2021", store, settings=settings)
    quality(store, settings)
    features(store, settings)
    return store


def build_synthetic_store(work: Path, records: int, seed: int) -> Path:
    """A synthetic archive of `records` recordings (4 sites) ingested and quality checked: the
    pretraining data (waveforms and labels only; no features needed). Built once per workdir."""
    from flows.ingest import ingest
    from flows.quality import quality
    from tasks.settings import Settings
    from tasks.synth.archive import SynthConfig, write_archive
    from tasks.synth.sites import first_sites

    store = work / f"synth{records}_store"
    if (store / "quality").is_dir():
        return store
    archive = work / f"synth{records}_archive"
    shutil.rmtree(archive, ignore_errors=True)
    shutil.rmtree(store, ignore_errors=True)
    write_archive(SynthConfig(n_records=records, sites=first_sites(4), seed=seed), archive, workers=2)
    settings = Settings(workers=2)
    ingest(archive, store, settings=settings)
    quality(store, settings)
    shutil.rmtree(archive)  # the store holds what pretraining reads
    return store


def pretraining_config(seed: int) -> Any:
    """The packaged MSAIC-Net config for pretraining: one pass over the synthetic training part
    per epoch (thousands of windows: no epoch floor needed), at most 10 epochs, patience 3."""
    from msaic_model.model.config import load_config, with_overrides

    overrides = {
        "train.seed": seed,
        "train.epochs": 10,
        "train.patience": 3,
        "train.min_windows_per_epoch": None,
    }
    return with_overrides(load_config("msaic"), overrides)


def pretrained_weights(work: Path, records: int, seed: int) -> tuple[Path, dict[str, Any]]:
    """Weights of MSAIC-Net pretrained on the synthetic store (made once per workdir) and what the
    pretraining did (validation AUROC per epoch, best epoch, seconds)."""
    from msaic_model.training.pretrain import pretrain, save_weights

    path = work / f"pretrained_msaic_synth{records}_seed{seed}.safetensors"
    report_path = path.with_suffix(".json")
    if path.is_file() and report_path.is_file():
        return path, json.loads(report_path.read_text())
    start = time.perf_counter()
    store = build_synthetic_store(work, records, seed)
    built = time.perf_counter()
    result = pretrain(store, pretraining_config(seed), seed, log=lambda line: _progress({"pretrain": line}))
    save_weights(result, path)
    report = {
        "synthetic_records": records,
        "build_s": round(built - start, 1),
        "pretrain_s": round(time.perf_counter() - built, 1),
        "best_epoch": result.best_epoch,
        "val_auroc_by_epoch": [round(v, 4) for v in result.history["val_auroc"]],
    }
    report_path.write_text(json.dumps(report))
    return path, report


def model_spec_arguments(model: str, seed: int, init_weights: Path | None) -> tuple[str, dict[str, Any]]:
    """The `fit_fold` kind and `RunSpec` arguments of a bench model."""
    from msaic_model.model.config import with_overrides
    from msaic_model.training.run import model_arguments, network_config

    if model in ("msaic", "msaic_fused"):  # by name: the product's default is what this bench chooses
        return "msaic", {"model_config": network_config("msaic", Path(model), None, seed)}
    if model in PRETRAINED:  # the workdir's pretrained weights, not the shipped file
        config = with_overrides(
            network_config("msaic", Path(PRETRAINED[model]), None, seed),
            {"train.init_weights": str(init_weights)},
        )
        return "msaic", {"model_config": config}
    return model, model_arguments(model, None, None, seed)


def _key(model: str, arguments: dict[str, Any], split: str, seed: int, fold: int) -> str:
    """The cache key of a fold: the model's full configuration and, for a model that reads the
    feature store (a fused network, a feature baseline), the feature version it read."""
    from data_contracts.feature_columns import FEATURE_VERSION

    config = arguments.get("model_config")
    described = config.model_dump(mode="json") if config is not None else arguments
    if config is None or config.feature_columns:
        described = {"model": described, "feature_version": FEATURE_VERSION}
    digest = hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:12]
    return f"{model}-{split}-seed{seed}-fold{fold}-{digest}"


def fold_predictions(
    store: Path, split: Any, fold: int, model: str, evaluation: Any, init_weights: Path | None, cache: Path
) -> pd.DataFrame:
    """The test rows of one fold with their probability and the fold's validation threshold
    (cached by model configuration, split, seed and fold)."""
    from msaic_model.training.evaluate import validation_threshold
    from msaic_model.training.run import RunSpec, fit_fold

    kind, arguments = model_spec_arguments(model, split.seed, init_weights)
    path = cache / f"{_key(model, arguments, split.mode, split.seed, fold)}.parquet"
    if path.is_file():
        return pd.read_parquet(path)
    cache.mkdir(parents=True, exist_ok=True)
    if not _claim(path):
        raise Claimed(path.name)
    try:
        start = time.perf_counter()
        fitted = fit_fold(
            RunSpec(store, kind, split, fold, split.excluded, evaluation, **arguments), f"real-{model}"
        )
        threshold = validation_threshold(fitted.predictions, evaluation)["threshold"]
        test = fitted.predictions[fitted.predictions["part"] == "test"].assign(threshold=threshold)
        seconds = round(time.perf_counter() - start, 1)
        _progress(
            {"model": model, "split": split.mode, "seed": split.seed, "fold": fold}
            | {"best_epoch": fitted.training.get("best_epoch"), "seconds": seconds}
        )
        staged = path.with_suffix(".tmp")
        test.to_parquet(staged, index=False)
        staged.replace(path)
    finally:
        path.with_suffix(".claim").unlink(missing_ok=True)
    return test


class Claimed(Exception):
    """Another live process sharing the workdir is computing this fold."""


def _claim(path: Path) -> bool:
    """Claim the computation of a cache file for this process (a `.claim` file holding its pid),
    so that several runs on one workdir share the folds; the claim of a process that no longer
    runs is taken over."""
    claim = path.with_suffix(".claim")
    while True:
        try:
            with claim.open("x") as f:
                f.write(str(os.getpid()))
            return True
        except FileExistsError:
            text = claim.read_text().strip()
            if not text.isdigit() or Path(f"/proc/{text}").exists():
                return False  # being written, or its process is alive
            claim.unlink(missing_ok=True)


def every_fold(
    store: Path, split: Any, model: str, evaluation: Any, init_weights: Path | None, cache: Path
) -> list[pd.DataFrame]:
    """The test rows of every fold of a split; folds that another process is computing are waited for."""
    done: dict[int, pd.DataFrame] = {}
    while True:
        for fold in split.folds:
            if fold not in done:
                with suppress(Claimed):
                    done[fold] = fold_predictions(store, split, fold, model, evaluation, init_weights, cache)
        if len(done) == len(split.folds):
            return [done[f] for f in split.folds]
        time.sleep(15)


def patient_metrics(rows: pd.DataFrame, evaluation: Any) -> Any:
    """AUROC, AUPRC, ... by patient of test rows, with the bench's one bootstrap seed."""
    from msaic_model.training.evaluate import by_patient
    from msaic_model.training.metrics import compute_metrics

    patients = by_patient(rows)
    y, p = patients["mi_label"].to_numpy(int), patients["probability"].to_numpy(float)
    return compute_metrics(y, p, 0.5, evaluation.metrics, BOOTSTRAP_SEED)


def ranking(result: Any) -> dict[str, Any]:
    """n, positives, AUROC and AUPRC (value, low, high) of a `MetricResult`."""
    full = result.to_dict()
    return {
        "n": full["n"],
        "positives": full["positives"],
        **{k: _figure(full[k]) for k in ("auroc", "auprc")},
    }


def paired(a: Any, b: Any) -> dict[str, Any]:
    """a − b, AUROC and AUPRC, with the paired bootstrap interval (same patients, same resamples)."""
    from msaic_model.training.metrics import difference

    diff = difference(a, b)
    return {k: _figure(diff[k]) for k in ("auroc", "auprc")}


def loso_by_source(held_out: pd.DataFrame, evaluation: Any) -> dict[str, Any]:
    """Figures by patient of the held-out rows of a leave-one-source-out run: `pooled` over the
    sources (each record is held out once) and per source (None where a source holds one class)."""
    out = {"pooled": patient_metrics(held_out, evaluation)}
    for site, rows in held_out.groupby("site", sort=True):
        out[site] = patient_metrics(rows, evaluation) if rows["mi_label"].nunique() == 2 else None
    return out


def choose_default(cv_auroc: dict[str, float]) -> dict[str, Any]:
    """The rule of the module docstring applied to the mean CV AUROC by patient of the candidates."""
    present = [m for m in CANDIDATES if m in cv_auroc]
    if "msaic" not in present:
        means = {m: cv_auroc[m] for m in present}
        return {"chosen": None, "means": means, "reason": "the packaged msaic was not run"}
    chosen = "msaic"
    for challenger in present[1:]:  # simplest first: a later one must beat the chosen by the margin
        if cv_auroc[challenger] >= cv_auroc[chosen] + TIE_MARGIN:
            chosen = challenger
    best = max(present, key=cv_auroc.get)
    return {
        "chosen": chosen,
        "means": {m: cv_auroc[m] for m in present},
        "reason": f"highest mean CV AUROC by patient is {best} ({cv_auroc[best]:.4f}); a challenger needs "
        f"+{TIE_MARGIN} over the simpler choice, ties go to the simpler model",
    }


def write_summary(out: dict[str, Any], command: str) -> Path:
    """The model card's headline figures (`msaic_model.training.model_card`, section "Real-data benchmark"):
    per model the CV and pooled LOSO figures by patient and the paired CV AUROC difference to the
    best baseline, with the data and the command, as data_contracts/real_benchmark.json."""
    from data_contracts import __file__ as contracts
    from msaic_model.training.model_card import REAL_BENCHMARK

    models = {
        name: {
            "cv": {k: r["cv"][k] for k in ("auroc", "auprc")},
            "loso": r["loso"]["pooled"] if "loso" in r else None,
            "minus_best_baseline": r["minus_best_baseline"]["cv"]["auroc"]
            if "minus_best_baseline" in r
            else None,
        }
        for name, r in out["results"].items()
    }
    summary = {
        "version": "real-benchmark/1",
        "measured_at": time.strftime("%Y-%m-%d"),
        "command": command,
        "data": {k: out["data"][k] for k in ("patients", "mi_patients", "per_source")},
        "cv": out["cv"],
        "best_baseline": out["best_baseline"],
        "models": models,
        "packaged_default": out["packaged_default_rule"]["chosen"],
    }
    path = Path(contracts).parent / REAL_BENCHMARK
    path.write_text(json.dumps(summary, indent=2) + "\n")
    return path


def _progress(line: dict[str, Any]) -> None:
    print(json.dumps(line), file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--workdir", type=Path, help="keep stores, weights, predictions here (default: temporary)"
    )
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS), choices=MODELS)
    parser.add_argument("--repeats", type=int, default=5, help="CV repeats, seeds seed .. seed+R-1")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-loso", action="store_true", help="cross-validation only")
    parser.add_argument(
        "--write-summary", action="store_true", help="write the model card's figures to data_contracts/"
    )
    parser.add_argument("--synthetic-records", type=int, default=20000, help="pretraining archive size")
    parser.add_argument("--threads", type=int, default=1, help="torch/OpenMP threads")
    args = parser.parse_args()
    if args.write_summary and "msaic" not in args.models:
        parser.error("--write-summary needs msaic among --models: the rule starts from it")
    os.environ.setdefault("MSAIC_PSEUDONYM_KEY", "bench")
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # before torch and scikit-learn load OpenMP
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")

    import torch

    from data_contracts.suites import ContractError
    from msaic_model.training.eligible import check_contracts, eligible_records
    from msaic_model.training.evaluate import load_evaluation_config, pooled_out_of_fold
    from msaic_model.training.metrics import mean_of
    from msaic_model.training.splits import make_split

    torch.set_num_threads(args.threads)
    with workdir(args.workdir, "msaic-bench-real-") as work:
        start = time.perf_counter()
        store = build_real_store(work)
        try:
            check_contracts(store)
            contracts = "ok"
        except ContractError as exc:  # reported: real sources the contract was not written for
            contracts = str(exc)
        eligible = eligible_records(store)
        evaluation = load_evaluation_config()
        pretraining, init_weights = None, None
        if PRETRAINED.keys() & set(args.models):
            init_weights, pretraining = pretrained_weights(work, args.synthetic_records, args.seed)
        prepare_s = time.perf_counter() - start
        cache = work / "predictions"
        seeds = list(range(args.seed, args.seed + args.repeats))
        cv_splits = [make_split(eligible.records, "cv", s, evaluation.splits) for s in seeds]
        cv: dict[str, list[Any]] = {}
        cv_per_seed: dict[str, list[dict[str, Any]]] = {}
        loso = None if args.no_loso else make_split(eligible.records, "loso", args.seed, evaluation.splits)
        units = [(split, model) for split in cv_splits for model in args.models]
        units += [(loso, model) for model in args.models] if loso is not None else []
        for split, model in units:  # first what no other run on this workdir is computing
            for fold in split.folds:
                with suppress(Claimed):
                    fold_predictions(store, split, fold, model, evaluation, init_weights, cache)
        for split in cv_splits:
            for model in args.models:
                folds = every_fold(store, split, model, evaluation, init_weights, cache)
                cv.setdefault(model, []).append(
                    patient_metrics(pd.concat(folds, ignore_index=True), evaluation)
                )
                pooled = pooled_out_of_fold(
                    [(frame, float(frame["threshold"].iloc[0])) for frame in folds], evaluation, split.seed
                )
                cv_per_seed.setdefault(model, []).append(
                    {"seed": split.seed, **{k: _figure(pooled["patients"][k]) for k in ("auroc", "auprc")}}
                )
        held_out = {}
        if loso is not None:
            for model in args.models:
                rows = every_fold(store, loso, model, evaluation, init_weights, cache)
                held_out[model] = pd.concat(rows)[lambda f: f["held_out"]]

        mean_cv = {m: mean_of(results) for m, results in cv.items()}
        cv_auroc = {m: r.point["auroc"] for m, r in mean_cv.items()}
        baselines = [m for m in args.models if m in BASELINES]
        best = max(baselines, key=cv_auroc.get) if baselines else None
        loso_metrics = {m: loso_by_source(rows, evaluation) for m, rows in held_out.items()}
        results = {}
        for m in args.models:
            entry: dict[str, Any] = {"cv": {**ranking(mean_cv[m]), "per_seed": cv_per_seed[m]}}
            if m in loso_metrics:
                entry["loso"] = {
                    s: ranking(r) if r is not None else "one class only" for s, r in loso_metrics[m].items()
                }
            if best is not None and m != best:
                entry["minus_best_baseline"] = {"baseline": best, "cv": paired(mean_cv[m], mean_cv[best])}
                if m in loso_metrics:
                    entry["minus_best_baseline"]["loso"] = {
                        s: paired(r, loso_metrics[best][s])
                        for s, r in loso_metrics[m].items()
                        if r is not None
                    }
            results[m] = entry
        records = eligible.records[eligible.records["mi_label"].notna()]
        out = {
            "bench": "real",
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "data": {
                "labelled_windows": len(records),
                "patients": int(records["patient_key"].nunique()),
                "mi_patients": int(records.groupby("patient_key")["mi_label"].max().sum()),
                "per_source": {
                    s: {
                        "patients": int(g["patient_key"].nunique()),
                        "mi_patients": int(g.groupby("patient_key")["mi_label"].max().sum()),
                    }
                    for s, g in records.groupby("site")
                },
                "excluded": eligible.excluded | cv_splits[0].excluded,
                "contracts": contracts,
            },
            "cv": {"folds": evaluation.splits.cv_folds, "seeds": seeds, "unit": "patient"},
            "loso": {"seed": args.seed, "unit": "patient"} if held_out else None,
            "bootstrap": {"resamples": evaluation.metrics.bootstrap_resamples, "seed": BOOTSTRAP_SEED},
            "pretraining": pretraining,
            "best_baseline": best,
            "results": results,
            "packaged_default_rule": choose_default(cv_auroc),
            "prepare_s": round(prepare_s, 1),
            "total_s": round(time.perf_counter() - start, 1),
        }
        if args.write_summary:
            write_summary(out, " ".join(["bench/real.py", *sys.argv[1:]]))
        emit(out, work / "bench_real.json")


if __name__ == "__main__":
    main()
