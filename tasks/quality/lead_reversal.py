"""Electrode cable reversals (limb LA/RA, LA/LL, RA/LL and any two chest cables) from the
redundancy between the leads.

All twelve leads see one heart: how each limb lead's mean beat resembles each chest lead's, how the
chest leads resemble each other (their progression across the chest), and each lead's QRS, T and P
polarity (correlations over the whole beat and in the QRS, T and P windows; Kors & van Herpen; Hedén
et al.; Batchvarov et al.) tell which lead is which. A cable swap only permutes the leads and, for
limb electrodes, flips signs (a signed permutation of the twelve leads, from the electrode algebra
below), so each hypothesis "these two cables were swapped" is scored by undoing it on the features
and applying one linear score (a conditional logit fitted on clean records with every swap applied
to them, coefficients in data_contracts/lead_reversal.json). A swap is suspected where its score
beats "no swap" by the profile's margin for its kind (a log-likelihood ratio). All features are
correlations or ratios within a lead, so per-lead gains do not matter, except the frontal-plane
features of the limb leads: each limb lead's net area and size in the QRS, T and P windows over the
rms of the six limb leads together. Einthoven's and Goldberger's identities tie the six limb leads'
scales (the gate flags a limb lead off them as `amplitude`), so these ratios are the frontal axes
of QRS, T and P. They tell an LA/LL swap, a reflection of the frontal plane about +30 degrees (I and
II trade places, III turns over: the P wave turns negative in III and larger in I than in II), from
the rightward rotation and taller inferior leads of Mason-Likar torso electrodes (P and QRS more
positive in III and aVF), which the correlations with the chest leads alone confuse with it (both
make lead II look more like V5-V6 and lead I less). Leads that are dead or low_sqi do not vote, and
P-wave features count only where a P wave leads the beats.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import minimize

from data_contracts import load_contract
from data_contracts.leads import (
    CANONICAL_LEADS,
    CHEST,
    CHEST_INDEX,
    LEAD_FIELD,
    LIMB,
    LIMB_ELECTRODES,
    LIMB_INDEX,
)
from data_contracts.leads import LIMB_SWAPS as LIMB_SWAPS  # with CHEST_SWAPS, the hypotheses
from tasks.quality.indices import IndexParams, beat_windows, masked_median

CHEST_SWAPS: tuple[str, ...] = tuple(f"{a}/{b}" for a, b in combinations(CHEST, 2))
_N = len(CANONICAL_LEADS)
# each limb lead as a combination of the electrode potentials (RA, LA, LL): Einthoven and Goldberger
_LEAD_FIELD = np.array(LEAD_FIELD)[LIMB_INDEX][:, : len(LIMB_ELECTRODES)]
_WINDOWS = ("beat", "qrs", "t", "p")
# the correlations that a swap can change: each limb lead with each chest lead, and chest pairs
_PAIRS = [(i, j) for i in LIMB_INDEX for j in CHEST_INDEX] + [(i, j) for i, j in combinations(CHEST_INDEX, 2)]
# per window (QRS, T, P) and limb lead: net area, then size (rms), over the limb leads' joint rms
_FRONTAL = 2 * (len(_WINDOWS) - 1) * len(LIMB_INDEX)
N_FEATURES = len(_WINDOWS) * len(_PAIRS) + (len(_WINDOWS) - 1) * _N + _FRONTAL


def swap_matrix(swap: str) -> np.ndarray:
    """6 x 6 signed permutation M with observed limb leads = M @ true ones when the two limb
    electrodes named in `swap` ("LA/RA") trade places."""
    names = swap.split("/")
    if len(names) != 2 or len(set(names)) != 2 or set(names) - set(LIMB_ELECTRODES):
        raise ValueError(f"{swap} is not a swap of two of the limb electrodes {LIMB_ELECTRODES}")
    a, b = (LIMB_ELECTRODES.index(e) for e in names)
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


def hypothesis_matrix(swap: str) -> np.ndarray:
    """12 x 12 signed permutation H with observed leads = H @ true ones, in the canonical lead order,
    for a limb electrode swap ("LA/RA") or a chest cable swap ("V1/V2")."""
    names = swap.split("/")
    h = np.eye(_N)
    if len(names) == 2 and names[0] != names[1] and set(names) <= set(CHEST):
        a, b = (CANONICAL_LEADS.index(x) for x in names)
        h[[a, b]] = h[[b, a]]
    else:
        h[np.ix_(LIMB_INDEX, LIMB_INDEX)] = swap_matrix(swap)
    return h


def leads_changed(swap: str) -> tuple[str, ...]:
    """The leads whose content a swap changes (the others it leaves as they were)."""
    changed = ~(hypothesis_matrix(swap) == np.eye(_N)).all(axis=1)
    return tuple(lead for lead, c in zip(CANONICAL_LEADS, changed, strict=True) if c)


def _gather(h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where each feature of the hypothesis-undone views is found in the observed views (flattened
    correlation matrices, then polarities) and its sign: true lead j is sign_j * observed lead p_j."""
    obs = np.argmax(np.abs(h), axis=0)  # true lead j sits in observed lead obs[j]
    sign = h[obs, np.arange(_N)]
    idx, sgn = [], []
    for w in range(len(_WINDOWS)):
        for i, j in _PAIRS:
            idx.append(w * _N * _N + obs[i] * _N + obs[j])
            sgn.append(sign[i] * sign[j])
    for w in range(len(_WINDOWS) - 1):
        for j in range(_N):
            idx.append(len(_WINDOWS) * _N * _N + w * _N + obs[j])
            sgn.append(sign[j])
    frontal = len(_WINDOWS) * _N * _N + (len(_WINDOWS) - 1) * _N
    for kind, w in ((k, w) for k in range(2) for w in range(len(_WINDOWS) - 1)):
        for j in LIMB_INDEX:  # a limb swap keeps the limb leads among themselves (obs[j] is a limb lead)
            block = kind * (len(_WINDOWS) - 1) + w
            idx.append(frontal + block * len(LIMB_INDEX) + LIMB_INDEX.index(obs[j]))
            sgn.append(sign[j] if kind == 0 else 1.0)
    return np.array(idx), np.array(sgn)


