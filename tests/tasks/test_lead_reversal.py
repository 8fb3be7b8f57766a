"""Limb-electrode reversal on real records: LUDB (held out from the fit) with the electrodes swapped
in the test by the lead-field algebra is flagged with the right swap, records as recorded (LUDB and
CinC) are not, and flat, NaN or noise records never make the detector raise."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import wfdb

from data_contracts import load_json
from data_contracts.leads import CANONICAL_LEADS
from tasks.lead_reversal import (
    LIMB,
    N_FEATURES,
    ReversalModel,
    apply_swap,
    features,
    fit_weights,
    leads_changed,
    parse_model,
    scores,
    swap_matrix,
)
from tasks.quality import QcProfile, assess, load_profile, suspected_swaps
from tasks.synth.leadfield import DERIVE, REVERSALS, leads_changed_by, reversal_matrix
from tests.conftest import CINC, LUDB

BLOCK = tuple(str(k) for k in range(1, 31))  # LUDB 1-30, all rhythms, as they come
CINC_10S = (
    "ChapmanShaoxing_Ningbo/JS00001",
    "ChapmanShaoxing_Ningbo/JS00002",
    "G12EC/E00001",
    "G12EC/E00002",
)
CINC_10S += ("PTB_PTBXL/HR00001", "PTB_PTBXL/HR00002", "CPSC_CPSC-Extra/A0002", "CPSC_CPSC-Extra/A0003")


@pytest.fixture(scope="module")
def profile() -> QcProfile:
    return load_profile()


@pytest.fixture(scope="module")
def ludb() -> np.ndarray:
    """(30, 12, 5000) float32 mV, LUDB records 1-30 in canonical lead order."""
    return np.stack([wfdb.rdrecord(str(LUDB / name)).p_signal.T for name in BLOCK]).astype(np.float32)


def _flagged(x: np.ndarray, profile: QcProfile) -> list[frozenset[str]]:
    mask = assess(x, profile).masks["reversal"]
    return [frozenset(np.array(CANONICAL_LEADS)[row]) for row in mask]


def test_swaps_are_the_lead_field_algebra_of_the_synthetic_truth() -> None:
    """Observed limb leads = M @ true ones, the same map as the synth generator's channel swap."""
    for swap in REVERSALS:
        derived = DERIVE @ reversal_matrix(swap)  # 12 x 8: leads seen after the swap, from the channels
        assert np.allclose(derived[:6], swap_matrix(swap) @ DERIVE[:6]), swap
        assert [x.upper() for x in leads_changed(swap)] == leads_changed_by(reversal_matrix(swap))
    assert leads_changed("LA/RA") == ("I", "II", "III", "aVR", "aVL")
    with pytest.raises(ValueError, match="not a swap"):
        swap_matrix("LA/V1")


@pytest.mark.parametrize(("swap", "least"), [("LA/RA", 27), ("RA/LL", 27), ("LA/LL", 22)])
def test_swapped_real_records_are_flagged_with_the_right_swap(
    ludb: np.ndarray, profile: QcProfile, swap: str, least: int
) -> None:
    """LA/LL is the hard one (I and II trade places, III turns over): held out, about 3/4 of LUDB."""
    got = _flagged(apply_swap(ludb, swap), profile)
    right = frozenset(leads_changed(swap))
    assert sum(f == right for f in got) >= least
    assert not [f for f in got if f and f != right]  # never the wrong swap


def test_records_as_recorded_are_not_flagged(ludb: np.ndarray, profile: QcProfile) -> None:
    assert sum(bool(f) for f in _flagged(ludb, profile)) <= 1  # held-out false alarms: 3 % of LUDB
    cinc = [wfdb.rdrecord(str(CINC / name)).p_signal.T[:, :5000] for name in CINC_10S]
    assert not any(_flagged(np.stack(cinc).astype(np.float32), profile))


def test_dead_leads_do_not_vote(ludb: np.ndarray, profile: QcProfile) -> None:
    """One flat chest lead leaves the decision to the others; with three the record cannot vote."""
    swapped = apply_swap(ludb[:5], "LA/RA")
    chest = [CANONICAL_LEADS.index(f"V{k}") for k in range(1, 7)]
    one = swapped.copy()
    one[:, chest[0]] = 0.0
    three = swapped.copy()
    three[:, chest[:3]] = np.nan
    right = frozenset(leads_changed("LA/RA"))
    assert _flagged(one, profile) == _flagged(swapped, profile)
    assert sum(f == right for f in _flagged(swapped, profile)) >= 4
    assert not any(_flagged(three, profile))


@pytest.mark.parametrize("case", ["all_nan", "flat", "noise", "limb_nan", "huge"])
def test_any_signal_gets_a_decision_not_an_exception(ludb: np.ndarray, profile: QcProfile, case: str) -> None:
    rng = np.random.default_rng(3)
    x = {
        "all_nan": np.full((12, 5000), np.nan),
        "flat": np.zeros((12, 5000)),
        "noise": 0.3 * rng.standard_normal((12, 5000)),
        "limb_nan": np.where(np.arange(12)[:, None] < 6, np.nan, ludb[0]),
        "huge": 1e12 * rng.standard_normal((12, 5000)),
    }[case].astype(np.float32)
    res = assess(x[None], profile)
    assert not res.masks["reversal"].any()
    trusted = np.ones((1, 12), dtype=bool)  # even if every lead were let vote: finite, no swap
    per_lead = features(res.indices.template, res.indices.p_corr, trusted, profile.indices, 0.7)
    assert per_lead.shape == (1, len(LIMB), N_FEATURES // len(LIMB)) and np.isfinite(per_lead).all()
    assert suspected_swaps(res.indices, trusted, profile).tolist() == [-1]


def test_model_file_is_versioned_and_checked(profile: QcProfile) -> None:
    raw = load_json("lead_reversal.json")
    assert raw["version"] == profile.reversal.model.version == "reversal/1"
    assert "ludb" in raw["fitted_on"]["held_out"].lower()
    bad = copy.deepcopy(raw)
    bad["weights"] = bad["weights"][:-1]
    with pytest.raises(ValueError, match="weights"):
        parse_model(bad, profile.indices)
    bad = copy.deepcopy(raw)
    bad["windows_s"]["p"] = [-0.2, -0.1]
    with pytest.raises(ValueError, match="beat windows"):
        parse_model(bad, profile.indices)


def test_fit_learns_to_undo_the_applied_swaps(ludb: np.ndarray, profile: QcProfile) -> None:
    """The conditional logit, fitted on a few records shown with every swap, ranks the hypothesis
    that undoes each applied swap first on those records (the shipped weights come from
    tools/fit_lead_reversal.py on synthetic and CinC records)."""
    ix = assess(ludb[:12], profile).indices
    trusted = np.ones((12, 12), dtype=bool)
    per_lead = features(ix.template, ix.p_corr, trusted, profile.indices, profile.reversal.p_wave_min_corr)
    swaps = profile.reversal.model.swaps
    model = ReversalModel("test", swaps, fit_weights(per_lead, swaps, l2=1.0), {})
    for k, m in enumerate(model.matrices):
        ranked = scores(np.einsum("kj,njf->nkf", m, per_lead), model).argmax(1)
        assert (ranked == k).mean() >= 0.9, ("none", *swaps)[k]
