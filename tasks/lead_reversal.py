"""Limb-electrode reversal from the redundancy between the limb and the precordial leads.

The chest leads see the same heart vector as the limb leads (Kors & van Herpen; Hedén et al.), so how
each limb lead's mean beat resembles each chest lead's (correlations over the whole beat and within
the QRS, T and P windows) plus the limb leads' own QRS/T/P polarities tell which limb lead is which.
A swap of two limb electrodes only permutes the limb leads and flips signs (a signed permutation,
from the electrode algebra below), so each hypothesis "these electrodes were swapped" is scored by
undoing it on the features and applying one linear score (a conditional logit fitted on clean
records with every swap applied to them, coefficients in data_contracts/lead_reversal.json). A swap
is flagged when its score beats "no swap" by the profile's margin (a log-likelihood ratio). All
features are correlations or ratios within a lead, so per-lead gains do not matter; leads that are
dead or low_sqi do not vote, and P-wave features count only where a P wave leads the beats.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import minimize

from data_contracts import load_json
from data_contracts.leads import CANONICAL_LEADS
from tasks.quality_indices import IndexParams, beat_windows

ELECTRODES: tuple[str, ...] = ("RA", "LA", "LL")
LIMB: tuple[str, ...] = ("I", "II", "III", "aVR", "aVL", "aVF")
_LIMB = [CANONICAL_LEADS.index(x) for x in LIMB]
_CHEST = [CANONICAL_LEADS.index(f"V{k}") for k in range(1, 7)]
# each limb lead as a combination of the electrode potentials (RA, LA, LL): Einthoven and Goldberger
_LEAD_FIELD = np.array(
    [[-1, 1, 0], [-1, 0, 1], [0, -1, 1], [1, -0.5, -0.5], [-0.5, 1, -0.5], [-0.5, -0.5, 1]]
)
_WINDOWS = ("qrs", "t", "p")
N_FEATURES = (1 + len(_WINDOWS)) * len(LIMB) * len(_CHEST) + len(_WINDOWS) * len(LIMB)


def swap_matrix(swap: str) -> np.ndarray:
    """6 x 6 signed permutation M with observed limb leads = M @ true ones when the two electrodes
    named in `swap` ("LA/RA") trade places."""
    names = swap.split("/")
    if len(names) != 2 or len(set(names)) != 2 or set(names) - set(ELECTRODES):
        raise ValueError(f"{swap} is not a swap of two of the limb electrodes {ELECTRODES}")
    a, b = (ELECTRODES.index(e) for e in names)
    perm = np.eye(3)
    perm[[a, b]] = perm[[b, a]]
    swapped = _LEAD_FIELD @ perm
    m = np.zeros((len(LIMB), len(LIMB)))
    for k, row in enumerate(swapped):
        for j, lead in enumerate(_LEAD_FIELD):
            for sign in (1.0, -1.0):
                if np.allclose(row, sign * lead):
                    m[k, j] = sign
    return m


def leads_changed(swap: str) -> tuple[str, ...]:
    """The limb leads whose content a swap changes (the others it leaves as they were)."""
    changed = ~(swap_matrix(swap) == np.eye(len(LIMB))).all(axis=1)
    return tuple(lead for lead, c in zip(LIMB, changed, strict=True) if c)


@dataclass(frozen=True)
class ReversalModel:
    """The fitted score (data_contracts/lead_reversal.json) and the hypotheses it tells apart."""

    version: str
    swaps: tuple[str, ...]
    weights: np.ndarray  # (N_FEATURES,)
    windows_s: dict[str, tuple[float, float]]  # the beat windows it was fitted with

    @property
    def matrices(self) -> np.ndarray:
        """(1 + swaps, 6, 6): identity ("no swap") first, then each swap's signed permutation."""
        return np.stack([np.eye(len(LIMB)), *(swap_matrix(s) for s in self.swaps)])


def _windows_of(p: IndexParams) -> dict[str, tuple[float, float]]:
    return {
        "beat": tuple(p.beat_window_s),
        "qrs": tuple(p.qrs_window_s),
        "t": tuple(p.t_window_s),
        "p": tuple(p.p_window_s),
    }


def parse_model(raw: dict[str, Any], params: IndexParams) -> ReversalModel:
    """The reversal model from its JSON content; refuses one fitted with other beat windows."""
    weights = np.asarray(raw["weights"], dtype=np.float64)
    if weights.shape != (N_FEATURES,):
        raise ValueError(f"reversal model: {weights.shape[0]} weights, expected {N_FEATURES}")
    windows = {k: tuple(v) for k, v in raw["windows_s"].items()}
    if windows != _windows_of(params):
        raise ValueError(
            f"reversal model fitted with beat windows {windows}, the profile has {_windows_of(params)}"
        )
    swaps = tuple(raw["swaps"])
    for s in swaps:
        swap_matrix(s)
    return ReversalModel(str(raw["version"]), swaps, weights, windows)


def load_model(name: str, params: IndexParams) -> ReversalModel:
    """The model in data_contracts (a bare file name) or at a path."""
    path = Path(name)
    raw = load_json(name) if path.parent == Path() else json.loads(path.read_text(encoding="utf-8"))
    return parse_model(raw, params)


