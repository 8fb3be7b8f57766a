"""The quality gate on real LUDB records (read with wfdb from the shared data, limb leads made
Einthoven-consistent) with artifacts injected into them: each artifact raises its flag on the lead it
hits, clean leads stay clean, verdicts follow the rules of the profile file, and no signal makes
`assess` raise."""

from __future__ import annotations

import copy
from dataclasses import fields
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from data_contracts import load_json
from data_contracts.leads import CANONICAL_LEADS
from data_contracts.schemas import QUALITY
from tasks.quality.gate import FLAGS, QcProfile, assess, load_profile, parse_profile, result_table
from tests.tasks.quality.quality_data import ludb as read_ludb

CLEAN_LUDB = ("2", "3", "5", "9", "12")  # sinus rhythm records the profile passes as they are
T = np.arange(5000) / 500
LEAD = {name: i for i, name in enumerate(CANONICAL_LEADS)}


@pytest.fixture(scope="module")
def profile() -> QcProfile:
    return load_profile()


@pytest.fixture(scope="module")
def ludb() -> np.ndarray:
    """(5, 12, 5000) float32 mV: real LUDB records in canonical lead order."""
    return read_ludb(CLEAN_LUDB)


def test_profile_is_versioned_and_holds_the_rules(profile: QcProfile) -> None:
    assert profile.version == "qc/8"
    assert {r.verdict for r in profile.rules} == {"limited", "reject"}
    assert set(profile.unusable) <= set(FLAGS)
    raw = copy.deepcopy(load_json("qc_profile.json"))
    raw["rules"][0]["flags"] = ["no_such_flag"]
    with pytest.raises(ValueError, match="bad rule"):
        parse_profile(raw)
    raw = copy.deepcopy(load_json("qc_profile.json"))
    raw["thresholds"]["typo_mv"] = 1.0
    with pytest.raises(ValueError, match="unknown"):
        parse_profile(raw)
    raw = copy.deepcopy(load_json("qc_profile.json"))
    raw["reversal"]["chest_reject_margin"] = raw["reversal"]["chest_margin"] - 1
    with pytest.raises(ValueError, match="below its flag margin"):
        parse_profile(raw)
    raw = copy.deepcopy(load_json("qc_profile.json"))
    raw["rules"] = [r for r in raw["rules"] if "reversal_certain" not in r["flags"]]
    with pytest.raises(ValueError, match="no rule names"):
        parse_profile(raw)


def test_clean_real_records_pass(ludb: np.ndarray, profile: QcProfile) -> None:
    res = assess(ludb, profile)
    assert res.verdict == ["pass"] * len(CLEAN_LUDB)
    assert all(not any(lead) for rec in res.flags for lead in rec)


def _inject(x: np.ndarray) -> dict[tuple[int, str], str]:
    """One artifact per record and lead, like the synthetic archive's; returns (record, lead) → flag."""
    rng = np.random.default_rng(5)
    x[0, LEAD["V2"]] = 0.0
    x[0, LEAD["V5"]] = np.nan
    x[1, LEAD["V3"], 1000:2500] = 12.0
    x[1, LEAD["V5"]] *= 4.0
    x[2, LEAD["II"]] += 0.1 * np.sin(2 * np.pi * 60 * T)
    x[2, LEAD["V1"]] += 1.0 * np.sin(2 * np.pi * 0.25 * T + 0.5)
    x[3, LEAD["V4"]] += np.where((T > 3) & (T < 6), 0.1 * np.diff(rng.standard_normal(5001)) / np.sqrt(2), 0)
    return {
        (0, "V2"): "flat",
        (0, "V5"): "missing",
        (1, "V3"): "saturation",
        (1, "V5"): "amplitude",
        (2, "II"): "powerline",
        (2, "V1"): "baseline",
        (3, "V4"): "emg",
    }


def test_injected_artifacts_raise_their_flag_on_their_lead_only(ludb: np.ndarray, profile: QcProfile) -> None:
    x = ludb.copy()
    truth = _inject(x)
    res = assess(x, profile)
    for (i, lead), flag in truth.items():
        assert flag in res.flags[i][LEAD[lead]], (i, lead, res.flags[i])
    hit = {(i, lead) for i, lead in truth}
    extra = [
        (i, name, res.flags[i][j])
        for i in range(len(x))
        for j, name in enumerate(CANONICAL_LEADS)
        if res.flags[i][j] and (i, name) not in hit
    ]
    assert extra == []
    assert res.verdict == ["limited", "limited", "limited", "limited", "pass"]
    assert res.reasons[0] == ["2 flagged leads"]


def test_limb_lead_reversal_is_flagged_and_rejected(ludb: np.ndarray, profile: QcProfile) -> None:
    """LA/RA swap: I is inverted, II and III trade places, aVR and aVL trade places."""
    swapped = ludb[:, [0, 2, 1, 4, 3, 5, *range(6, 12)]]
    swapped[:, 0] *= -1
    res = assess(swapped, profile)
    for i in range(len(swapped)):
        assert res.verdict[i] == "reject" and "cable reversal beyond doubt" in res.reasons[i]
        flagged = [x for x in CANONICAL_LEADS if "reversal" in res.flags[i][LEAD[x]]]
        assert flagged == ["I", "II", "III", "aVR", "aVL"]  # aVF does not change in an LA/RA swap


