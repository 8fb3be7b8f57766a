"""Recording artifacts injected into the measured channels, each reported as ground truth.

Kinds and what `strength` means in the truth rows:
- `reversal`: a limb-electrode swap (detail names it, e.g. LA/RA); strength 1; one row per lead it changes.
- `flat` (lead-off: the lead is constant 0 mV) and `missing` (no samples: NaN), strength 1.
- `saturation`: an electrode offset drives the lead past the ADC rail; strength = clipped fraction.
- `amplitude`: a gain error of the lead; strength = the factor.
- `powerline` (mains sine; strength = amplitude, mV), `baseline` (wander below 0.5 Hz; strength =
  peak, mV), `emg` (high-frequency muscle noise in a burst; strength = rms in the burst, mV).
Replacing kinds (flat, missing, saturation, amplitude) hit chest channels and never share a
channel with any other kind, so each truth row describes its lead alone. Additive kinds hit any
measured channel and show up in the derived limb leads too: their rows are measured on the
12-lead artifact signal itself, so derived leads get the strength they really carry.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tasks.synth.leadfield import (
    CHEST,
    LEADS,
    MEASURED,
    REVERSALS,
    leads_changed_by,
    reversal_matrix,
    to_leads,
)
from tasks.synth.sites import SiteProfile

REPLACING: tuple[str, ...] = ("flat", "missing", "saturation", "amplitude")
ADDITIVE: tuple[str, ...] = ("powerline", "baseline", "emg")
KINDS: tuple[str, ...] = ("reversal", *REPLACING, *ADDITIVE)
_SATURATION_OVERSHOOT_MV = 10.0
_BASELINE_HZ = (0.05, 0.5)
_EMG_BURST_S = (2.0, 10.0)


@dataclass(frozen=True)
class ArtifactRow:
    lead: str
    artifact: str
    strength: float
    detail: str


def _span(t: np.ndarray, active: np.ndarray) -> str:
    idx = np.flatnonzero(active)
    return f"{t[idx[0]]:.2f}-{t[idx[-1]]:.2f} s"


def _additive(
    kind: str, rng: np.random.Generator, t: np.ndarray, profile: SiteProfile, strength: float
) -> np.ndarray:
    """One channel of an additive artifact with the given strength."""
    if kind == "powerline":
        return strength * np.sin(2 * np.pi * profile.mains_hz * t + rng.uniform(0, 2 * np.pi))
    if kind == "baseline":
        f = rng.uniform(*_BASELINE_HZ, 2)
        w = np.sin(2 * np.pi * f[:, None] * t + rng.uniform(0, 2 * np.pi, (2, 1))).T @ rng.uniform(
            0.3, 1.0, 2
        )
        return strength * w / np.abs(w).max()
    n = len(t)
    length = min(n, round(rng.uniform(*_EMG_BURST_S) * profile.fs))
    start = int(rng.integers(0, n - length + 1))
    burst = np.diff(rng.standard_normal(length + 1))
    out = np.zeros(n)
    out[start : start + length] = strength * burst / np.sqrt(np.mean(burst**2))
    return out


def _additive_rows(kind: str, leads: np.ndarray, t: np.ndarray, profile: SiteProfile) -> list[ArtifactRow]:
    """Truth rows measured on the 12-lead artifact signal of one kind."""
    rows = []
    for j, lead in enumerate(LEADS):
        x = leads[:, j]
        active = x != 0.0
        if not active.any():
            continue
        if kind == "powerline":
            strength, detail = np.sqrt(2.0 * np.mean(x**2)), f"{profile.mains_hz:g} Hz"
        elif kind == "baseline":
            strength, detail = np.abs(x).max(), ""
        else:
            strength, detail = np.sqrt(np.mean(x[active] ** 2)), _span(t, active)
        rows.append(ArtifactRow(lead, kind, float(strength), detail))
    return rows


def _replace(
    kind: str, rng: np.random.Generator, x: np.ndarray, t: np.ndarray, profile: SiteProfile, strength: float
) -> tuple[float, str]:
    """Apply a replacing artifact to channel `x` in place; returns (strength, detail)."""
    if kind == "flat":
        x[:] = 0.0
        return 1.0, ""
    if kind == "missing":
        x[:] = np.nan
        return 1.0, ""
    if kind == "amplitude":
        factor = strength if rng.random() < 0.5 else 1.0 / strength
        x *= factor
        return factor, ""
    n = len(x)
    length = max(1, round(strength * n))
    start = int(rng.integers(0, n - length + 1))
    x[start : start + length] += rng.choice((-1.0, 1.0)) * (profile.rail_mv + _SATURATION_OVERSHOOT_MV)
    active = np.zeros(n, dtype=bool)
    active[start : start + length] = True
    return length / n, _span(t, active)


def inject(
    rng: np.random.Generator, measured: np.ndarray, profile: SiteProfile, rate_scale: float = 1.0
) -> tuple[np.ndarray, list[ArtifactRow]]:
    """Draw the site's artifacts for one recording; returns the measured channels and truth rows."""
    n = measured.shape[0]
    t = np.arange(n) / profile.fs
    cfg = profile.artifacts
    occurs = {k: rng.random() < min(1.0, cfg[k]["rate"] * rate_scale) for k in KINDS}
    out = measured.copy()
    rows: list[ArtifactRow] = []
    if occurs["reversal"]:
        swap = str(rng.choice(sorted(REVERSALS)))
        m = reversal_matrix(swap)
        out = out @ m.T
        rows += [ArtifactRow(lead, "reversal", 1.0, swap) for lead in leads_changed_by(m)]

    free = list(range(out.shape[1]))
    for kind in (*REPLACING, *ADDITIVE):
        eligible = [c for c in free if kind in ADDITIVE or c in CHEST]
        if not occurs[kind] or not eligible:
            continue
        count = int(rng.integers(1, min(cfg[kind]["max_channels"], len(eligible)) + 1))
        chans = sorted(int(c) for c in rng.choice(eligible, size=count, replace=False))
        if kind in REPLACING:
            free = [c for c in free if c not in chans]
            for c in chans:
                strength, detail = _replace(
                    kind, rng, out[:, c], t, profile, rng.uniform(*cfg[kind]["strength"])
                )
                rows.append(ArtifactRow(MEASURED[c], kind, strength, detail))
        else:
            noise = np.zeros_like(out)
            for c in chans:
                noise[:, c] = _additive(kind, rng, t, profile, rng.uniform(*cfg[kind]["strength"]))
            out += noise
            rows += _additive_rows(kind, to_leads(noise), t, profile)
    return out, rows