def _unit(x: np.ndarray) -> np.ndarray:
    """Centred along the last axis and scaled to unit rms; 0 where there is nothing to scale."""
    x = x - x.mean(-1, keepdims=True)
    rms = np.sqrt((x * x).mean(-1, keepdims=True))
    ok = np.isfinite(rms) & (rms > 0)
    return np.where(ok, x / np.where(ok, rms, 1.0), 0.0)


def _median(values: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Median along axis 1 of the finite values where `keep`; -inf where there are none."""
    v = np.sort(np.where(keep & np.isfinite(values), values, np.nan), axis=1)  # NaN sorts last
    count = (keep & np.isfinite(values)).sum(1)
    lo = np.take_along_axis(v, np.maximum(count - 1, 0)[:, None] // 2, axis=1)[:, 0]
    hi = np.take_along_axis(v, (count // 2)[:, None], axis=1)[:, 0]
    return np.where(count > 0, (lo + hi) / 2, -np.inf)


def features(
    template: np.ndarray, p_corr: np.ndarray, trusted: np.ndarray, params: IndexParams, p_wave_min_corr: float
) -> np.ndarray:
    """(n, 6, N_FEATURES / 6) per observed limb lead: its correlations with the 6 chest leads over the
    mean beat and in the QRS, T and P windows, and its QRS, T and P polarity (window mean over the
    beat rms). An untrusted lead contributes zeros; P-wave features are zero where the median P-window
    beat correlation of the trusted leads is below `p_wave_min_corr` (no P wave: AF, flutter)."""
    windows = beat_windows(params)
    template = np.asarray(template, dtype=np.float64)
    vote = trusted & np.isfinite(template).all(-1)
    z = np.where(vote[..., None], _unit(np.nan_to_num(template)), 0.0)
    p_ok = _median(p_corr, vote) >= p_wave_min_corr
    width = z.shape[-1]
    parts = [np.einsum("nkw,ncw->nkc", z[:, _LIMB], z[:, _CHEST]) / width]
    polarity = []
    for name in _WINDOWS:
        zw = np.where(vote[..., None], _unit(z[..., windows[name]]), 0.0)
        corr = np.einsum("nkw,ncw->nkc", zw[:, _LIMB], zw[:, _CHEST]) / zw.shape[-1]
        pol = z[:, _LIMB][..., windows[name]].mean(-1, keepdims=True)
        if name == "p":
            corr, pol = corr * p_ok[:, None, None], pol * p_ok[:, None, None]
        parts.append(corr)
        polarity.append(pol)
    return np.concatenate(parts + polarity, axis=-1)


def hypothesis_features(per_lead: np.ndarray, matrices: np.ndarray) -> np.ndarray:
    """(n, hypotheses, N_FEATURES): the features with each hypothesis undone (true = Mᵀ observed)."""
    return np.einsum("hjk,njf->nhkf", matrices, per_lead).reshape(len(per_lead), len(matrices), -1)


def scores(per_lead: np.ndarray, model: ReversalModel) -> np.ndarray:
    """(n, 1 + swaps) log-likelihood scores: "no swap" first, then the model's swaps."""
    return hypothesis_features(per_lead, model.matrices) @ model.weights


def detect(
    per_lead: np.ndarray, trusted: np.ndarray, model: ReversalModel, margin: float, min_leads: dict[str, int]
) -> np.ndarray:
    """(n,) index into model.swaps of the suspected swap, -1 for none: the best swap beats "no swap"
    by more than `margin`, and enough limb and chest leads voted (`min_leads["limb"|"chest"]`)."""
    s = scores(per_lead, model)
    best = np.argmax(s[:, 1:], axis=1)
    lead = np.take_along_axis(s[:, 1:], best[:, None], axis=1)[:, 0] - s[:, 0]
    enough = (trusted[:, _LIMB].sum(1) >= min_leads["limb"]) & (
        trusted[:, _CHEST].sum(1) >= min_leads["chest"]
    )
    return np.where(enough & (lead > margin), best, -1)


def apply_swap(signals: np.ndarray, swap: str) -> np.ndarray:
    """Signals (n, 12, samples) as a cart would record them with the two electrodes swapped."""
    out = np.array(signals, copy=True)
    out[:, _LIMB] = np.einsum("kj,njs->nks", swap_matrix(swap), np.asarray(signals)[:, _LIMB])
    return out


def fit_weights(per_lead: np.ndarray, swaps: tuple[str, ...], l2: float) -> np.ndarray:
    """Conditional-logit weights from clean records: each record is shown as recorded and with every
    swap applied; the score must pick the hypothesis that undoes what was applied."""
    matrices = np.stack([np.eye(len(LIMB)), *(swap_matrix(s) for s in swaps)])
    shown = [np.einsum("kj,njf->nkf", m, per_lead) for m in matrices]  # observed = M true
    feats = np.concatenate([hypothesis_features(x, matrices) for x in shown])
    truth = np.repeat(np.arange(len(matrices)), len(per_lead))
    rows = np.arange(len(truth))

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        s = feats @ w
        s -= s.max(1, keepdims=True)
        prob = np.exp(s)
        prob /= prob.sum(1, keepdims=True)
        value = -np.log(prob[rows, truth] + 1e-300).sum() + l2 * (w @ w)
        grad = -(feats[rows, truth] - np.einsum("nh,nhf->nf", prob, feats)).sum(0) + 2 * l2 * w
        return float(value), grad

    return minimize(loss, np.zeros(feats.shape[-1]), jac=True, method="L-BFGS-B").x