def test_a_profile_without_reject_margins_rejects_from_the_flag_margin(ludb: np.ndarray) -> None:
    """A model keeps the profile of its store: one written before qc/6 (no reject margins, its reject
    rule on `reversal`) still loads, and a swap rejects from the flag margin as it did then."""
    raw = copy.deepcopy(load_json("qc_profile.json"))
    for key in ("limb_reject_margin", "chest_reject_margin"):
        del raw["reversal"][key]
    raw["rules"] = [r for r in raw["rules"] if "reversal_certain" not in r["flags"]]
    raw["rules"].insert(0, {"verdict": "reject", "reason": "reversal", "flags": ["reversal"], "min_leads": 1})
    old = parse_profile(raw)
    swapped = ludb[:, [0, 2, 1, 4, 3, 5, *range(6, 12)]]
    swapped[:, 0] *= -1
    res = assess(swapped, old)
    assert (res.masks["reversal_certain"] == res.masks["reversal"]).all()
    assert res.verdict == ["reject"] * len(ludb)


def test_verdicts_follow_the_rules_in_the_profile(ludb: np.ndarray) -> None:
    x = ludb[:1].copy()
    x[0, LEAD["V2"]] = 0.0
    raw = copy.deepcopy(load_json("qc_profile.json"))
    assert assess(x, parse_profile(raw)).verdict == ["limited"]
    raw["rules"].insert(
        0, {"verdict": "reject", "reason": "chest lead off", "flags": ["flat"], "min_leads": 1}
    )
    res = assess(x, parse_profile(raw))
    assert res.verdict == ["reject"] and res.reasons[0][0] == "chest lead off"


def test_profile_from_a_file(tmp_path: Path, ludb: np.ndarray) -> None:
    raw = copy.deepcopy(load_json("qc_profile.json"))
    raw["version"] = "qc/99"
    raw["thresholds"]["baseline_mv"] = 0.001  # every lead wanders more than 1 µV
    path = tmp_path / "strict.json"
    path.write_text(__import__("json").dumps(raw))
    profile = load_profile(path)
    assert profile.version == "qc/99"
    assert all("baseline" in lead for lead in assess(ludb[:1], profile).flags[0])


@pytest.mark.parametrize("case", ["all_nan", "flat", "noise", "huge", "one_lead_left"])
def test_any_signal_gets_a_verdict_not_an_exception(profile: QcProfile, ludb: np.ndarray, case: str) -> None:
    rng = np.random.default_rng(1)
    x = {
        "all_nan": np.full((12, 5000), np.nan),
        "flat": np.zeros((12, 5000)),
        "noise": 0.3 * rng.standard_normal((12, 5000)),
        "huge": 1e12 * rng.standard_normal((12, 5000)),
        "one_lead_left": np.where(np.arange(12)[:, None] == 7, ludb[0], np.nan),
    }[case].astype(np.float32)
    res = assess(x[None], profile)
    assert res.verdict == ["reject"] and res.reasons[0]
    expected = {"all_nan": "missing", "flat": "flat", "one_lead_left": "missing"}.get(case)
    if expected:
        assert sum(expected in lead for lead in res.flags[0]) >= 11


def test_take_is_the_result_of_the_records_taken(ludb: np.ndarray, profile: QcProfile) -> None:
    x = ludb.copy()
    x[0, 1] = 0.0  # lead II flat in the first record: a flag to carry over
    whole = assess(x, profile)
    rows = np.array([2, 0])
    part, alone = whole.take(rows), assess(x[rows], profile)
    assert part.flags[1][1] and part.flags[1] == alone.flags[1]
    assert (part.verdict, part.reasons, part.flags) == (alone.verdict, alone.reasons, alone.flags)
    assert part.masks.keys() == alone.masks.keys()
    for name, mask in alone.masks.items():
        np.testing.assert_array_equal(part.masks[name], mask)
    for field in fields(alone.indices):
        np.testing.assert_array_equal(getattr(part.indices, field.name), getattr(alone.indices, field.name))


def test_result_table_matches_the_quality_schema(ludb: np.ndarray, profile: QcProfile) -> None:
    x = ludb[:2].copy()
    x[1, LEAD["V6"]] = np.nan
    res = assess(x, profile)
    table = result_table(["a" * 32, "b" * 32], ["ludb", "ludb"], res, profile.version)
    assert table.schema.remove(0).equals(QUALITY) and table.column_names[0] == "site"
    assert table["flags_V6"].to_pylist() == ["", "missing"]
    assert table["verdict"].to_pylist() == ["pass", "limited"]
    powerline = table["powerline"].to_pylist()
    assert len(powerline[0]) == 12 and np.isnan(powerline[1][11])
    assert table["checked_at"].type == pa.timestamp("us", tz="UTC")