@dataclass(frozen=True)
class ReversalModel:
    """The fitted score (data_contracts/lead_reversal.json) and the hypotheses it tells apart."""

    version: str
    swaps: tuple[str, ...]
    weights: np.ndarray  # (N_FEATURES,)
    windows_s: dict[str, tuple[float, float]]  # the beat windows it was fitted with

    @cached_property
    def matrices(self) -> np.ndarray:
        """(1 + swaps, 12, 12): identity ("no swap") first, then each swap's signed permutation."""
        return np.stack([np.eye(_N), *(hypothesis_matrix(s) for s in self.swaps)])

    @cached_property
    def gathers(self) -> tuple[np.ndarray, np.ndarray]:
        """(1 + swaps, N_FEATURES) where each hypothesis' features lie in the views, and their signs."""
        return gathers(self.matrices)

    @cached_property
    def moved(self) -> np.ndarray:
        """(swaps, 12) the leads that each swap moves."""
        return ~(self.matrices[1:] == np.eye(_N)).all(axis=-1)


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
        hypothesis_matrix(s)
    return ReversalModel(str(raw["version"]), swaps, weights, windows)


def load_model(name: str, params: IndexParams) -> ReversalModel:
    """The model in data_contracts (a bare file name) or at a path."""
    path = Path(name)
    raw = load_contract(path.name, None if path.parent == Path() else path)
    return parse_model(raw, params)


def _unit(x: np.ndarray) -> np.ndarray:
    """Centred along the last axis and scaled to unit rms; 0 where there is nothing to scale."""
    x = x - x.mean(-1, keepdims=True)
    rms = np.sqrt((x * x).mean(-1, keepdims=True))
    ok = np.isfinite(rms) & (rms > 0)
    return np.where(ok, x / np.where(ok, rms, 1.0), 0.0)


