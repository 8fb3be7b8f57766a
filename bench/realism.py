"""Realism scorecard of the synthetic archive against the real recordings in ../shared/data (LUDB and
the PhysioNet/CinC 2021 sample), through the product's own ingest, quality gate and feature store.

1. Distributions: for every feature-store measurement, the Kolmogorov–Smirnov distance between the
   synthetic and the real values (one window per patient; amplitudes in mV against the CinC records
   only, since LUDB normalizes every lead to 1 mV peak to peak; intervals, axes, counts and the
   other measures against LUDB and CinC), summarized per measure and overall.
2. Single criteria: the AUROC for MI of each clinical criterion (`crit_*`) and of each measurement
   alone, on synthetic and on real records (labelled windows, one per patient): a generator that
   writes MI as the measured quantities makes single measurements far more telling than on real data.
3. Train on synthetic, test on real: each model trained on a patient split of the synthetic store
   (early stopping and nothing else on its synthetic validation part), scored on every labelled real
   window; AUROC by patient (mean probability of its windows) with a bootstrap 95 % interval, for
   LUDB and CinC apart too. A network's figure moves by several hundredths with its seed alone:
   `--tstr-repeats R` trains R times (split and model seeds seed .. seed+R-1) and reports the mean.
   The real labelled patients are split once, by patient and stratified by MI, with a fixed seed,
   into a fitting half and a report half (`real_parts`): changes to the generator are chosen with
   `--tstr-part fit` (the figures of the fitting half only, and the single criteria on it), and
   the report half, never looked at while tuning, gives the figure quoted (`--tstr-part all`
   shows fit, report and all).
4. How hard the synthetic benchmark is for the feature model: gradient boosting's held-out-site AUROC
   with `--train-records` training records (every site held out in turn, as `bench/train.py
   --split loso`, `--repeats` split draws), scored against the archive's statements (what a benchmark
   sees) and against the heart's truth, beside its patient-grouped cross-validated AUROC on the real
   records (pooled out of fold, by patient, mean over `--cv-repeats` fold draws).
Stores are built once per WORKDIR (the synthetic one from `--records` and `--seed`) and reused.
Progress lines go to stderr; one JSON object to stdout.

    .venv/bin/python bench/realism.py [--records 3000] [--models msaic logreg gbm] [--epochs N]
        [--train-records 2000] [--repeats R] [--tstr-repeats R] [--tstr-part fit|report|all]
        [--cv-repeats R] [--workdir DIR] [--seed S]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from _measure import emit, workdir

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT.parent / "shared" / "data"
SITES = 4
AMPLITUDE_UNIT = "mV"
MODELS = ("msaic", "logreg", "gbm")
# MSAIC-Net on waveforms only, by name, as in the baseline (not the product default, which
# bench/real.py chooses and which may read the feature store)
TSTR_CONFIG = {"msaic": Path("msaic")}
TSTR_PARTS = ("fit", "report", "all")
# the real patients' fit/report split: fixed for good, so that the report half stays unseen
REAL_PART_SEED = 17


def log(**fields: Any) -> None:
    print(json.dumps(fields), file=sys.stderr, flush=True)


def build_store(store: Path, archives: list[tuple[Path, str | None]]) -> Path:
    """Ingest, quality-check and measure `archives` (path, site override) into `store`, unless done."""
    from tasks.features.run import build_features
    from tasks.ingest.run import ingest_archive
    from tasks.quality.run import run_quality
    from tasks.settings import Settings

    if (store / "features").is_dir():
        return store
    shutil.rmtree(store, ignore_errors=True)
    settings = Settings(workers=2)
    for archive, site in archives:
        ingest_archive(archive, store, settings, site)
    run_quality(store, settings)
    build_features(store, settings)
    return store


def real_store(work: Path) -> Path:
    return build_store(work / "real", [(REAL / "ludb" / "data", "ludb"), (REAL / "cinc2021", None)])


def synthetic_store(work: Path, records: int, seed: int) -> tuple[Path, float]:
    """The synthetic store and the generator's records/s (0 when reused)."""
    from tasks.synth.archive import SynthConfig, write_archive
    from tasks.synth.sites import first_sites

    store, archive = work / "synthetic", work / "synthetic_archive"
    if (store / "features").is_dir():
        return store, 0.0
    shutil.rmtree(archive, ignore_errors=True)
    summary = write_archive(SynthConfig(records, first_sites(SITES), seed=seed), archive, workers=2)
    return build_store(store, [(archive, None)]), summary.records_per_s


