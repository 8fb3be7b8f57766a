"""Splits: patient-disjoint in every mode, deterministic by seed, unlabelled records excluded."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from msaic_model.training.splits import MODES, PARTS, load_split_config, make_split, subsample_parts


@pytest.fixture(scope="module")
def records() -> pd.DataFrame:
    """400 records of 150 patients at 4 sites (5 devices, some null), several records per patient,
    a few patients seen at two sites, MI in about a quarter, 20 records without a label."""
    rng = np.random.default_rng(0)
    patient = np.sort(rng.integers(0, 150, 400))
    home = rng.integers(0, 4, 150)
    site_idx = home[patient].copy()
    travellers = np.isin(patient, [3, 50, 97])
    site_idx[travellers] = rng.integers(0, 4, int(travellers.sum()))
    sites = np.array(["north", "south", "east", "west"])[site_idx]
    devices = np.where(site_idx == 0, rng.choice(["cart-1", "cart-2"], 400), sites + "-cart")
    devices = np.where(rng.random(400) < 0.05, None, devices)
    label = (rng.random(150) < 0.25)[patient].astype(float)
    label[rng.choice(400, 20, replace=False)] = np.nan
    return pd.DataFrame(
        {
            "record_id": [f"r{i:04d}" for i in range(400)],
            "patient_key": [f"p{k:03d}" for k in patient],
            "site": sites,
            "device": devices,
            "mi_label": pd.array(label, dtype="Float64").astype("Int8"),
            "strat_fold": pd.array(rng.integers(1, 11, 150)[patient], dtype="Int8"),
        }
    )


@pytest.mark.parametrize("mode", MODES)
def test_patients_never_cross_parts(records: pd.DataFrame, mode: str) -> None:
    split = make_split(records, mode, seed=5)
    a = split.assignment
    assert split.excluded["mi_label_null"] == 20
    assert a["mi_label"].notna().all() and set(a["part"]) == set(PARTS)
    for _, fold in a.groupby("fold"):
        assert fold["record_id"].is_unique
        assert (fold.groupby("patient_key")["part"].nunique() == 1).all()
        assert len(fold) == 380  # every labelled record in exactly one part of each fold
        for part in PARTS:  # both classes reach every part
            assert set(fold.loc[fold["part"] == part, "mi_label"]) == {0, 1}, (mode, part)


def test_same_seed_same_split_other_seed_other_split(records: pd.DataFrame) -> None:
    first = make_split(records, "patient", seed=1).assignment
    pd.testing.assert_frame_equal(first, make_split(records, "patient", seed=1).assignment)
    assert not first["part"].equals(make_split(records, "patient", seed=2).assignment["part"])


def test_patient_mode_fractions_and_stratification(records: pd.DataFrame) -> None:
    config = load_split_config()
    a = make_split(records, "patient", seed=3, config=config).assignment
    patients = a.groupby("patient_key").agg(part=("part", "first"), label=("mi_label", "max"))
    share = patients["part"].value_counts(normalize=True)
    assert share["test"] == pytest.approx(config.test_fraction, abs=0.03)
    assert share["val"] == pytest.approx(config.val_fraction, abs=0.03)
    prevalence = patients.groupby("part")["label"].mean()
    assert prevalence.max() - prevalence.min() < 0.05
    assert not a["held_out"].any() and (a["fold"] == 0).all()


def test_site_mode_holds_out_whole_sites_and_keeps_an_in_distribution_test(records: pd.DataFrame) -> None:
    a = make_split(records, "site", seed=0, held_out=["east"]).assignment
    assert (a.loc[a["site"] == "east", "part"] == "test").all()
    assert (a["held_out"] == (a["site"] == "east")).all()
    trained = a.loc[a["part"] != "test", "patient_key"]
    assert not set(trained) & set(a.loc[a["site"] == "east", "patient_key"])  # travellers went to test
    in_dist = a[(a["part"] == "test") & ~a["held_out"]]
    assert len(in_dist) > 20 and set(in_dist["site"]) <= {"north", "south", "west"}
    drawn = make_split(records, "site", seed=0).assignment
    assert drawn.loc[drawn["held_out"], "site"].nunique() == load_split_config().held_out_sites


def test_loso_holds_out_each_site_in_turn(records: pd.DataFrame) -> None:
    split = make_split(records, "loso", seed=0)
    assert split.folds == [0, 1, 2, 3]
    held = [
        split.assignment.loc[(split.assignment["fold"] == k) & split.assignment["held_out"], "site"]
        for k in split.folds
    ]
    assert [sorted(set(h)) for h in held] == [["east"], ["north"], ["south"], ["west"]]


def test_device_mode_treats_a_missing_device_as_its_own_group(records: pd.DataFrame) -> None:
    a = make_split(records, "device", seed=0, held_out=["cart-2"]).assignment
    assert (a.loc[a["device"] == "cart-2", "part"] == "test").all()
    assert "unknown" in set(a["device"]) and a["device"].notna().all()


def test_strat_fold_follows_ptbxl_folds(records: pd.DataFrame) -> None:
    frame = records.copy()
    frame.loc[frame.index[:7], "strat_fold"] = pd.NA
    split = make_split(frame, "strat_fold")
    a = split.assignment.merge(frame[["record_id", "strat_fold"]], on="record_id")
    patient_fold = a.groupby("patient_key")["strat_fold"].transform("max")
    expected = np.select([patient_fold <= 8, patient_fold == 9], ["train", "val"], "test")
    assert (a["part"] == expected).all()
    dropped = frame["strat_fold"].isna() & frame["mi_label"].notna()
    assert split.excluded["strat_fold_null"] == int(dropped.sum()) > 0


def test_bad_requests_fail_clearly(records: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="unknown split mode"):
        make_split(records, "random")
    with pytest.raises(ValueError, match="not among"):
        make_split(records, "site", held_out=["mars"])
    with pytest.raises(ValueError, match="strat_fold"):
        make_split(records.assign(strat_fold=pd.NA), "strat_fold")
    with pytest.raises(ValueError, match="two sites"):
        make_split(records.assign(site="north"), "loso")
    with pytest.raises(ValueError, match="no record with a known mi_label"):
        make_split(records.assign(mi_label=pd.NA), "patient")


def test_cv_tests_every_patient_once_and_validates_outside_the_test_fold(records: pd.DataFrame) -> None:
    config = load_split_config()
    split = make_split(records, "cv", seed=4, config=config)
    a = split.assignment
    assert split.folds == list(range(config.cv_folds))
    tests = a[a["part"] == "test"]
    labelled = records["mi_label"].notna()
    assert sorted(tests["record_id"]) == sorted(records.loc[labelled, "record_id"])  # each tested once
    assert (tests.groupby("patient_key")["fold"].nunique() == 1).all()
    positives = tests.groupby("fold")["mi_label"].sum()
    patients = tests.groupby("fold")["patient_key"].nunique()
    assert positives.min() > 0 and patients.max() - patients.min() <= 2  # stratified, balanced folds
    for k in split.folds:
        in_test_fold = a["patient_key"].isin(tests.loc[tests["fold"] == k, "patient_key"])
        fold = a[a["fold"] == k]
        assert (fold.loc[in_test_fold[fold.index], "part"] == "test").all()  # val never from the test fold
        val_share = (
            fold.loc[fold["part"] == "val", "patient_key"].nunique()
            / fold.loc[fold["part"] != "test", "patient_key"].nunique()
        )
        assert val_share == pytest.approx(config.val_fraction, abs=0.03)


def test_a_part_without_positives_fails_naming_it(records: pd.DataFrame) -> None:
    """Two MI-positive patients: too few for 5 folds, and too few for a validation part."""
    positive_patients = sorted(records.loc[records["mi_label"] == 1, "patient_key"].unique())
    rare = records.assign(
        mi_label=records["mi_label"].where(~records["patient_key"].isin(positive_patients[2:]), 0)
    )
    with pytest.raises(ValueError, match="at least k MI-positive"):
        make_split(rare, "cv")
    with pytest.raises(ValueError, match=r"split patient, fold 0: the (val|test) part .* has no MI-positive"):
        make_split(rare, "patient")


def test_subsample_keeps_whole_patients_both_classes_and_the_test_part(records: pd.DataFrame) -> None:
    split = make_split(records, "site", seed=0, held_out=["east"])
    small = subsample_parts(split, {"train": 60, "val": 20}, seed=1)
    a = small.assignment
    assert abs(len(small.part("train")) - 60) <= 8 and abs(len(small.part("val")) - 20) <= 8
    pd.testing.assert_frame_equal(
        small.part("test").reset_index(drop=True), split.part("test").reset_index(drop=True)
    )
    full = split.assignment.groupby("patient_key").size()
    assert (a.groupby("patient_key").size() == full[a["patient_key"].unique()]).all()  # whole patients
    for part in ("train", "val"):
        assert set(small.part(part)["mi_label"]) == {0, 1}
    assert set(a["record_id"]) <= set(split.assignment["record_id"])
