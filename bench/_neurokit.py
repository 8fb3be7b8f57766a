"""neurokit2's rating of lead quality, the reference loop that bench/qc.py and bench/qc_real.py
set the quality gate beside: `nk.ecg_clean`, then `nk.ecg_quality(method="zhao2018")`, one lead at a
time. (Not a benchmark itself: a module that the benches share.)"""

from __future__ import annotations

import time
import warnings

import numpy as np

UNACCEPTABLE = ("Unacceptable", "Unnacceptable")  # neurokit2 has spelt the rating both ways


def zhao2018(signals: np.ndarray, fs: int) -> tuple[np.ndarray, float]:
    """(records, leads) neurokit2's rating of each lead of signals (records, leads, samples) at
    `fs` Hz, 'error' where neurokit2 raises (a flat or missing lead); and the seconds the loop took,
    the reference's speed."""
    import neurokit2 as nk

    out = np.empty(signals.shape[:2], dtype=object)
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i, rec in enumerate(signals):
            for j, lead in enumerate(rec):
                try:
                    clean = nk.ecg_clean(lead, sampling_rate=fs)
                    out[i, j] = str(nk.ecg_quality(clean, sampling_rate=fs, method="zhao2018"))
                except Exception:
                    out[i, j] = "error"
    return out, time.perf_counter() - started
