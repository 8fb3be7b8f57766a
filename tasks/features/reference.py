"""LUDB's cardiologist delineation as a reference for the median-beat delineation.

LUDB annotates every lead separately (`N.i` … `N.v6`: `(` onset, `p`/`N`/`t` peak, `)` offset).
The median beat gives one value per record and lead, so the reference is, per lead, the median over
the annotated beats of each boundary relative to the matching detected R fiducial; the record's
reference intervals use the median of the leads. Errors are in ms.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import wfdb

from data_contracts.leads import CANONICAL_LEADS
from data_contracts.schemas import FS
from tasks.features.beats import Beats
from tasks.features.delineate import Delineation

BOUNDARIES: tuple[str, ...] = ("qrs_on", "qrs_off", "t_end", "p_on")
INTERVALS: tuple[str, ...] = ("pr", "qrs", "qt")
_MATCH_S = 0.1  # an annotated QRS peak belongs to the detected beat within this distance


@dataclass(frozen=True)
class Errors:
    """Absolute errors (ms) of one record: per lead and boundary (NaN where not comparable), and of
    the record's intervals."""

    lead: dict[str, np.ndarray]  # boundary → (leads,)
    interval: dict[str, float]


def read_ludb(path: Path) -> np.ndarray:
    """A LUDB record as leads × samples in mV, in the canonical lead order."""
    record = wfdb.rdrecord(str(path))
    order = [record.sig_name.index(lead.lower()) for lead in CANONICAL_LEADS]
    return record.p_signal[:, order].T


def annotated_beats(path: Path, lead: str) -> np.ndarray:
    """The cardiologists' beats of one lead: rows of (QRS peak, qrs_on, qrs_off, t_end, p_on) in
    samples, NaN where a wave is not annotated."""
    ann = wfdb.rdann(str(path), lead.lower())
    sample, symbol = np.asarray(ann.sample, dtype=float), list(ann.symbol)
    beats = []
    for k, sym in enumerate(symbol):
        if sym != "N" or not (0 < k < len(symbol) - 1) or symbol[k - 1] != "(" or symbol[k + 1] != ")":
            continue
        t_end = sample[k + 4] if symbol[k + 2 : k + 5] == ["(", "t", ")"] else np.nan
        p_on = sample[k - 4] if k >= 4 and symbol[k - 4 : k - 1] == ["(", "p", ")"] else np.nan
        beats.append((sample[k], sample[k - 1], sample[k + 1], t_end, p_on))
    return np.array(beats).reshape(-1, 1 + len(BOUNDARIES))


def _lead_reference(path: Path, lead: str, peaks: np.ndarray) -> np.ndarray:
    """Median annotated (qrs_on, qrs_off, t_end, p_on) of one lead, in samples from the R fiducial
    of the detected beat each annotated beat belongs to."""
    beats = annotated_beats(path, lead)
    if not beats.size:
        return np.full(len(BOUNDARIES), np.nan)
    r = peaks[np.argmin(np.abs(peaks[None, :] - beats[:, :1]), axis=1)]
    matched = np.abs(r - beats[:, 0]) <= _MATCH_S * FS
    rel = beats[matched, 1:] - r[matched, None]
    with np.errstate(all="ignore"):
        return np.array([np.nanmedian(c) if np.isfinite(c).any() else np.nan for c in rel.T])


def compare(path: Path, beats: Beats, d: Delineation) -> Errors:
    """Errors of the delineation of one LUDB record (header path without extension)."""
    peaks = beats.peaks[beats.accepted]
    ref = np.array([_lead_reference(path, lead, peaks) for lead in CANONICAL_LEADS])  # leads × boundaries
    pred = (
        np.column_stack(
            [np.full(len(ref), d.qrs_on), np.full(len(ref), d.qrs_off), d.t_end, np.full(len(ref), d.p_on)]
        )
        - beats.pre
    )
    ms = 1000.0 / FS
    lead = {b: np.abs(pred[:, i] - ref[:, i]) * ms for i, b in enumerate(BOUNDARIES)}
    with np.errstate(all="ignore"):
        on, off, t_end, p_on = (
            np.nanmedian(ref[:, i]) if np.isfinite(ref[:, i]).any() else np.nan for i in range(4)
        )
    truth = {"pr": on - p_on, "qrs": off - on, "qt": t_end - on}
    got = {"pr": d.qrs_on - d.p_on, "qrs": d.qrs_off - d.qrs_on, "qt": d.t_end_global - d.qrs_on}
    return Errors(lead, {k: abs(got[k] - truth[k]) * ms for k in INTERVALS})