def measured(store: Path) -> pd.DataFrame:
    """Eligible windows with their features, the first window of each patient only."""
    from data_contracts.feature_columns import CRITERIA_COLUMNS, FEATURE_COLUMNS
    from msaic_model.training.eligible import eligible_records
    from tasks import store as st

    records = eligible_records(store).records
    windows = st.read_table(store, "records", ["record_id", "window"]).to_pandas()
    features = st.read_table(store, "features", ["record_id", *FEATURE_COLUMNS, *CRITERIA_COLUMNS])
    frame = records.merge(windows, on="record_id").merge(features.to_pandas(), on="record_id")
    first = frame.sort_values(["patient_key", "window", "record_id"]).drop_duplicates("patient_key")
    return first.reset_index(drop=True)


def real_parts(store: Path) -> pd.Series:
    """patient_key -> "fit" or "report" for every labelled patient of the real store (label: the
    max over its records): within each MI class the patients, sorted by key and permuted with
    REAL_PART_SEED, go alternately to either half, the extra one of an odd class to "fit"."""
    from msaic_model.training.eligible import eligible_records
    from msaic_model.training.splits import labelled_records

    labels = labelled_records(eligible_records(store).records).groupby("patient_key")["mi_label"].max()
    rng = np.random.default_rng(REAL_PART_SEED)
    parts: dict[str, str] = {}
    for label in (0, 1):
        keys = sorted(str(k) for k in labels.index[labels == label])
        for i, key in enumerate(rng.permutation(keys)):
            parts[str(key)] = "fit" if i % 2 == 0 else "report"
    return pd.Series(parts, name="real_part")


def shown_part(frame: pd.DataFrame, parts: pd.Series, part: str) -> pd.DataFrame:
    """The rows of `frame` (with `patient_key`) whose patient is in `part` ("fit", "report" or
    "all"); rows of unlabelled patients are kept with "all" only."""
    if part == "all":
        return frame
    return frame[frame["patient_key"].astype(str).map(parts) == part]


def unit_of(column: str) -> str:
    from data_contracts.feature_columns import LEAD_MEASURES, RECORD_MEASURES

    measures = RECORD_MEASURES | LEAD_MEASURES
    return measures[column if column in measures else column.rsplit("_", 1)[0]][0]


def measure_of(column: str) -> str:
    from data_contracts.feature_columns import RECORD_MEASURES

    return column if column in RECORD_MEASURES else column.rsplit("_", 1)[0]


def distributions(synthetic: pd.DataFrame, real: pd.DataFrame) -> dict[str, Any]:
    """KS distance per column (amplitudes against CinC only), then per measure and overall."""
    from scipy import stats

    from data_contracts.feature_columns import FEATURE_COLUMNS

    cinc = real[real["site"] != "ludb"]
    columns: dict[str, dict[str, Any]] = {}
    for c in FEATURE_COLUMNS:
        reference = cinc if unit_of(c) == AMPLITUDE_UNIT else real
        a, b = synthetic[c].dropna().to_numpy(float), reference[c].dropna().to_numpy(float)
        if len(a) < 5 or len(b) < 5:
            continue
        columns[c] = {
            "ks": round(float(stats.ks_2samp(a, b).statistic), 3),
            "median_synthetic": round(float(np.median(a)), 3),
            "median_real": round(float(np.median(b)), 3),
            "iqr_synthetic": round(float(np.subtract(*np.percentile(a, [75, 25]))), 3),
            "iqr_real": round(float(np.subtract(*np.percentile(b, [75, 25]))), 3),
        }
    per_measure: dict[str, list[float]] = {}
    for c, v in columns.items():
        per_measure.setdefault(measure_of(c), []).append(v["ks"])
    worst = sorted(columns, key=lambda c: -columns[c]["ks"])[:10]
    return {
        "ks_mean": round(float(np.mean([v["ks"] for v in columns.values()])), 3),
        "ks_by_measure": {m: round(float(np.mean(v)), 3) for m, v in per_measure.items()},
        "worst": {c: columns[c] for c in worst},
        "columns": columns,
        "real_patients": {"all": len(real), "cinc_for_amplitudes": len(cinc)},
        "synthetic_patients": len(synthetic),
    }


