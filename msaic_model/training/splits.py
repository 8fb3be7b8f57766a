"""Patient-disjoint train/validation/test splits of the labelled records.

Pure functions on a records frame (one row per record: `record_id`, `patient_key`, `site`,
`device`, `mi_label`, and `strat_fold` for that mode). Every mode assigns whole patients, so a
patient's records never cross parts; records with a null `mi_label` are excluded and counted.
The same records and seed give the same split. Fractions and held-out counts come from the
versioned `data_contracts/evaluation.json`.

Modes:
- `patient`: stratified random (by the patient's MI label) into train, val and test.
- `site` / `device`: some sites (devices) are held out entirely as test; the patients of the
  seen sites are split as in `patient`, so the test part holds an in-distribution share and a
  held-out share (`held_out` is True), whose difference is the distribution-shift figure.
- `loso`: `site` with each site held out in turn, one fold per site (`fold` column).
- `strat_fold`: PTB-XL folds, 1–8 train, 9 val, 10 test (a patient takes its highest fold).
- `cv`: patient-grouped K-fold cross-validation: patients stratified by label into `cv_folds`
  folds; in fold k the k-th fold is the test part and the validation part (early stopping, the
  threshold) is drawn, stratified, from the patients of the other folds, never from the test fold.

Every part of every fold must hold both classes (training, early stopping, the threshold and
AUROC need them); a split that cannot give them fails with an error naming the fold and part.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from data_contracts import load_contract

EVALUATION_CONFIG = "evaluation.json"  # the packaged one, in data_contracts/
PARTS: tuple[str, ...] = ("train", "val", "test")
MODES: tuple[str, ...] = ("patient", "site", "loso", "device", "strat_fold", "cv")
UNKNOWN_DEVICE = "unknown"
ASSIGNMENT_COLUMNS = ["record_id", "patient_key", "site", "device", "mi_label", "fold", "part", "held_out"]


@dataclass(frozen=True)
class SplitConfig:
    version: str
    val_fraction: float
    test_fraction: float
    held_out_sites: int
    held_out_devices: int
    strat_fold: dict[str, list[int]]
    cv_folds: int


def read_evaluation_file(path: Path | None = None) -> dict[str, Any]:
    """The evaluation config (splits, threshold rule, metrics, importance): the packaged file, or
    another file of the same layout (a site that wants another target sensitivity, say)."""
    return load_contract(EVALUATION_CONFIG, path)


def load_split_config(path: Path | None = None) -> SplitConfig:
    raw = read_evaluation_file(path)
    return SplitConfig(version=str(raw["version"]), **raw["splits"])


@dataclass(frozen=True)
class Split:
    """The assignment (ASSIGNMENT_COLUMNS, one row per record and fold) and what was left out."""

    mode: str
    seed: int
    assignment: pd.DataFrame
    excluded: dict[str, int] = field(default_factory=dict)

    def part(self, name: str, fold: int = 0) -> pd.DataFrame:
        a = self.assignment
        return a[(a["part"] == name) & (a["fold"] == fold)]

    @property
    def folds(self) -> list[int]:
        return sorted(self.assignment["fold"].unique().tolist())


def make_split(
    records: pd.DataFrame,
    mode: str,
    seed: int = 0,
    config: SplitConfig | None = None,
    held_out: list[str] | None = None,
) -> Split:
    """Split the labelled records by `mode`; `held_out` names the sites (devices) to hold out in
    `site` (`device`) mode instead of drawing them with the seed."""
    if mode not in MODES:
        raise ValueError(f"unknown split mode {mode!r}; choose one of {', '.join(MODES)}")
    config = config or load_split_config()
    labelled = labelled_records(records)
    excluded = {"mi_label_null": len(records) - len(labelled)}
    if labelled.empty:
        raise ValueError("no record with a known mi_label to split")
    rng = np.random.default_rng(seed)
    if mode == "patient":
        parts = [_random_parts(labelled, config, rng).assign(fold=0, held_out=False)]
    elif mode in ("site", "device"):
        column = "site" if mode == "site" else "device"
        count = config.held_out_sites if mode == "site" else config.held_out_devices
        chosen = held_out or _draw(labelled[column], count, rng)
        parts = [_held_out_parts(labelled, column, chosen, config, rng).assign(fold=0)]
    elif mode == "loso":
        sites = sorted(labelled["site"].unique())
        if len(sites) < 2:
            raise ValueError("leave-one-site-out needs at least two sites with labelled records")
        parts = [
            _held_out_parts(labelled, "site", [site], config, rng).assign(fold=k)
            for k, site in enumerate(sites)
        ]
    elif mode == "cv":
        parts = _cv_parts(labelled, config, rng)
    else:
        fold_parts, no_fold = _strat_fold_parts(labelled, config)
        excluded["strat_fold_null"] = no_fold
        parts = [fold_parts.assign(fold=0, held_out=False)]
    assignment = pd.concat(parts, ignore_index=True)
    assignment["fold"] = assignment["fold"].astype(int)
    _require_both_classes(assignment, mode)
    return Split(mode, seed, assignment[ASSIGNMENT_COLUMNS].reset_index(drop=True), excluded)


def _require_both_classes(assignment: pd.DataFrame, mode: str) -> None:
    """Fail, naming the fold and part, when a part lacks MI-positive or MI-negative records."""
    for (fold, part), group in assignment.groupby(["fold", "part"], sort=True):
        positives = int(group["mi_label"].sum())
        if positives == 0 or positives == len(group):
            missing = "MI-positive" if positives == 0 else "MI-negative"
            raise ValueError(
                f"split {mode}, fold {fold}: the {part} part ({len(group)} records, "
                f"{group['patient_key'].nunique()} patients) has no {missing} record; training, the "
                "validation threshold and AUROC need both classes: use another mode, seed or fewer folds"
            )
    for fold, group in assignment.groupby("fold", sort=True):
        absent = sorted(set(PARTS) - set(group["part"]))
        if absent:
            raise ValueError(f"split {mode}, fold {fold}: no patient reached the {', '.join(absent)} part")


def labelled_records(records: pd.DataFrame) -> pd.DataFrame:
    """The records with a known MI label (int 0/1), a missing device named `unknown`."""
    labelled = records[records["mi_label"].notna()]
    return labelled.assign(
        mi_label=labelled["mi_label"].astype(int), device=labelled["device"].fillna(UNKNOWN_DEVICE)
    )


def _draw(values: pd.Series, count: int, rng: np.random.Generator) -> list[str]:
    """`count` distinct values drawn with the seed, leaving at least one value for training."""
    names = sorted(values.unique())
    if len(names) <= count:
        raise ValueError(f"cannot hold out {count} of {len(names)} {values.name}s: training needs one")
    return sorted(rng.permutation(names)[:count].tolist())


def _patients(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per patient with its label (positive when any of its records is), sorted by key."""
    return frame.groupby("patient_key", sort=True)["mi_label"].max().rename("label").reset_index()


