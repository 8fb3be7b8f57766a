"""Small builders for real test archives (WFDB records written with wfdb.wrsamp) and the tiniest
MSAIC-Net config for tests that train many models."""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import wfdb

from data_contracts.leads import CANONICAL_LEADS


def ecg_like(fs: float, seconds: float, seed: int = 0, n_leads: int = 12) -> np.ndarray:
    """A deterministic ECG-shaped test signal (samples × leads, mV): narrow R waves at 72 bpm and
    a T wave, plus a little noise; amplitude differs by lead."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(fs * seconds)) / fs
    phase = (t * 1.2) % 1.0
    beat = 1.2 * np.exp(-(((phase - 0.3) / 0.012) ** 2)) + 0.3 * np.exp(-(((phase - 0.6) / 0.05) ** 2))
    gains = np.linspace(0.4, 1.4, n_leads)
    return beat[:, None] * gains[None, :] + 0.01 * rng.standard_normal((t.size, n_leads))


def write_record(
    directory: Path,
    name: str,
    fs: float = 500,
    seconds: float = 10,
    comments: list[str] | None = None,
    sig_name: list[str] | None = None,
    units: str = "mV",
    fmt: str = "16",
    seed: int = 0,
) -> Path:
    """A real WFDB record (header + .dat) in `directory`; returns the header path."""
    directory.mkdir(parents=True, exist_ok=True)
    names = sig_name or list(CANONICAL_LEADS)
    signal = ecg_like(fs, seconds, seed, len(names))
    if units == "uV":
        signal = signal * 1000
    gain = (200.0 if units == "mV" else 0.2) / (4 if fmt == "80" else 1)  # 8-bit samples need a lower gain
    wfdb.wrsamp(
        name,
        fs=fs,
        units=[units] * len(names),
        sig_name=names,
        p_signal=signal,
        fmt=[fmt] * len(names),
        adc_gain=[gain] * len(names),
        baseline=[0] * len(names),
        comments=comments or [],
        write_dir=str(directory),
    )
    return directory / f"{name}.hea"


def copy_ludb(folder: Path, ids: Iterable[int]) -> Path:
    """Real LUDB records (header and signal file) copied into `folder` (made if missing)."""
    from tests.conftest import LUDB

    folder.mkdir(parents=True, exist_ok=True)
    for i in ids:
        for ext in ("hea", "dat"):
            shutil.copy(LUDB / f"{i}.{ext}", folder / f"{i}.{ext}")
    return folder


def copy_store(store: Path, to: Path) -> Path:
    """A private copy of a session-wide store, for a test that writes to it."""
    shutil.copytree(store, to, ignore=shutil.ignore_patterns(".staging", "*.lock"))
    return to


# The smallest MSAIC-Net that still has every part (lead convolution, one atrous block, attention,
# projection head), trained one pass over the windows per epoch: for tests that train several models
# (folds, ranks); a test adds its epochs and learning rate.
TINIEST_MSAIC: dict[str, object] = {
    "net.lead_width": 2,
    "net.stem_width": 8,
    "net.stem_pool": 2,
    "net.blocks": [{"width": 8, "branch_width": 2, "dilations": [1, 2], "kernel_size": 5, "pool": 2}],
    "net.projection_hidden": 8,
    "net.projection_dim": 4,
    "train.min_windows_per_epoch": None,  # one pass over the training windows, not the packaged floor
    "train.batch_size": 16,
    "train.num_threads": 1,
}