def auroc(y: np.ndarray, x: np.ndarray) -> float | None:
    """AUROC of `x` alone for labels `y` (rows with a value); None with one class."""
    from sklearn.metrics import roc_auc_score

    known = ~np.isnan(x)
    if len(np.unique(y[known])) < 2:
        return None
    return float(roc_auc_score(y[known], x[known]))


def single_criteria(synthetic: pd.DataFrame, real: pd.DataFrame) -> dict[str, Any]:
    """AUROC of every criterion and measurement alone, synthetic against real (labelled patients)."""
    from scipy import stats

    from data_contracts.feature_columns import CRITERIA_COLUMNS, FEATURE_COLUMNS
    from data_contracts.leads import TERRITORIES

    def table(frame: pd.DataFrame, columns: list[str]) -> dict[str, float | None]:
        labelled = frame[frame["mi_label"].notna()]
        y = labelled["mi_label"].to_numpy(int)
        return {c: auroc(y, labelled[c].astype(float).to_numpy()) for c in columns}

    criteria = {"synthetic": table(synthetic, CRITERIA_COLUMNS), "real": table(real, CRITERIA_COLUMNS)}
    syn, rea = table(synthetic, FEATURE_COLUMNS), table(real, FEATURE_COLUMNS)
    both = [c for c in FEATURE_COLUMNS if syn[c] is not None and rea[c] is not None]

    def strength(v: float) -> float:
        return max(v, 1.0 - v)

    top = sorted(both, key=lambda c: -strength(syn[c]))[:10]
    territories = [f"crit_{kind}_{name}" for name in TERRITORIES for kind in ("q", "ste")]
    return {
        "criteria_by_territory": {
            c: {k: None if v[c] is None else round(v[c], 3) for k, v in criteria.items()} for c in territories
        },
        "best_measurement": {
            "synthetic": round(max(strength(syn[c]) for c in both), 3),
            "real": round(max(strength(rea[c]) for c in both), 3),
        },
        "measurements_above_0_75": {
            "synthetic": sum(strength(syn[c]) >= 0.75 for c in both),
            "real": sum(strength(rea[c]) >= 0.75 for c in both),
        },
        "spearman_synthetic_vs_real": round(
            float(stats.spearmanr([syn[c] for c in both], [rea[c] for c in both]).statistic), 3
        ),
        "mean_abs_difference": round(float(np.mean([abs(syn[c] - rea[c]) for c in both])), 3),
        "top_synthetic": {c: {"synthetic": round(syn[c], 3), "real": round(rea[c], 3)} for c in top},
        "real_labelled_patients": int(real["mi_label"].notna().sum()),
        "real_mi_patients": int(real["mi_label"].sum()),
    }


def _figure(metric: dict[str, Any]) -> dict[str, float | None]:
    return {k: None if metric[k] is None else round(metric[k], 4) for k in ("value", "low", "high")}


def _auroc(frame: pd.DataFrame, evaluation: Any, seed: int) -> dict[str, float | None]:
    """AUROC of a frame's `probability` for its `mi_label`, with its bootstrap interval."""
    from msaic_model.training.metrics import compute_metrics

    y, p = frame["mi_label"].to_numpy(int), frame["probability"].to_numpy(float)
    return _figure(compute_metrics(y, p, 0.5, evaluation.metrics, seed).to_dict()["auroc"])


def by_patient(rows: pd.DataFrame) -> pd.DataFrame:
    """A patient's probability is the mean over its windows, its label the max."""
    return rows.groupby("patient_key", sort=True).agg(
        mi_label=("mi_label", "max"), probability=("probability", "mean"), site=("site", "first")
    )


def _spread(values: list[float]) -> dict[str, Any]:
    return {
        "mean": round(float(np.mean(values)), 4),
        "sd": round(float(np.std(values, ddof=1)), 4) if len(values) > 1 else None,
        "runs": [round(v, 4) for v in values],
    }