def features(
    template: np.ndarray, p_corr: np.ndarray, trusted: np.ndarray, params: IndexParams, p_wave_min_corr: float
) -> np.ndarray:
    """(n, views) the observed views: the 12 x 12 correlations of the leads' mean beats over the whole
    beat and in the QRS, T and P windows, then each lead's QRS, T and P polarity (window mean over the
    beat rms), then the limb leads' frontal-plane areas and sizes (each limb lead's window mean from
    the isoelectric level, and its rms about its mean there, over the joint rms of the trusted limb
    leads),
    flattened. An untrusted lead contributes zeros; P-wave views are zero where the median P-window
    beat correlation of the trusted leads is below `p_wave_min_corr` (no P wave: AF)."""
    windows = beat_windows(params)
    template = np.asarray(template, dtype=np.float64)
    vote = trusted & np.isfinite(template).all(-1)
    centred = np.where(vote[..., None], np.nan_to_num(template), 0.0)
    centred = centred - centred.mean(-1, keepdims=True)
    z = np.where(vote[..., None], _unit(centred), 0.0)
    p_ok = (masked_median(p_corr, vote, -np.inf) >= p_wave_min_corr)[:, None, None]
    limb = centred[:, LIMB_INDEX]
    joint = np.sqrt((limb * limb).sum((1, 2)) / np.maximum(vote[:, LIMB_INDEX].sum(1) * limb.shape[-1], 1))
    limb = limb / np.where(joint > 0, joint, np.inf)[:, None, None]
    # areas from the isoelectric level: the PR segment (the P window's end) for QRS and T, the line
    # joining the P window's ends for P (the beat mean holds the QRS and T areas)
    p_at = np.flatnonzero(windows["p"])
    edge = max(1, len(p_at) // 8)
    before, pr = limb[..., p_at[:edge]].mean(-1), limb[..., p_at[-edge:]].mean(-1)
    ramp = np.linspace(0.0, 1.0, len(p_at))
    reference = {
        "qrs": pr[..., None],
        "t": pr[..., None],
        "p": before[..., None] + (pr - before)[..., None] * ramp,
    }
    corr = [np.einsum("niw,njw->nij", z, z) / z.shape[-1]]
    polarity, area, size = [], [], []
    for name in _WINDOWS[1:]:
        zw = np.where(vote[..., None], _unit(z[..., windows[name]]), 0.0)
        c = np.einsum("niw,njw->nij", zw, zw) / zw.shape[-1]
        pol = z[..., windows[name]].mean(-1)
        lw = limb[..., windows[name]]
        a, r = (lw - reference[name]).mean(-1), lw.std(-1)
        if name == "p":
            c, pol, a, r = c * p_ok, pol * p_ok[:, 0], a * p_ok[:, 0], r * p_ok[:, 0]
        corr.append(c)
        polarity.append(pol)
        area.append(a)
        size.append(r)
    n = len(z)
    parts = [np.stack(corr, 1), np.stack(polarity, 1), np.stack(area, 1), np.stack(size, 1)]
    return np.concatenate([v.reshape(n, -1) for v in parts], axis=1)


def gathers(matrices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(hypotheses, N_FEATURES) indices into the views and signs of each hypothesis' features."""
    pairs = [_gather(h) for h in matrices]
    return np.stack([g[0] for g in pairs]), np.stack([g[1] for g in pairs])


def hypothesis_features(views: np.ndarray, where: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """(n, hypotheses, N_FEATURES): the features with each hypothesis undone (true = Hᵀ observed),
    `where` from `gathers`."""
    idx, sgn = where
    return views[:, idx] * sgn


def scores(views: np.ndarray, model: ReversalModel) -> np.ndarray:
    """(n, 1 + swaps) log-likelihood scores: "no swap" first, then the model's swaps."""
    return hypothesis_features(views, model.gathers) @ model.weights


def detect(
    views: np.ndarray,
    trusted: np.ndarray,
    model: ReversalModel,
    margins: dict[str, float],
    min_leads: dict[str, int],
) -> tuple[np.ndarray, np.ndarray]:
    """(n,) index into model.swaps of the suspected swap, -1 for none: the best swap beats "no swap"
    by more than its kind's margin (`margins["limb"|"chest"]`), and enough limb and chest leads voted
    (`min_leads["limb"|"chest"]`); and (n,) the best swap's lead over "no swap" (its log-likelihood
    ratio, the evidence that the gate's reject margin weighs). A swap of a lead that is not trusted
    is not a hypothesis: its features are zeros, which says nothing about where its cable went."""
    s = scores(views, model)
    s[:, 1:] = np.where((model.moved[None] & ~trusted[:, None, :]).any(-1), -np.inf, s[:, 1:])
    best = np.argmax(s[:, 1:], axis=1)
    lead = np.take_along_axis(s[:, 1:], best[:, None], axis=1)[:, 0] - s[:, 0]
    enough = (trusted[:, LIMB_INDEX].sum(1) >= min_leads["limb"]) & (
        trusted[:, CHEST_INDEX].sum(1) >= min_leads["chest"]
    )
    return np.where(enough & beats_margin(best, lead, model, margins), best, -1), lead


def beats_margin(
    swap: np.ndarray, lead: np.ndarray, model: ReversalModel, margins: dict[str, float]
) -> np.ndarray:
    """(n,) bool: whether each record's swap (index into model.swaps, -1 for none) leads "no swap"
    by more than the margin of its kind, `margins["chest"]` for two chest cables, else
    `margins["limb"]`: the one comparison behind a suspected swap (`detect`'s margins) and a
    certain one (the gate's reject margins)."""
    per_swap = np.array([margins["chest" if sw in CHEST_SWAPS else "limb"] for sw in model.swaps])
    return (swap >= 0) & (lead > per_swap[swap])


def apply_swap(signals: np.ndarray, swap: str) -> np.ndarray:
    """Signals (n, 12, samples) as a cart would record them with the two cables swapped."""
    return np.einsum("kj,njs->nks", hypothesis_matrix(swap), np.asarray(signals))


def shown(template: np.ndarray, p_corr: np.ndarray, swap: str | None) -> tuple[np.ndarray, np.ndarray]:
    """Mean beats and P-window correlations as recorded with the swap applied (None: as they are)."""
    h = np.eye(_N) if swap is None else hypothesis_matrix(swap)
    return np.einsum("kj,njw->nkw", h, template), p_corr[:, np.argmax(np.abs(h), axis=1)]


def fit_weights(
    template: np.ndarray,
    p_corr: np.ndarray,
    params: IndexParams,
    p_wave_min_corr: float,
    swaps: tuple[str, ...],
    l2: float,
) -> np.ndarray:
    """Conditional-logit weights from clean records (their mean beats and P-window correlations):
    each record is shown as recorded and with every swap applied; the score must pick the hypothesis
    that undoes what was applied."""
    names = (None, *swaps)
    where = gathers(np.stack([np.eye(_N), *(hypothesis_matrix(s) for s in swaps)]))
    trusted = np.ones(template.shape[:2], dtype=bool)
    views = [features(*shown(template, p_corr, s), trusted, params, p_wave_min_corr) for s in names]
    feats = np.concatenate([hypothesis_features(v, where) for v in views]).astype(np.float32)
    truth = np.repeat(np.arange(len(names)), len(template))
    rows = np.arange(len(truth))

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        s = feats @ w.astype(np.float32)
        s -= s.max(1, keepdims=True)
        prob = np.exp(s)
        prob /= prob.sum(1, keepdims=True)
        value = -np.log(prob[rows, truth] + 1e-30).sum() + l2 * (w @ w)
        grad = -(feats[rows, truth] - np.einsum("nh,nhf->nf", prob, feats)).sum(0) + 2 * l2 * w
        return float(value), grad.astype(np.float64)

    return minimize(loss, np.zeros(feats.shape[-1]), jac=True, method="L-BFGS-B").x