def _take(n: int, fraction: float) -> int:
    """Patients of a stratum for a part: the rounded share, at least one once a stratum has three
    patients (so small strata still reach validation and test), never all of them."""
    if fraction <= 0 or n == 0:
        return 0
    k = round(n * fraction)
    return min(max(k, 1 if n >= 3 else 0), n - 1)


def _allocate(patients: pd.DataFrame, fractions: dict[str, float], rng: np.random.Generator) -> pd.Series:
    """Patient → part, stratified by label; what no fraction takes goes to train."""
    out = pd.Series("train", index=patients["patient_key"], dtype=object)
    for _, stratum in patients.groupby("label", sort=True):
        keys = rng.permutation(stratum["patient_key"].to_numpy())
        start = 0
        for part, fraction in fractions.items():
            k = _take(len(keys), fraction)
            out[keys[start : start + k]] = part
            start += k
    return out


def _random_parts(frame: pd.DataFrame, config: SplitConfig, rng: np.random.Generator) -> pd.DataFrame:
    fractions = {"test": config.test_fraction, "val": config.val_fraction}
    part_of = _allocate(_patients(frame), fractions, rng)
    return frame.assign(part=frame["patient_key"].map(part_of).to_numpy())


def _held_out_parts(
    frame: pd.DataFrame, column: str, held: list[str], config: SplitConfig, rng: np.random.Generator
) -> pd.DataFrame:
    """Patients with any record in a held-out group are test; the rest split at random."""
    unknown = sorted(set(held) - set(frame[column]))
    if unknown:
        raise ValueError(f"held-out {column} not among the labelled records: {', '.join(unknown)}")
    in_held = frame[column].isin(held)
    held_patients = set(frame.loc[in_held, "patient_key"])
    seen = frame[~frame["patient_key"].isin(held_patients)]
    if seen.empty:
        raise ValueError(f"holding out {', '.join(held)} leaves no patient for training")
    part_of = _allocate(_patients(seen), {"test": config.test_fraction, "val": config.val_fraction}, rng)
    part = frame["patient_key"].map(part_of).fillna("test")
    return frame.assign(part=part.to_numpy(), held_out=in_held.to_numpy())