def train_on_synthetic(
    synthetic: Path, real: Path, models: list[str], epochs: int | None, seeds: list[int], part: str
) -> dict[str, Any]:
    """Every model trained on a patient split of the synthetic store (one split and model seed per
    run), scored on the real labelled records: AUROC by patient, with its interval per run, on the
    real part(s) `part` shows (fit; report; or fit, report and all), for LUDB and CinC apart
    within them, and on the synthetic test part for comparison."""
    from msaic_model.training.eligible import eligible_records
    from msaic_model.training.evaluate import load_evaluation_config
    from msaic_model.training.run import RunSpec, fit_fold, model_arguments, predict_rows
    from msaic_model.training.splits import labelled_records, make_split

    evaluation = load_evaluation_config()
    within = real_parts(real)
    test = shown_part(labelled_records(eligible_records(real).records), within, part)
    parts = list(TSTR_PARTS) if part == "all" else [part]
    out: dict[str, Any] = {
        "real_part": part,
        "real_windows": len(test),
        "real_patients": int(test["patient_key"].nunique()),
        "real_mi_patients": int(test.groupby("patient_key")["mi_label"].max().sum()),
        "seeds": seeds,
    }
    for model in models:
        runs = []
        for seed in seeds:
            start = time.perf_counter()
            split = make_split(eligible_records(synthetic).records, "patient", seed, evaluation.splits)
            spec = RunSpec(synthetic, model, split, 0, split.excluded, evaluation, **model_arguments(
                model, TSTR_CONFIG.get(model), epochs, seed
            ))  # fmt: skip
            fitted = fit_fold(spec, f"realism-{model}")
            scored = test.assign(probability=predict_rows(real, fitted.loaded, test["record_id"].tolist()))
            patients = by_patient(scored)
            own = fitted.predictions[fitted.predictions["part"] == "test"]
            ludb = patients["site"] == "ludb"
            run: dict[str, Any] = {"seed": seed}
            for p in parts:
                chosen = shown_part(patients.reset_index(), within, p)
                run[f"real_auroc_{p}"] = _auroc(chosen, evaluation, seed)
            run |= {
                "real_auroc_ludb": _auroc(patients[ludb], evaluation, seed)["value"],
                "real_auroc_cinc": _auroc(patients[~ludb], evaluation, seed)["value"],
                "synthetic_test_auroc": _auroc(own, evaluation, seed)["value"],
                "seconds": round(time.perf_counter() - start, 1),
            }
            log(stage="train_on_synthetic", model=model, **run)
            runs.append(run)
        figures = {p: [r[f"real_auroc_{p}"]["value"] for r in runs] for p in parts}
        out[model] = {f"real_auroc_{p}": _spread(v) for p, v in figures.items()}
        out[model]["synthetic_test_auroc"] = _spread([r["synthetic_test_auroc"] for r in runs])
        out[model]["runs"] = runs
    return out


def true_labels(store: Path, archive: Path) -> pd.Series:
    """record_id -> the heart's own MI label from the archive's truth.parquet (not the reader's)."""
    from tasks import store as st

    paths = st.read_table(store, "records", ["record_id", "source_path"]).to_pandas()
    ecg_id = paths["source_path"].str.extract(r"(\d+)_hr\.hea$")[0].astype(int)
    truth = pd.read_parquet(archive / "truth.parquet", columns=["ecg_id", "mi_label"]).set_index("ecg_id")
    return pd.Series(truth["mi_label"].reindex(ecg_id).to_numpy(), index=paths["record_id"])


def synthetic_held_out(
    store: Path, archive: Path, train_records: int, repeats: int, seed: int
) -> dict[str, Any]:
    """Gradient boosting's held-out-site AUROC with `train_records` training records, every site
    held out in turn (the validation part subsampled in proportion, as bench/train.py does), against
    the archive's statements (what a benchmark scores) and against the heart's truth."""
    from msaic_model.training.eligible import eligible_records
    from msaic_model.training.evaluate import load_evaluation_config
    from msaic_model.training.run import RunSpec, fit_fold, model_arguments
    from msaic_model.training.splits import make_split, subsample_parts

    evaluation = load_evaluation_config()
    records = eligible_records(store).records
    truth = true_labels(store, archive)
    stated, true = [], []
    for s in range(seed, seed + repeats):
        split = make_split(records, "loso", s, evaluation.splits)
        a = split.assignment
        ratio = (a["part"] == "val").sum() / (a["part"] == "train").sum()
        small = subsample_parts(split, {"train": train_records, "val": round(train_records * ratio)}, s)
        for fold in small.folds:
            spec = RunSpec(store, "gbm", small, fold, small.excluded, evaluation, **model_arguments(
                "gbm", None, None, s
            ))  # fmt: skip
            p = fit_fold(spec, "realism-gbm").predictions
            held = p[(p["part"] == "test") & p["held_out"].astype(bool)]
            probability = held["probability"].to_numpy()
            stated.append(auroc(held["mi_label"].to_numpy(int), probability))
            true.append(auroc(truth.loc[held["record_id"]].to_numpy(int), probability))
    return {
        "auroc": _spread(stated),
        "auroc_against_truth": _spread(true),
        "train_records": train_records,
    }


