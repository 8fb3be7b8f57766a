"""Real 12-lead windows for the quality tests: LUDB (morphology) and CinC 2021 records read with wfdb
from the shared data, in canonical lead order, mV, 500 Hz."""

from __future__ import annotations

import numpy as np
import wfdb

from tests.conftest import CINC, LUDB

# 10-s, 500 Hz CinC records without real artifacts (the Chapman flat-lead records are elsewhere)
CINC_10S = (
    "ChapmanShaoxing_Ningbo/JS00001",
    "ChapmanShaoxing_Ningbo/JS00002",
    "G12EC/E00001",
    "G12EC/E00002",
    "PTB_PTBXL/HR00001",
    "PTB_PTBXL/HR00002",
    "CPSC_CPSC-Extra/A0002",
    "CPSC_CPSC-Extra/A0003",
)


def einthoven(x: np.ndarray) -> np.ndarray:
    """A LUDB window (12, samples) with its limb leads rescaled so that III = II - I and Goldberger's
    aVR, aVL, aVF hold again: the LUDB copy normalizes every lead to 1 mV peak-to-peak, which a
    recording never does, and the gate reads that as five wrong per-lead gains."""
    y = np.array(x, dtype=np.float64)
    (a, b), *_ = np.linalg.lstsq(np.stack([y[0], y[2]], axis=1), y[1], rcond=None)
    y[0], y[2] = a * y[0], b * y[2]
    for k, target in {3: -(y[0] + y[1]) / 2, 4: (y[0] - y[2]) / 2, 5: (y[1] + y[2]) / 2}.items():
        y[k] *= (y[k] @ target) / (y[k] @ y[k])
    return y.astype(np.float32)


def ludb(names: tuple[str, ...]) -> np.ndarray:
    """(n, 12, 5000) float32 mV: LUDB records with Einthoven-consistent limb leads."""
    return np.stack([einthoven(wfdb.rdrecord(str(LUDB / name)).p_signal.T) for name in names])


def cinc(names: tuple[str, ...] = CINC_10S) -> np.ndarray:
    """(n, 12, 5000) float32 mV: the first 10 s of CinC 2021 records, as recorded."""
    return np.stack([wfdb.rdrecord(str(CINC / name)).p_signal.T[:, :5000] for name in names]).astype(
        np.float32
    )
