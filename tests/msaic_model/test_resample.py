"""`msaic_model.data.resample` is scipy's `resample_poly` by FFT: same output on real ECGs."""

from __future__ import annotations

import numpy as np
import pytest
import wfdb
from scipy.signal import resample_poly

from msaic_model.data import resample
from tests.conftest import CINC, LUDB


@pytest.fixture(scope="module")
def real_signals() -> np.ndarray:
    """Two real 12-lead records, (2, 12, 5000) float32 mV: LUDB at 500 Hz and a CinC record."""
    ludb = wfdb.rdrecord(str(LUDB / "1")).p_signal[:5000].T
    cinc_record = sorted(CINC.rglob("*.hea"))[0].with_suffix("")
    cinc = wfdb.rdrecord(str(cinc_record)).p_signal[:5000].T
    return np.stack([ludb, cinc]).astype(np.float32)


@pytest.mark.parametrize(("up", "down"), [(1, 5), (1, 2), (2, 1), (2, 5)])
def test_resample_matches_scipy_resample_poly(real_signals: np.ndarray, up: int, down: int) -> None:
    expected = resample_poly(real_signals, up, down, axis=-1)
    got = resample(real_signals, up, down)
    assert got.shape == expected.shape and got.dtype == np.float32
    scale = np.abs(expected).max()
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5 * scale)


def test_resample_without_a_rate_change_is_a_copy(real_signals: np.ndarray) -> None:
    got = resample(real_signals, 1, 1)
    np.testing.assert_array_equal(got, real_signals)
    assert got is not real_signals