def real_cross_validated(store: Path, repeats: int, seed: int, model: str = "gbm") -> dict[str, Any]:
    """`model`'s patient-grouped K-fold cross-validated AUROC on the real records, pooled by patient,
    for `repeats` fold draws."""
    from msaic_model.training.eligible import eligible_records
    from msaic_model.training.evaluate import load_evaluation_config, pooled_out_of_fold, validation_threshold
    from msaic_model.training.run import RunSpec, fit_fold, model_arguments
    from msaic_model.training.splits import make_split

    evaluation = load_evaluation_config()
    records = eligible_records(store).records
    values, intervals = [], []
    for s in range(seed, seed + repeats):
        split = make_split(records, "cv", s, evaluation.splits)
        folds = []
        for fold in split.folds:
            spec = RunSpec(store, model, split, fold, split.excluded, evaluation, **model_arguments(
                model, None, None, s
            ))  # fmt: skip
            p = fit_fold(spec, f"realism-cv-{model}").predictions
            folds.append((p, validation_threshold(p, evaluation)["threshold"]))
        pooled = pooled_out_of_fold(folds, evaluation, s)["patients"]["auroc"]
        values.append(pooled["value"])
        intervals.append(_figure(pooled))
    return {"auroc": _spread(values), "intervals": intervals, "folds": evaluation.splits.cv_folds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=3000, help="records in the synthetic archive")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--epochs", type=int, help="override MSAIC-Net's epochs")
    parser.add_argument("--train-records", type=int, default=2000, help="gbm training records (step 4)")
    parser.add_argument("--repeats", type=int, default=1, help="loso split draws for step 4")
    parser.add_argument(
        "--tstr-repeats",
        type=int,
        default=1,
        help="train-on-synthetic runs (split and model seeds) per model",
    )
    parser.add_argument(
        "--tstr-part",
        default="all",
        choices=TSTR_PARTS,
        help="real labelled patients the labelled figures show: the fitting half (to choose generator"
        " changes by), the report half, or all (fit, report and all)",
    )
    parser.add_argument("--cv-repeats", type=int, default=3, help="real cross-validation fold draws")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, help="keep the stores here (default: temporary)")
    args = parser.parse_args()
    os.environ.setdefault("MSAIC_PSEUDONYM_KEY", "bench")
    os.environ["OMP_NUM_THREADS"] = "1"

    import torch

    torch.set_num_threads(1)
    with workdir(args.workdir, "msaic-bench-realism-") as work:
        start = time.perf_counter()
        real = real_store(work)
        synthetic, records_per_s = synthetic_store(work, args.records, args.seed)
        log(stage="stores", seconds=round(time.perf_counter() - start, 1), synth_records_per_s=records_per_s)
        syn_frame, real_frame = measured(synthetic), measured(real)
        out: dict[str, Any] = {
            "bench": "realism",
            "cpu_count": os.cpu_count(),
            "synthetic_records": args.records,
            "seed": args.seed,
            "distributions": distributions(syn_frame, real_frame),
            "single_criteria": single_criteria(
                syn_frame, shown_part(real_frame, real_parts(real), args.tstr_part)
            ),
        }
        log(stage="distributions", ks_mean=out["distributions"]["ks_mean"])
        seeds = list(range(args.seed, args.seed + args.tstr_repeats))
        out["train_on_synthetic_test_on_real"] = train_on_synthetic(
            synthetic, real, args.models, args.epochs, seeds, args.tstr_part
        )
        held = synthetic_held_out(
            synthetic, work / "synthetic_archive", args.train_records, args.repeats, args.seed
        )
        cv = real_cross_validated(real, args.cv_repeats, args.seed)
        difference = held["auroc"]["mean"] - cv["auroc"]["mean"]
        out["gbm_difficulty"] = {
            "synthetic_held_out": held,
            "real_cross_validated": cv,
            "difference": round(difference, 4),
            "within_0_05": abs(difference) <= 0.05,
        }
        out["seconds"] = round(time.perf_counter() - start, 1)
        emit(out)


if __name__ == "__main__":
    main()
