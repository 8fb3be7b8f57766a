from __future__ import annotations

import numpy as np
import pytest

from data_contracts.leads import CANONICAL_LEADS, canonical_lead
from tasks.ingest.harmonize import HarmonizeError, harmonize, resample, to_canonical, to_windows
from tasks.ingest.wfdb_reader import RawRecord


def _raw(signal: np.ndarray, fs: float, names: list[str] | None = None, unit: str = "mV") -> RawRecord:
    names = names or list(CANONICAL_LEADS)
    return RawRecord(signal.astype(np.float32), names, [unit] * len(names), fs, [])


KW = dict(target_fs=500, window_s=10.0, min_duration_s=8.0, max_duration_s=600.0)


@pytest.mark.parametrize(
    ("name", "lead"), [("i", "I"), ("AVR", "aVR"), ("aVl", "aVL"), ("v1", "V1"), ("x", None)]
)
def test_lead_aliases(name: str, lead: str | None) -> None:
    assert canonical_lead(name) == lead


@pytest.mark.parametrize("fs", [100, 250, 257, 400, 1000])
def test_resample_keeps_an_in_band_sine(fs: int) -> None:
    t = np.arange(fs * 10) / fs
    x = np.sin(2 * np.pi * 7 * t)[None].astype(np.float32)
    y = resample(x, fs, 500)
    assert y.shape == (1, 5000)
    t5 = np.arange(5000) / 500
    inner = slice(250, -250)  # the FIR edges are not steady state
    assert np.max(np.abs(y[0, inner] - np.sin(2 * np.pi * 7 * t5)[inner])) < 0.02


def test_resample_removes_content_above_the_new_nyquist() -> None:
    fs = 1000
    t = np.arange(fs * 10) / fs
    x = np.sin(2 * np.pi * 400 * t)[None].astype(np.float32)  # aliases to 100 Hz without a filter
    assert np.std(resample(x, fs, 500)[:, 250:-250]) < 0.01


def test_resample_keeps_gaps_as_nan() -> None:
    x = np.ones((2, 10000), np.float32)
    x[0, 4000:4100] = np.nan
    x[1] = np.nan
    y = resample(x, 1000, 500)
    assert np.isnan(y[0, 2000:2050]).all() and not np.isnan(y[0, :1900]).any()
    assert np.isnan(y[1]).all()


def test_resample_bridges_an_infinite_sample_like_a_gap() -> None:
    """A corrupt (infinite) sample must not spread over the lead through the FFT convolution."""
    x = np.ones((1, 10000), np.float32)
    x[0, 5000] = np.inf
    y = resample(x, 1000, 500)
    assert np.isnan(y[0, 2500]) and np.isfinite(y[0, :2490]).all() and np.isfinite(y[0, 2510:]).all()


def test_windows_pad_a_long_tail_and_drop_a_short_one() -> None:
    sig = np.arange(2 * 5000 + 4500, dtype=np.float32)[None].repeat(12, 0)
    w, valid = to_windows(sig, 5000, 4000)
    assert w.shape == (3, 12, 5000) and valid == [5000, 5000, 4500]
    assert np.isnan(w[2, :, 4500:]).all() and w[1, 0, 0] == 5000
    _, valid = to_windows(sig[:, : 2 * 5000 + 100], 5000, 4000)
    assert valid == [5000, 5000]


def test_units_extra_and_missing_leads() -> None:
    sig = np.full((5000, 4), 1000.0)
    sig[::2] = -1000.0
    h = harmonize(_raw(sig, 500, ["I", "II", "vx", "V1"], unit="uV"), **KW)
    assert h.leads_dropped == ["vx"]
    assert set(h.leads_missing) == set(CANONICAL_LEADS) - {"I", "II", "V1"}
    assert np.nanmax(h.windows[0, 0]) == pytest.approx(1.0)
    assert np.isnan(h.windows[0, CANONICAL_LEADS.index("V6")]).all()


@pytest.mark.parametrize(
    ("signal", "fs", "reason"),
    [
        (np.ones((3000, 12)), 500, "too_short"),
        (np.full((5000, 12), np.nan), 500, "no_signal"),
        (np.full((5000, 12), 32.767), 500, "no_signal"),
        (np.ones((500 * 700, 12)), 500, "too_long"),
    ],
)
def test_refusals(signal: np.ndarray, fs: int, reason: str) -> None:
    with pytest.raises(HarmonizeError) as err:
        harmonize(_raw(signal, fs), **KW)
    assert err.value.reason == reason


def test_an_inverted_lead_is_turned_back_and_odd_channel_labels_are_not_stored() -> None:
    """`-aVR` (Cabrera order) is aVR times -1; a channel label that is no known kind of channel
    is listed by position, since a free-text label may carry anything."""
    x = np.linspace(-1, 1, 5000, dtype=np.float32)
    raw = RawRecord(np.stack([x, 2 * x, x], axis=1), ["-aVR", "II", "Jane Doe"], ["mV"] * 3, 500.0, [])
    out, missing, dropped = to_canonical(raw)
    np.testing.assert_array_equal(out[CANONICAL_LEADS.index("aVR")], -x)
    np.testing.assert_array_equal(out[CANONICAL_LEADS.index("II")], 2 * x)
    assert dropped == ["channel 3"] and "aVR" not in missing
