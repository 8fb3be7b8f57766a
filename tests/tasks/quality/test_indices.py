"""Per-lead quality indices on signals with known content: each index measures what it names,
in mV, and nothing raises on signals that are not ECGs at all."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import butter, resample_poly, sosfiltfilt

from tasks.quality.gate import load_profile
from tasks.quality.indices import IndexParams, LeadIndices, beat_shifts, detect_r_peaks, measure
from tests.helpers import ecg_like
from tests.tasks.quality.quality_data import cinc

FS = 500
T = np.arange(5000) / FS


@pytest.fixture(scope="module")
def params() -> IndexParams:
    return load_profile().indices


def _record(seed: int = 0) -> np.ndarray:
    """One 12-lead 10-s record (12, 5000) of the ECG-shaped test signal at 72 bpm."""
    return ecg_like(FS, 10, seed).T.astype(np.float32)


def test_clean_record_has_beats_and_low_noise_indices(params: IndexParams) -> None:
    ix = measure(_record()[None], params)
    assert ix.beats[0] == 12  # 72 bpm over 10 s
    assert (ix.template_corr > 0.95).all() and (ix.kurtosis > 5).all()
    assert (ix.powerline < 0.005).all() and (ix.baseline < 0.1).all() and (ix.emg < 0.015).all()
    assert (ix.missing == 0).all() and (ix.saturation < 0.01).all() and (ix.still < 0.1).all()


def test_mains_wander_and_muscle_noise_are_measured_in_mv(params: IndexParams) -> None:
    rng = np.random.default_rng(3)
    x = np.stack([_record(1)] * 4)
    x[0, 1] += 0.05 * np.sin(2 * np.pi * 50 * T + 0.3)
    x[1, 2] += 0.08 * np.sin(2 * np.pi * 60 * T) + 0.02 * np.sin(2 * np.pi * 120 * T)
    x[2, 3] += 0.6 * np.sin(2 * np.pi * 0.2 * T + 1.0)
    burst = (T > 4) & (T < 7)
    x[3, 4] += np.where(burst, 0.1 * np.diff(rng.standard_normal(5001)) / np.sqrt(2), 0.0)
    ix = measure(x, params)
    assert ix.powerline[0, 1] == pytest.approx(0.05, rel=0.1)
    assert ix.powerline[1, 2] == pytest.approx(np.hypot(0.08, 0.02), rel=0.1)
    assert ix.baseline[2, 3] == pytest.approx(0.6, rel=0.2)
    assert ix.emg[3, 4] == pytest.approx(0.1, rel=0.25)
    # the other leads of the same records stay low
    others = np.ones((4, 12), dtype=bool)
    others[[0, 1, 2, 3], [1, 2, 3, 4]] = False
    assert (ix.powerline[others] < 0.005).all() and (ix.emg[others] < 0.015).all()
    assert (ix.beats == 12).all()


def test_clipped_flat_and_missing_leads(params: IndexParams) -> None:
    x = _record(2)[None].copy()
    x[0, 6, 1000:3000] = 8.0  # 40 % of V1 at the rail, one plateau
    x[0, 7] = 0.0  # V2 lead-off
    x[0, 8] = np.nan  # V3 missing
    drifting = x[0, 9] + 0.5 * np.sin(2 * np.pi * 0.2 * T)  # V4 carried to an amplifier limit
    x[0, 9] = np.minimum(drifting, np.quantile(drifting, 0.8))
    ix = measure(x, params)
    assert ix.saturation[0, 6] == pytest.approx(0.4, abs=0.03) and ix.plateaus[0, 6] == 1
    assert ix.saturation[0, 9] == pytest.approx(0.2, abs=0.05) and ix.plateaus[0, 9] >= 2  # one level
    assert ix.still[0, 7] == 1.0 and ix.rms[0, 7] == 0.0
    assert ix.missing[0, 8] == 1.0 and np.isnan(ix.powerline[0, 8]) and np.isnan(ix.template_corr[0, 8])
    assert ix.beats[0] == 12  # the damaged leads do not hide the beats of the others


def test_padded_tail_is_not_missing(params: IndexParams) -> None:
    x = _record(4)[None].copy()
    x[0, :, 4200:] = np.nan  # a window shorter than 10 s, padded by ingest
    ix = measure(x, params)
    assert (ix.missing == 0).all() and ix.beats[0] >= 9


@pytest.mark.parametrize(
    "case",
    ["all_nan", "zeros", "constant", "noise", "huge", "inf", "spikes", "one_sample_finite"],
)
def test_never_raises(params: IndexParams, case: str) -> None:
    rng = np.random.default_rng(0)
    x = {
        "all_nan": np.full((12, 5000), np.nan),
        "zeros": np.zeros((12, 5000)),
        "constant": np.full((12, 5000), 3.3),
        "noise": rng.standard_normal((12, 5000)),
        "huge": 1e30 * rng.standard_normal((12, 5000)),
        "inf": np.where(rng.random((12, 5000)) < 0.1, np.inf, rng.standard_normal((12, 5000))),
        "spikes": np.where(rng.random((12, 5000)) < 0.001, 50.0, 0.0),
        "one_sample_finite": np.where(np.arange(5000) == 17, 1.0, np.nan) * np.ones((12, 1)),
    }[case].astype(np.float32)
    ix = measure(x[None], params)
    assert isinstance(ix, LeadIndices)
    for name in ("missing", "still", "saturation", "powerline", "baseline", "emg"):
        values = getattr(ix, name)
        assert values.shape == (1, 12) and values.dtype == np.float32
        assert not np.isinf(values).any(), name


def test_batches_and_chunks_give_the_same_indices(params: IndexParams) -> None:
    x = np.stack([_record(s) for s in range(params.chunk_records + 3)])
    together = measure(x, params)
    alone = measure(x[-1:], params)
    assert np.allclose(together.powerline[-1], alone.powerline[0], atol=1e-6)
    assert np.allclose(together.template_corr[-1], alone.template_corr[0], atol=1e-6)
    assert measure(np.zeros((0, 12, 5000), np.float32), params).beats.shape == (0,)


@pytest.mark.parametrize("samples", [4999, 3333, 251])
def test_any_window_length_from_a_quarter_second(params: IndexParams, samples: int) -> None:
    x = np.random.default_rng(2).standard_normal((2, 12, samples)).astype(np.float32)
    x[1] = np.nan
    ix = measure(x, params)
    assert ix.baseline.shape == (2, 12) and np.isnan(ix.baseline[1]).all()
    with pytest.raises(ValueError, match="too short"):
        measure(x[..., :100], params)


def test_mean_beat_and_p_wave_consistency(params: IndexParams) -> None:
    """The mean beat is kept per lead; the P-window beat correlation is high where a P wave leads each
    beat and low where fibrillatory waves, not locked to the beats, fill it (atrial fibrillation)."""
    phase = (T * 1.2) % 1.0
    p_wave = 0.15 * np.exp(-(((phase - 0.15) / 0.02) ** 2))
    rng = np.random.default_rng(6)
    f_waves = 0.05 * np.sin(2 * np.pi * rng.uniform(4, 8, (8, 1)) * T + rng.uniform(0, 6.3, (8, 1))).sum(0)
    x = np.stack([_record(5) + p_wave, _record(5) + f_waves]).astype(np.float32)
    x[:, 6:] = np.nan  # the chest leads are gone: no mean beat there
    ix = measure(x, params)
    width = round(params.beat_window_s[1] * params.clean_fs) - round(
        params.beat_window_s[0] * params.clean_fs
    )
    assert ix.template.shape == (2, 12, width) and ix.template.dtype == np.float32
    r_at = -round(params.beat_window_s[0] * params.clean_fs)
    assert (np.abs(np.argmax(ix.template[:, :6], axis=-1) - r_at) <= 2).all()  # aligned on R
    assert np.isnan(ix.template[:, 6:]).all() and np.isnan(ix.p_corr[:, 6:]).all()
    assert (ix.p_corr[0, :6] > 0.9).all() and (ix.p_corr[1, :6] < 0.5).all()


def test_beat_shifts_find_each_beats_place_again(params: IndexParams) -> None:
    """On a real record (CinC, band-passed to the clean band and resampled to clean_fs), R peaks moved by
    known whole samples (up to 3, 12 ms: the energy detector's jitter) are found back: each beat's
    shift is the move, less the shift it had before, to within 1 ms, up to one shift common to all
    beats (the class mean they are aligned with moves by the mean of the moves)."""
    x = cinc(("PTB_PTBXL/HR00001",))[0].astype(np.float64)
    band = sosfiltfilt(butter(2, params.clean_band_hz, "bandpass", fs=FS, output="sos"), x, axis=-1)
    clean = resample_poly(band, params.clean_fs, FS, axis=-1)[None].astype(np.float32)
    usable, valid = np.ones((1, 12), dtype=bool), np.array([clean.shape[-1]])
    peaks = detect_r_peaks(clean, usable, valid, params)[0]
    moved = np.random.default_rng(8).integers(-3, 4, size=len(peaks))
    moved[[0, -1]] = 0  # the first and last beat, near the window's ends, are not compared
    classes = [np.zeros(len(peaks), dtype=np.int64)]
    before = beat_shifts(clean, [peaks], classes, valid, usable, params)[0]
    after = beat_shifts(clean, [peaks + moved], classes, valid, usable, params)[0]
    assert len(peaks) >= 8 and (moved != 0).sum() >= 5
    inner = slice(1, -1)
    error = (after - before)[inner] * params.clean_fs + moved[inner]
    assert np.abs(error - error.mean()).max() < 0.25, (error, moved)


def test_the_baseline_takes_each_beat_out_at_its_own_time(params: IndexParams) -> None:
    """Beats (a tall QRS-like pulse and a T wave, band-limited to the baseline band as the gate's FFT
    does) 4 ms past a sample of the 100-Hz band, their R peaks off by up to 8 ms: given each beat's
    shift, the class mean is read and drawn at the beat's own place and next to nothing stays in the
    baseline; at the nearest sample of the R peak (profiles before qc/8) tenths of a mV stay."""
    from tasks.quality.indices import _baseline

    rng = np.random.default_rng(3)
    times = (np.round((0.7 + 0.93 * np.arange(9)) * 100) + 0.4) / 100  # 4 ms past a 100-Hz sample
    t = np.arange(5000) / FS
    x = np.zeros(5000)
    for c in times:
        x += 2.5 * np.exp(-(((t - c) / 0.05) ** 2) / 2) - 0.5 * np.exp(-(((t - c - 0.3) / 0.07) ** 2) / 2)
    n_low = 5000 * params.baseline_fs // FS
    spectrum = np.fft.rfft(x)[: int(params.baseline_band_hz * 10) + 1]
    low = (np.fft.irfft(spectrum, n=n_low) * (n_low / 5000))[None, None].astype(np.float32)
    peaks = np.round(times * params.clean_fs).astype(np.int64) + rng.integers(-2, 3, len(times))
    shifts = times - peaks / params.clean_fs
    classes, valid = [np.zeros(len(peaks), dtype=np.int64)], np.array([n_low])
    aligned, _ = _baseline(low, [peaks], classes, valid, params, [shifts])
    nearest, _ = _baseline(low, [peaks], classes, valid, params)
    assert np.abs(shifts).max() > 0.006
    assert aligned[0, 0] < 0.05 and nearest[0, 0] > 0.1, (aligned, nearest)


@pytest.mark.parametrize("case", ["no beats", "one beat", "no class", "no usable lead"])
def test_beat_shifts_without_beats_to_align(params: IndexParams, case: str) -> None:
    """Where no class of two beats can be aligned, every beat keeps its R peak (shift 0)."""
    clean = np.random.default_rng(0).normal(0, 0.1, (1, 12, 2500)).astype(np.float32)
    peaks = {"no beats": [], "one beat": [1000]}.get(case, [500, 1000, 1500, 2000])
    r = np.array(peaks, dtype=np.int64)
    classes = [np.full(len(r), -2 if case == "no class" else 0, dtype=np.int64)]
    usable = np.full((1, 12), case != "no usable lead")
    out = beat_shifts(clean, [r], classes, np.array([2500]), usable, params)
    assert len(out) == 1 and out[0].shape == (len(r),) and not out[0].any()
