"""Epoch length of the training loop: a small training set gets at least `min_windows_per_epoch`
windows per epoch (whole passes first), and an explicit `windows_per_epoch` wins."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from msaic_model.model.data import WaveformStream
from msaic_model.training.fit import fit
from tasks.store import read_table
from tests.msaic_model.training.test_fit import tiny


@pytest.fixture(scope="module")
def small_split(synth_store: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """About 40 training windows from three sites, validation on the fourth."""
    windows = read_table(synth_store, "records", columns=["record_id", "mi_label", "site"]).to_pandas()
    held_out = sorted(windows["site"].unique())[1]
    train = windows[windows["site"] != held_out].sample(n=40, random_state=0)
    return train, windows[windows["site"] == held_out]


def test_stream_beyond_the_set_draws_whole_passes(synth_store: Path, small_split: tuple) -> None:
    train, _ = small_split
    stream = WaveformStream(
        synth_store, train["record_id"], train["mi_label"], tiny("msaic"), train=True, windows_per_epoch=90
    )
    positions = np.concatenate([b.position.numpy() for b in stream])
    counts = np.bincount(positions, minlength=len(train))
    assert len(positions) == 90 and counts.min() == 2 and counts.max() == 3 and (counts == 3).sum() == 10


def test_epoch_floor_in_fit(synth_store: Path, small_split: tuple) -> None:
    train, val = small_split
    config = tiny(
        "msaic",
        **{
            "train.epochs": 2,
            "train.patience": 2,
            "train.min_windows_per_epoch": 64,
        },
    )
    history = fit(synth_store, train, val, config).history
    assert list(history["windows"]) == [64, 64]  # 40 windows, floor 64: 4 batches of 16 per epoch
    explicit = tiny(
        "msaic", **{"train.epochs": 1, "train.min_windows_per_epoch": 64, "train.windows_per_epoch": 32}
    )
    assert fit(synth_store, train, val, explicit).history["windows"].tolist() == [32]