def _cv_parts(frame: pd.DataFrame, config: SplitConfig, rng: np.random.Generator) -> list[pd.DataFrame]:
    """K folds of patients, stratified by label (dealt round-robin after a seeded shuffle, so fold
    sizes and positives differ by one at most); per fold k: test = fold k, val = `val_fraction` of
    the other patients (stratified), train = the rest."""
    k = config.cv_folds
    patients = _patients(frame)
    positives = int(patients["label"].sum())
    if k < 2 or positives < k or len(patients) - positives < k:
        raise ValueError(
            f"{k}-fold cross-validation needs k >= 2 and at least k MI-positive and k MI-negative "
            f"patients; the labelled records hold {positives} and {len(patients) - positives}"
        )
    fold_of = pd.Series(0, index=patients["patient_key"])
    for _, stratum in patients.groupby("label", sort=True):
        keys = rng.permutation(stratum["patient_key"].to_numpy())
        fold_of[keys] = np.arange(keys.size) % k
    parts = []
    for fold in range(k):
        outside = patients[fold_of.to_numpy() != fold]
        part_of = _allocate(outside, {"val": config.val_fraction}, rng)
        part = frame["patient_key"].map(part_of).fillna("test")
        parts.append(frame.assign(part=part.to_numpy(), fold=fold, held_out=False))
    return parts


def _strat_fold_parts(frame: pd.DataFrame, config: SplitConfig) -> tuple[pd.DataFrame, int]:
    """PTB-XL folds by patient (its highest fold, so no record of a test patient trains)."""
    if "strat_fold" not in frame or frame["strat_fold"].isna().all():
        raise ValueError("split strat_fold needs records with a strat_fold (PTB-XL layout)")
    with_fold = frame[frame["strat_fold"].notna()]
    patient_fold = with_fold.groupby("patient_key")["strat_fold"].max().astype(int)
    fold_part = {fold: part for part, folds in config.strat_fold.items() for fold in folds}
    part = with_fold["patient_key"].map(patient_fold).map(fold_part)
    kept = with_fold.assign(part=part.to_numpy())
    return kept[kept["part"].notna()], len(frame) - int(kept["part"].notna().sum())


def subsample_parts(split: Split, records: dict[str, int], seed: int = 0) -> Split:
    """A copy of `split` whose named parts keep whole patients, drawn at random and stratified by
    label, until each holds about `records[part]` records (the small-data regime of a benchmark,
    with the other parts unchanged: the same test for every size). Parts already smaller stay."""
    rng = np.random.default_rng(seed)
    kept = []
    for (_, part), frame in split.assignment.groupby(["fold", "part"], sort=True):
        target = records.get(part)
        if target is None or target >= len(frame):
            kept.append(frame)
            continue
        patients = frame.groupby("patient_key", sort=True).agg(
            label=("mi_label", "max"), n=("mi_label", "size")
        )
        chosen = []
        for _, stratum in patients.groupby("label", sort=True):
            share = round(target * stratum["n"].sum() / len(frame))  # the stratum's records, in proportion
            order = stratum.iloc[rng.permutation(len(stratum))]
            count = np.searchsorted(order["n"].cumsum().to_numpy(), share, side="left") + 1
            chosen.extend(order.index[: min(max(count, 1), len(order))])
        kept.append(frame[frame["patient_key"].isin(chosen)])
    assignment = pd.concat(kept).sort_index().reset_index(drop=True)
    _require_both_classes(assignment, split.mode)
    return Split(split.mode, split.seed, assignment, split.excluded)
