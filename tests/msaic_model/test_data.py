"""Model input preparation and the streaming reader of the waveform store (on the synthetic store)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.dataset as ds
import pytest

from msaic_model.config import load_config, with_overrides
from msaic_model.data import WaveformStream, model_samples, prepare, signals_of
from tasks.store import read_table

FS = 500
T = np.arange(5000) / FS


def sines(freq: float, n: int = 2) -> np.ndarray:
    return np.broadcast_to(np.sin(2 * np.pi * freq * T), (n, 12, 5000)).astype(np.float32).copy()


def test_prepare_resamples_with_anti_aliasing() -> None:
    config = load_config("msaic")
    slow = prepare(sines(5.0), config).numpy()
    assert slow.shape == (2, 12, 1000)
    expected = np.sin(2 * np.pi * 5.0 * np.arange(1000) / 100)
    inner = slice(50, 950)  # away from the filter's edge effects
    assert np.abs(slow[0, 0, inner] - expected[inner]).max() < 0.02
    # 70 Hz is above the 50 Hz Nyquist of 100 Hz: without the anti-alias filter it folds to 30 Hz
    fast = prepare(sines(70.0), config).numpy()
    assert np.sqrt(np.mean(fast[:, :, inner] ** 2)) < 0.01


def test_prepare_highpass_removes_baseline_wander() -> None:
    config = with_overrides(load_config("msaic"), {"data.highpass_hz": 0.5})
    wander = prepare(sines(0.1) * 2.0, config).numpy()
    ecg_band = prepare(sines(8.0), config).numpy()
    inner = slice(100, 900)
    assert np.abs(wander[:, :, inner]).max() < 0.1  # 2 mV of 0.1 Hz wander, attenuated > 20×
    assert np.sqrt(np.mean(ecg_band[:, :, inner] ** 2)) == pytest.approx(np.sqrt(0.5), rel=0.02)


def test_prepare_missing_leads_and_normalization() -> None:
    signals = sines(5.0) + 1.5  # baseline offset
    signals[0, 3] = np.nan  # a missing lead
    signals[1, 7, 100:200] = np.nan  # a gap
    centered = prepare(signals, load_config("msaic")).numpy()
    assert np.isfinite(centered).all()
    assert np.abs(centered.mean(axis=-1)).max() < 1e-4
    assert (centered[0, 3] == 0).all()
    zscored = prepare(
        signals, with_overrides(load_config("msaic"), {"data.normalize": "lead_zscore"})
    ).numpy()
    sd = zscored.std(axis=-1)
    assert sd[0, 3] == 0 and np.allclose(np.delete(sd.ravel(), 3), 1, atol=1e-3)
    native = prepare(signals, load_config("msaic500"))
    assert native.shape == (2, 12, 5000)
    with pytest.raises(ValueError, match="shape"):
        prepare(signals[:, :6], load_config("msaic"))


def test_prepare_clips_corrupt_values_instead_of_overflowing() -> None:
    signals = sines(5.0)
    signals[0, 2, 2000:2100] = 3e38  # a corrupt stretch: finite, but the filter would overflow to NaN
    config = load_config("msaic")
    x = prepare(signals, config).numpy()
    assert np.isfinite(x).all() and np.abs(x).max() <= 2 * config.data.clip_mv
    assert np.allclose(x[1], prepare(sines(5.0), config).numpy()[1])  # other windows untouched


@pytest.fixture(scope="module")
def windows(synth_store: Path) -> pd.DataFrame:
    return read_table(synth_store, "records", columns=["record_id", "mi_label", "site"]).to_pandas()


def test_eval_stream_yields_every_window_once_as_stored(synth_store: Path, windows: pd.DataFrame) -> None:
    config = with_overrides(load_config("msaic"), {"data.read_batch": 32})
    subset = windows[windows["site"] != windows["site"].iloc[0]].sample(frac=0.5, random_state=1)
    stream = WaveformStream(
        synth_store,
        subset["record_id"],
        subset["mi_label"],
        config,
        train=False,
        batch_size=20,
        sites=subset["site"],
    )
    batches = list(stream)
    positions = np.concatenate([b.position.numpy() for b in batches])
    assert sorted(positions.tolist()) == list(range(len(subset)))
    assert all(len(b.y) <= 20 for b in batches)
    labels = np.concatenate([b.y.numpy() for b in batches])
    assert (labels == subset["mi_label"].to_numpy()[positions]).all()
    # the streamed input is exactly `prepare` of the stored signal
    first = batches[0]
    ids = [subset["record_id"].iloc[p] for p in first.position[:4].tolist()]
    stored = read_table(synth_store, "waveforms", filter=ds.field("record_id").isin(ids))
    order = [stored["record_id"].to_pylist().index(i) for i in ids]
    expected = prepare(signals_of(stored["signal"])[order], config)
    np.testing.assert_array_equal(first.x[:4].numpy(), expected.numpy())


def test_eval_stream_refuses_unknown_ids(synth_store: Path, windows: pd.DataFrame) -> None:
    ids = [*windows["record_id"].head(3), "no-such-record"]
    with pytest.raises(KeyError, match="1 of 4"):
        list(WaveformStream(synth_store, ids, None, load_config("msaic"), train=False))


@pytest.mark.parametrize("cache_mb", [0, 1024], ids=["streamed", "cached"])
def test_train_stream_crops_shuffles_and_repeats_by_seed(
    synth_store: Path, windows: pd.DataFrame, cache_mb: float
) -> None:
    config = with_overrides(load_config("msaic"), {"data.cache_mb": cache_mb, "data.shuffle_buffer": 64})
    stream = WaveformStream(
        synth_store, windows["record_id"], windows["mi_label"], config, train=True, batch_size=50
    )
    stream.set_epoch(1)
    first = list(stream)
    again = list(stream)
    stream.set_epoch(2)
    other = list(stream)
    crop = round(config.data.crop_s * config.data.fs)
    assert all(b.x.shape[1:] == (12, crop) for b in first)
    positions = np.concatenate([b.position.numpy() for b in first])
    assert sorted(positions.tolist()) == list(range(len(windows)))  # each window once per epoch
    assert not (positions == np.sort(positions)).all()  # shuffled
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a.x.numpy(), b.x.numpy())
    assert not np.array_equal(first[0].x.numpy(), other[0].x.numpy())


def test_balanced_sampling(synth_store: Path, windows: pd.DataFrame) -> None:
    config = with_overrides(load_config("msaic"), {"data.balanced_sampling": True})
    labels = windows["mi_label"].to_numpy()
    assert labels.mean() < 0.4  # the synthetic archive is imbalanced
    stream = WaveformStream(
        synth_store, windows["record_id"], labels, config, train=True, windows_per_epoch=600, batch_size=100
    )
    drawn = np.concatenate([b.y.numpy() for b in stream])
    assert len(drawn) == 600
    assert 0.42 < drawn.mean() < 0.58


def test_model_samples() -> None:
    assert model_samples(load_config("msaic")) == 1000
    assert model_samples(load_config("msaic500")) == 5000
