"""Lead-wise and territory permutation importance: how much the AUROC drops when the leads of a group
are shuffled across records, so that an explanation can read "consistent with an inferior territory".

For group g and repeat r, the leads of g are replaced by the same leads of other records (one
permutation π_r of the records, applied to all leads of the group together, so the group keeps its
own inter-lead structure while losing its link to the label), and the windows are drawn with a
bootstrap resample b_r (the same for the intact and the permuted predictions):

    drop_{g,r} = AUROC(y[b_r], p[b_r]) − AUROC(y[b_r], p_{g,r}[b_r])

The mean over repeats is the importance; the 2.5 and 97.5 percentiles of drop_{g,r} are its 95%
interval, which so covers both the permutation and the sampling of records.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from data_contracts.leads import CANONICAL_LEADS, TERRITORIES


def lead_groups(territories: bool = True) -> dict[str, list[int]]:
    """Each lead alone (by its name), then the territory groups, as lead indices of the stored order."""
    index = {lead: i for i, lead in enumerate(CANONICAL_LEADS)}
    groups = {lead: [i] for lead, i in index.items()}
    if territories:
        groups.update({name: [index[lead] for lead in leads] for name, leads in TERRITORIES.items()})
    return groups


def _bootstrap(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A bootstrap resample stratified by class, so that every resample holds both classes."""
    parts = [rng.choice(np.flatnonzero(labels == c), size=int((labels == c).sum())) for c in (0, 1)]
    return np.concatenate(parts)


def permutation_importance(
    predict_proba: Callable[[np.ndarray], np.ndarray],
    signals: np.ndarray,
    labels: np.ndarray,
    groups: dict[str, list[int]] | None = None,
    repeats: int = 10,
    seed: int = 0,
    bootstrap: bool = True,
) -> pd.DataFrame:
    """Importance of each lead group for `predict_proba` on windows (n, 12, T) with 0/1 labels:
    stored windows (a feature baseline measures the shuffled leads again) or a network's prepared
    input (a shuffled lead is another record's prepared lead: for median beats, its own beat).
    Returns one row per group: group, leads, auroc (intact), mean_drop, ci_low, ci_high, repeats;
    sorted by mean_drop, largest first. `groups` defaults to `lead_groups()`."""
    labels = np.asarray(labels).astype(int)
    if signals.ndim != 3 or len(signals) != len(labels):
        raise ValueError(f"signals {signals.shape} and labels {labels.shape} do not align")
    if set(np.unique(labels)) != {0, 1}:
        raise ValueError("permutation importance needs both classes among the labels")
    if repeats < 1:
        raise ValueError("repeats must be at least 1")
    groups = groups or lead_groups()
    rng = np.random.default_rng(seed)
    intact = np.asarray(predict_proba(signals), dtype=float)
    samples = [_bootstrap(labels, rng) if bootstrap else np.arange(len(labels)) for _ in range(repeats)]
    rows = []
    for name, leads in groups.items():
        drops = np.empty(repeats)
        for r, sample in enumerate(samples):
            permuted = signals.copy()
            permuted[:, leads] = signals[np.ix_(rng.permutation(len(signals)), leads)]
            p = np.asarray(predict_proba(permuted), dtype=float)
            drops[r] = roc_auc_score(labels[sample], intact[sample]) - roc_auc_score(
                labels[sample], p[sample]
            )
        rows.append(
            {
                "group": name,
                "leads": ",".join(CANONICAL_LEADS[i] for i in leads),
                "auroc": float(roc_auc_score(labels, intact)),
                "mean_drop": float(drops.mean()),
                "ci_low": float(np.percentile(drops, 2.5)),
                "ci_high": float(np.percentile(drops, 97.5)),
                "repeats": repeats,
            }
        )
    return pd.DataFrame(rows).sort_values("mean_drop", ascending=False, ignore_index=True)
