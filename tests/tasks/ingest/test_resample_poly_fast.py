"""`tasks.ingest.harmonize.resample_poly_fast` is scipy's `resample_poly` by FFT convolution or by a
polyphase matrix product: the same output on real ECGs for the ratios of ingest (1000→500,
250→500, 800→500, 257→500) and of the model input (500→100), on either axis, and on long
records."""

from __future__ import annotations

import numpy as np
import pytest
import wfdb
from scipy.signal import resample_poly

from tasks.ingest.harmonize import FFT_MAX_PRODUCT, resample_poly_fast
from tests.conftest import CINC, LUDB


@pytest.fixture(scope="module")
def real_signals() -> np.ndarray:
    """Two real 12-lead records, (2, 12, 5000) float32 mV: LUDB at 500 Hz and a CinC record."""
    ludb = wfdb.rdrecord(str(LUDB / "1")).p_signal[:5000].T
    cinc_record = sorted(CINC.rglob("*.hea"))[0].with_suffix("")
    cinc = wfdb.rdrecord(str(cinc_record)).p_signal[:5000].T
    return np.stack([ludb, cinc]).astype(np.float32)


@pytest.mark.parametrize(
    ("up", "down"), [(1, 5), (1, 2), (2, 1), (5, 1), (2, 5), (5, 8), (FFT_MAX_PRODUCT + 495, 257)]
)
@pytest.mark.parametrize("axis", [-1, 1])
def test_matches_scipy_resample_poly(real_signals: np.ndarray, up: int, down: int, axis: int) -> None:
    x = real_signals if axis == -1 else np.ascontiguousarray(real_signals.transpose(0, 2, 1))
    expected = resample_poly(x, up, down, axis=axis)
    got = resample_poly_fast(x, up, down, axis=axis)
    assert got.shape == expected.shape and got.dtype == np.float32
    scale = np.abs(expected).max()
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5 * scale)


def test_long_records(real_signals: np.ndarray) -> None:
    x = np.tile(real_signals, (1, 1, 5))  # 50 s at 800 Hz
    np.testing.assert_allclose(
        resample_poly_fast(x, 5, 8), resample_poly(x, 5, 8, axis=-1), rtol=0, atol=1e-5 * np.abs(x).max()
    )


def test_without_a_rate_change_is_a_copy(real_signals: np.ndarray) -> None:
    got = resample_poly_fast(real_signals, 1, 1)
    np.testing.assert_array_equal(got, real_signals)
    assert got is not real_signals
