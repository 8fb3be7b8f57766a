"""`tasks.scoring.explain` on a model whose log-odds are a known sum of per-lead evidence: the
territory and leads it names must be those carrying the evidence, also where the probability has
saturated at 1 (a drop in probability there is zero; a drop in log-odds is not)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from data_contracts.leads import CANONICAL_LEADS
from tasks.scoring.score import explain, load_explainer


@dataclass
class AdditiveEvidence:
    """An `Occlusion` whose log-odds are bias + the sum of the present leads' weights."""

    weights: np.ndarray  # (n, 12)
    bias: float

    @property
    def base_logit(self) -> np.ndarray:
        return self.bias + self.weights.sum(axis=1)

    @property
    def probability(self) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.base_logit))

    def masked_logit(self, rows: np.ndarray, masks: np.ndarray) -> np.ndarray:
        return self.bias + (self.weights[rows] * ~np.asarray(masks, dtype=bool)).sum(axis=1)


def _lead(name: str) -> int:
    return CANONICAL_LEADS.index(name)


def test_saturated_calls_still_name_their_territory_and_leads() -> None:
    weights = np.zeros((3, 12))
    weights[0, [_lead("II"), _lead("III"), _lead("aVF")]] = [12.0, 20.0, 16.0]  # inferior
    weights[1, [_lead("V2"), _lead("V3")]] = [0.5, 0.9]  # anterior, near the threshold
    weights[2, _lead("V5")] = 0.01  # no lead carries a drop of min_drop
    occlusion = AdditiveEvidence(weights, bias=-0.6)
    assert occlusion.probability[0] == 1.0  # saturated in float64
    explainer = load_explainer()
    got = explain(occlusion, np.arange(3), explainer)
    assert got[0] == ("inferior", ["III", "aVF", "II"])
    assert got[1] == ("anterior", ["V3", "V2"])
    assert got[2] == (None, [])
    assert explain(occlusion, np.arange(0), explainer) == []
