"""Model input preparation and the streaming reader of the waveform store (on the synthetic store)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.dataset as ds
import pytest
from scipy.signal import resample_poly

from msaic_model.model.config import AugmentConfig, DataConfig, load_config, with_overrides
from msaic_model.model.data import WaveformStream, augment, crop_samples, model_samples, prepare
from tasks.features.beats import clean, median_beats
from tasks.features.measure import criteria_config
from tasks.store import read_table, signals_of

FS = 500
T = np.arange(5000) / FS


def sines(freq: float, n: int = 2) -> np.ndarray:
    return np.broadcast_to(np.sin(2 * np.pi * freq * T), (n, 12, 5000)).astype(np.float32).copy()


def test_prepare_resamples_with_anti_aliasing() -> None:
    config = load_config("msaic_rhythm")
    slow = prepare(sines(5.0), config).numpy()
    assert slow.shape == (2, 12, 1000)
    expected = np.sin(2 * np.pi * 5.0 * np.arange(1000) / 100)
    inner = slice(50, 950)  # away from the filter's edge effects
    assert np.abs(slow[0, 0, inner] - expected[inner]).max() < 0.02
    # 70 Hz is above the 50 Hz Nyquist of 100 Hz: without the anti-alias filter it folds to 30 Hz
    fast = prepare(sines(70.0), config).numpy()
    assert np.sqrt(np.mean(fast[:, :, inner] ** 2)) < 0.01


def test_prepare_highpass_removes_baseline_wander() -> None:
    config = with_overrides(load_config("msaic_rhythm"), {"data.highpass_hz": 0.5})
    wander = prepare(sines(0.1) * 2.0, config).numpy()
    ecg_band = prepare(sines(8.0), config).numpy()
    inner = slice(100, 900)
    assert np.abs(wander[:, :, inner]).max() < 0.1  # 2 mV of 0.1 Hz wander, attenuated > 20×
    assert np.sqrt(np.mean(ecg_band[:, :, inner] ** 2)) == pytest.approx(np.sqrt(0.5), rel=0.02)


def test_prepare_missing_leads_and_normalization() -> None:
    signals = sines(5.0) + 1.5  # baseline offset
    signals[0, 3] = np.nan  # a missing lead
    signals[1, 7, 100:200] = np.nan  # a gap
    centered = prepare(signals, load_config("msaic_rhythm")).numpy()
    assert np.isfinite(centered).all()
    assert np.abs(centered.mean(axis=-1)).max() < 1e-4
    assert (centered[0, 3] == 0).all()
    zscored = prepare(
        signals, with_overrides(load_config("msaic_rhythm"), {"data.normalize": "lead_zscore"})
    ).numpy()
    sd = zscored.std(axis=-1)
    assert sd[0, 3] == 0 and np.allclose(np.delete(sd.ravel(), 3), 1, atol=1e-3)
    native = prepare(signals, load_config("msaic500"))
    assert native.shape == (2, 12, 5000)
    with pytest.raises(ValueError, match="shape"):
        prepare(signals[:, :6], load_config("msaic_rhythm"))


def test_prepare_clips_corrupt_values_instead_of_overflowing() -> None:
    signals = sines(5.0)
    signals[0, 2, 2000:2100] = 3e38  # a corrupt stretch: finite, but the filter would overflow to NaN
    config = load_config("msaic_rhythm")
    x = prepare(signals, config).numpy()
    assert np.isfinite(x).all() and np.abs(x).max() <= 2 * config.data.clip_mv
    assert np.allclose(x[1], prepare(sines(5.0), config).numpy()[1])  # other windows untouched


@pytest.fixture(scope="module")
def windows(synth_store: Path) -> pd.DataFrame:
    return read_table(synth_store, "records", columns=["record_id", "mi_label", "site"]).to_pandas()


def test_eval_stream_yields_every_window_once_as_stored(synth_store: Path, windows: pd.DataFrame) -> None:
    config = with_overrides(load_config("msaic_rhythm"), {"data.read_batch": 32})
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
        list(WaveformStream(synth_store, ids, None, load_config("msaic_rhythm"), train=False))


@pytest.mark.parametrize("cache_mb", [0, 1024], ids=["streamed", "cached"])
def test_train_stream_crops_shuffles_and_repeats_by_seed(
    synth_store: Path, windows: pd.DataFrame, cache_mb: float
) -> None:
    config = with_overrides(
        load_config("msaic_rhythm"), {"data.cache_mb": cache_mb, "data.shuffle_buffer": 64}
    )
    stream = WaveformStream(
        synth_store, windows["record_id"], windows["mi_label"], config, train=True, batch_size=50
    )
    stream.set_epoch(1)
    first = list(stream)
    again = list(stream)
    stream.set_epoch(2)
    other = list(stream)
    crop = crop_samples(config)
    assert all(b.x.shape[1:] == (12, crop) for b in first)
    positions = np.concatenate([b.position.numpy() for b in first])
    assert sorted(positions.tolist()) == list(range(len(windows)))  # each window once per epoch
    assert not (positions == np.sort(positions)).all()  # shuffled
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a.x.numpy(), b.x.numpy())
    assert not np.array_equal(first[0].x.numpy(), other[0].x.numpy())


def test_balanced_sampling(synth_store: Path, windows: pd.DataFrame) -> None:
    config = with_overrides(load_config("msaic_rhythm"), {"data.balanced_sampling": True})
    labels = windows["mi_label"].to_numpy()
    assert labels.mean() < 0.4  # the synthetic archive is imbalanced
    stream = WaveformStream(
        synth_store, windows["record_id"], labels, config, train=True, windows_per_epoch=600, batch_size=100
    )
    drawn = np.concatenate([b.y.numpy() for b in stream])
    assert len(drawn) == 600
    assert 0.42 < drawn.mean() < 0.58


def test_model_samples() -> None:
    assert model_samples(load_config("msaic_rhythm")) == 1000
    assert model_samples(load_config("msaic500")) == 5000


def test_crop_samples() -> None:
    rhythm = load_config("msaic_rhythm")
    assert crop_samples(rhythm) == 250  # 2.5 s at 100 Hz
    assert crop_samples(with_overrides(rhythm, {"data.crop_s": None})) == model_samples(rhythm)
    assert crop_samples(with_overrides(rhythm, {"data.crop_s": 30.0})) == model_samples(
        rhythm
    )  # at most the window
    assert (
        crop_samples(load_config("msaic")) == model_samples(load_config("msaic")) == 110
    )  # a median beat is whole


def test_median_beat_input_agrees_with_the_feature_store_beats(real_store: Path) -> None:
    """On real LUDB windows, the 100 Hz median beat of `median_beat` input has its R fiducial where
    the window says (beat_pre_s into the beat) and matches the feature store's own 500 Hz median
    beat of the same record, resampled, lead by lead."""
    config = load_config("msaic")
    assert config.data.input == "median_beat"
    stored = read_table(real_store, "waveforms", filter=ds.field("site") == "ludb").sort_by("record_id")[:8]
    signals = signals_of(stored["signal"])
    x = prepare(signals, config).numpy()
    assert x.shape == (8, 12, model_samples(config)) == (8, 12, 110)
    signal_cfg = criteria_config()["signal"]
    pre = round(signal_cfg["beat_pre_s"] * config.data.fs)
    for window, beat in zip(signals, x, strict=True):
        velocity = np.abs(np.diff(beat, axis=1)).sum(axis=0)
        assert abs(int(np.argmax(velocity)) - pre) <= 10  # the fiducial lies inside the QRS
        usable = ~np.isnan(window).all(axis=1)
        filtered, leads, _ = clean(window.astype(np.float64), usable, signal_cfg)
        reference = resample_poly(median_beats(filtered, leads, signal_cfg).median, 1, 5, axis=1)
        reference -= reference.mean(axis=1, keepdims=True)
        # at 100 Hz the fiducial is placed to the nearest 10-ms sample: compare at the best of ±1
        leads = np.flatnonzero(usable)
        by_lag = [
            [np.corrcoef(beat[k, 1:-1], np.roll(reference[k], -lag)[1:-1])[0, 1] for k in leads]
            for lag in (-1, 0, 1)
        ]
        corr = max(by_lag, key=np.median)
        assert np.median(corr) > 0.93 and min(corr) > 0.8


def test_median_beat_input_of_windows_without_beats() -> None:
    """A missing lead is a zero row and a gap does not stop the beat; a window with no usable lead,
    no beat at all, or fewer than three beats is all zero."""
    beats = np.zeros((5, 12, 5000), np.float32)
    t = np.arange(5000) / FS
    spikes = np.exp(-(((t[:, None] - (0.5 + np.arange(10))[None, :]) / 0.01) ** 2)).sum(axis=1)  # 60 bpm
    beats[0] = beats[3] = beats[4] = spikes
    beats[0, 4] = np.nan  # a missing lead
    beats[1] = np.nan  # nothing recorded
    # beats[2] flat: no beat to find
    beats[3, :, 2400:2700] = np.nan  # a 0.6-s gap on every lead
    beats[4, :, 1000:] = 0.0  # two beats only (at 0.5 and 1.5 s)
    x = prepare(beats, load_config("msaic")).numpy()
    assert np.isfinite(x).all()
    assert (x[0, 4] == 0).all() and np.abs(np.delete(x[0], 4, axis=0)).max() > 0.5
    assert (x[1:3] == 0).all() and (x[4] == 0).all()
    # the gap changes little: every lead of record 3 as record 0's (whose lead 4 is missing), and its
    # lead 4, which carries the same spikes, as its lead 0
    np.testing.assert_allclose(np.delete(x[3], 4, axis=0), np.delete(x[0], 4, axis=0), atol=0.02)
    np.testing.assert_allclose(x[3, 4], x[3, 0], atol=0.02)


def test_median_beat_input_config() -> None:
    """No crop (null by default), and a rate the beat pipeline's 40 Hz filters fit under."""
    assert DataConfig(input="median_beat").crop_s is None
    with pytest.raises(ValueError, match="crop_s must be null"):
        with_overrides(load_config("msaic"), {"data.crop_s": 2.5})
    with pytest.raises(ValueError, match="fs above 80"):
        with_overrides(load_config("msaic"), {"data.fs": 50})


def test_augment_shift_moves_each_window_within_reach() -> None:
    """A ramp shifted by k samples reads ramp - k inside, its edge sample repeated outside."""
    t = 110
    ramp = np.broadcast_to(np.arange(t, dtype=np.float32), (200, 12, t)).copy()
    cfg = AugmentConfig(scale=0.0, noise_mv=0.0, baseline_mv=0.0, shift_s=0.03)
    out = augment(ramp, cfg, fs=100, rng=np.random.default_rng(0))
    shift = ramp[:, 0, 50] - out[:, 0, 50]  # per window
    assert set(shift.tolist()) == set(range(-3, 4))  # ±3 samples at 100 Hz, every shift drawn
    assert (out == out[:, :1]).all()  # one shift per window, all leads alike
    expected = np.clip(np.arange(t)[None, :] - shift[:, None], 0, t - 1)
    np.testing.assert_array_equal(out[:, 0], expected)
    unshifted = augment(ramp, cfg.model_copy(update={"shift_s": 0.0}), 100, np.random.default_rng(0))
    np.testing.assert_array_equal(unshifted, ramp)
