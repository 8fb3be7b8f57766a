"""Lead and territory permutation importance on a predictor whose lead use is known."""

from __future__ import annotations

import numpy as np
import pytest

from data_contracts.leads import CANONICAL_LEADS
from msaic_model.training.importance import TERRITORIES, lead_groups, permutation_importance

II, AVF = CANONICAL_LEADS.index("II"), CANONICAL_LEADS.index("aVF")


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    """Windows where MI raises the mean of the inferior leads II and aVF; other leads are noise."""
    rng = np.random.default_rng(3)
    labels = (rng.random(120) < 0.3).astype(int)
    signals = rng.normal(0, 1, size=(120, 12, 50)).astype(np.float32)
    signals[:, [II, AVF]] += 0.8 * labels[:, None, None]
    return signals, labels


def inferior_reader(signals: np.ndarray) -> np.ndarray:
    """A predictor that looks at II and aVF only."""
    score = signals[:, [II, AVF]].mean(axis=(1, 2))
    return 1 / (1 + np.exp(-score))


def test_used_leads_and_territory_matter_unused_do_not(data: tuple[np.ndarray, np.ndarray]) -> None:
    signals, labels = data
    table = permutation_importance(inferior_reader, signals, labels, repeats=8, seed=0).set_index("group")
    assert set(table.index) == set(CANONICAL_LEADS) | set(TERRITORIES)
    for used in ("II", "aVF", "inferior"):
        assert table.loc[used, "ci_low"] > 0.02, used
    assert table.loc["inferior", "mean_drop"] > table.loc["II", "mean_drop"]  # both inferior leads at once
    for unused in ("I", "V1", "V6", "anterior", "lateral"):
        assert table.loc[unused, ["mean_drop", "ci_low", "ci_high"]].tolist() == [0.0, 0.0, 0.0], unused
    assert table.index[0] == "inferior"  # sorted by importance
    assert table.loc["inferior", "leads"] == "II,III,aVF"
    assert (table["ci_low"] <= table["mean_drop"]).all() and (table["mean_drop"] <= table["ci_high"]).all()


def test_repeatable_by_seed_and_interval_from_repeats(data: tuple[np.ndarray, np.ndarray]) -> None:
    signals, labels = data
    groups = {"II": [II]}
    a = permutation_importance(inferior_reader, signals, labels, groups, repeats=5, seed=1)
    b = permutation_importance(inferior_reader, signals, labels, groups, repeats=5, seed=1)
    c = permutation_importance(inferior_reader, signals, labels, groups, repeats=5, seed=2)
    assert a.equals(b)
    assert a.loc[0, "mean_drop"] != c.loc[0, "mean_drop"]
    fixed = permutation_importance(
        inferior_reader, signals, labels, groups, repeats=5, seed=1, bootstrap=False
    )
    assert fixed.loc[0, "ci_low"] < fixed.loc[0, "ci_high"]  # permutations alone still vary


def test_refuses_bad_input(data: tuple[np.ndarray, np.ndarray]) -> None:
    signals, labels = data
    with pytest.raises(ValueError, match="both classes"):
        permutation_importance(inferior_reader, signals, np.zeros_like(labels))
    with pytest.raises(ValueError, match="align"):
        permutation_importance(inferior_reader, signals[:10], labels)


def test_lead_groups() -> None:
    groups = lead_groups()
    assert groups["V2"] == [CANONICAL_LEADS.index("V2")]
    assert [CANONICAL_LEADS[i] for i in groups["lateral"]] == ["I", "aVL", "V5", "V6"]
    assert len(lead_groups(territories=False)) == 12
