"""Every effect of the synthetic generator is present in the rendered signal: the variation between
patients, recordings and beats (electrode placement, orientation and habitus, breathing, beat noise,
atrial fibrillation), the MI-negative mimics, the infarcts that escape the ST and Q criteria, and
the reader's statements. Each check renders a record with and without the effect for the same
patients (every other draw is shared), so the difference is the effect alone."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import pytest

from tasks.features.measure import measure_record
from tasks.synth.dipole import MAX_COMPONENTS, Rhythm, beat_variation, render_vcg, rotation, sample_patient
from tasks.synth.ectopy import PREFIX, ectopy_config, with_ectopy
from tasks.synth.leadfield import DOWER, LEADS, lead_field
from tasks.synth.pathology import NONE, apply_confounder, apply_mi, confounders, scp_codes, territories
from tasks.synth.record import RecordSpec, Rendered, plan_shard, render
from tasks.synth.resources import load_json
from tasks.synth.sites import first_sites

Measure = Callable[[Rendered], np.ndarray]  # one value per lead of a rendered record
SEED = 11
FS = 500  # site_a
PIDS = (1, 2, 3, 4)
PR = (-0.08, -0.06)  # the PR segment: baseline of ST, Q, R and T levels
TP = (-0.33, -0.31)  # before the P wave: baseline of the PR segment itself


def spec(pid: int, **fields: object) -> RecordSpec:
    return RecordSpec(
        ecg_id=pid, patient_id=pid, seed=SEED, site="site_a", age=60, female=pid % 2 == 0, strat_fold=1,
        **fields,
    )  # fmt: skip


def lead(name: str) -> int:
    return LEADS.index(name)


def idx(*names: str) -> list[int]:
    return [lead(n) for n in names]


def _beats(r: Rendered, n: int) -> np.ndarray:
    t = r.r_times
    return t[(t > 0.5) & (t < n / FS - 0.8)]


def _samples(times: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    return np.rint((times[:, None] + offsets) * FS).astype(int)


def level(r: Rendered, offset_s: float, base: tuple[float, float] = PR) -> np.ndarray:
    """Per lead, median over beats of the level `offset_s` after R against the baseline window."""
    b = _beats(r, len(r.signal))
    x = r.signal
    at = np.rint((b + offset_s) * FS).astype(int)
    return np.median(x[at] - x[_samples(b, np.linspace(*base, 5))].mean(axis=1), axis=0)


def extreme(r: Rendered, window: tuple[float, float], fn: np.ufunc) -> np.ndarray:
    """Per lead, median over beats of the min or max in `window` (s after R) against the PR baseline."""
    b = _beats(r, len(r.signal))
    x = r.signal
    w = x[_samples(b, np.linspace(*window, 40))]
    return np.median(fn.reduce(w, axis=1) - x[_samples(b, np.linspace(*PR, 5))].mean(axis=1), axis=0)


def q_depth(r: Rendered) -> np.ndarray:
    return extreme(r, (-0.06, -0.015), np.minimum)


def r_height(r: Rendered) -> np.ndarray:
    return extreme(r, (-0.03, 0.03), np.maximum)


def pair(pid: int, **fields: object) -> tuple[Rendered, Rendered]:
    """The normal record of patient `pid` and the same record with `fields` changed."""
    normal = spec(pid)
    return render(normal, artifacts=False), render(replace(normal, **fields), artifacts=False)


def mean_change(measure: Measure, **fields: object) -> np.ndarray:
    """The effect of `fields` on `measure`, per lead, averaged over the test patients."""
    return np.mean([measure(b) - measure(a) for a, b in (pair(p, **fields) for p in PIDS)], axis=0)


def st60(r: Rendered, j: float) -> np.ndarray:
    return level(r, j + 0.06)


def p_wave(r: Rendered) -> np.ndarray:
    """Per lead, the mean level over the P wave (median over beats) against the PR baseline."""
    return np.mean([level(r, o) for o in np.linspace(-0.22, -0.12, 11)], axis=0)


def axis_deg(r: Rendered) -> float:
    """Frontal QRS axis from the net QRS area of I and aVF (median over beats)."""
    b = _beats(r, len(r.signal))
    qrs = r.signal[_samples(b, np.linspace(-0.06, r.qrs_end, 60))]
    base = r.signal[_samples(b, np.linspace(*PR, 5))].mean(axis=1, keepdims=True)
    area = np.median((qrs - base).sum(axis=1), axis=0)
    return float(np.degrees(np.arctan2(area[lead("AVF")], area[lead("I")])))


# --- variation between recordings, patients and beats -------------------------------------------


def test_v1_v2_placed_high_changes_only_v1_v2_and_turns_their_p_negative() -> None:
    for pid in PIDS:
        a, b = pair(pid, placement="v1v2_high")
        other = [j for j in range(12) if LEADS[j] not in ("V1", "V2")]
        assert np.allclose(a.signal[:, other], b.signal[:, other])
    dp = mean_change(p_wave, placement="v1v2_high")
    assert (dp[idx("V1", "V2")] < -0.01).all(), dp  # the electrodes see the atria from above


def test_mason_likar_turns_the_limb_axis_rightward_and_leaves_the_chest_leads() -> None:
    for pid in PIDS:
        a, b = pair(pid, placement="mason_likar")
        assert np.allclose(a.signal[:, 6:], b.signal[:, 6:])
        assert axis_deg(b) - axis_deg(a) > 5.0, pid
        assert r_height(b)[lead("II")] > r_height(a)[lead("II")]


def test_lead_field_shifts_chest_electrodes_and_scales_by_torso_gain() -> None:
    ones = np.ones(6)
    assert np.allclose(lead_field(ones), DOWER)
    moved = lead_field(ones, chest_shift=1.0)  # each electrode where the next one was
    assert np.allclose(moved[2:7], DOWER[3:8]) and np.allclose(moved[7], 2 * DOWER[7] - DOWER[6])
    gain = np.linspace(0.8, 1.2, 6)
    assert np.allclose(lead_field(gain)[2:], DOWER[2:] * gain[:, None])


def test_patients_differ_in_orientation_size_septal_q_and_normal_st() -> None:
    rng = np.random.default_rng(0)
    axes, sizes, septal, st_young_men, st_women = [], [], [], [], []
    for k in range(400):
        female, age = k % 2 == 0, 25 if k % 4 < 2 else 70
        p = sample_patient(rng, age, female)
        qrs = p.model.vector[[p.model.index("R1"), p.model.index("R2")]].sum(axis=0) @ p.orientation.T
        axes.append(np.degrees(np.arctan2(qrs[1], qrs[0])))
        sizes.append(np.linalg.norm(p.model.vector[p.model.index("R2")]))
        septal.append(np.linalg.norm(p.model.vector[p.model.index("Q")]))
        st = np.linalg.norm(p.model.vector[p.model.index("ST")]) / sizes[-1]
        (st_women if female else st_young_men if age == 25 else []).append(st)
    patient = load_json("physiology.json")["patient"]
    assert 0.8 * patient["frontal_axis_sd_deg"] < np.std(axes) < 1.3 * patient["frontal_axis_sd_deg"]
    assert np.std(np.log(sizes)) > 0.8 * patient["amp_log_sd"]
    assert np.std(np.log(septal)) > 0.8 * patient["septal_q_log_sd"]
    assert np.median(st_young_men) > 1.3 * np.median(st_women)  # normal ST elevation of young men


def test_normal_septal_q_waves_show_laterally_and_in_about_half_inferiorly() -> None:
    """Normal q waves in I, aVL and V6, and in about half of normal adults also in II and aVF
    (Chou): an inferior q wave alone is no infarct."""
    q = np.array([q_depth(render(spec(pid), artifacts=False)) for pid in range(1, 41)]) < -0.02
    share = dict(zip(LEADS, q.mean(axis=0), strict=True))
    assert 0.3 < share["II"] < 0.75 and 0.25 < share["AVF"] < 0.75, share
    assert min(share["I"], share["AVL"], share["V6"]) > 0.35, share


def test_heart_rate_and_qt_spread_as_the_real_clinical_records() -> None:
    """Patients' heart rates centre on the real records' median (about 66/min with the sites'
    shifts) and their QT varies by qt_scale_sd, wider than a healthy population's."""
    p = load_json("physiology.json")["patient"]
    nominal = next(c["center_s"] for c in load_json("physiology.json")["components"] if c["name"] == "T")
    patients = [sample_patient(np.random.default_rng(s), 50, False) for s in range(600)]
    assert np.median([x.hr_bpm for x in patients]) == pytest.approx(p["hr_mean"], abs=1.5)
    t = np.array([x.model.center[x.model.index("T")] for x in patients]) / nominal
    assert np.std(t) == pytest.approx(p["qt_scale_sd"], abs=0.01) and p["qt_scale_sd"] >= 0.07


def test_normal_st_segment_rises_in_v2_v4_and_stays_low_in_v1() -> None:
    """The normal ST segment 60 ms after J: elevated in V2-V4 (Macfarlane), low in V1 and slightly
    positive in V5-V6, as the ST levels of the real records here (median over normal records)."""
    st = np.median(
        [st60(r, r.qrs_end) for r in (render(spec(p), artifacts=False) for p in range(1, 25))], axis=0
    )
    assert (st[idx("V2", "V3", "V4")] > 0.03).all(), st
    assert st[lead("V1")] < 0.4 * st[idx("V2", "V3")].mean() and (st[idx("V5", "V6")] > 0.015).all(), st


def test_chest_leads_reach_normal_precordial_voltage() -> None:
    """The torso's median gain on the chest leads lifts R in V2 and V4 and S in V2 to the normal
    medians of the source (Rijnbeek): about 0.6 mV R in V2, over 1 mV in V4, about 1 mV S in V2."""
    rng = np.random.default_rng(3)
    gains = np.array([sample_patient(rng, 50, False).chest_gain for _ in range(300)])
    median = load_json("physiology.json")["patient"]["chest_gain_median"]
    assert np.median(gains) == pytest.approx(median, rel=0.05)
    normal = [render(spec(pid), artifacts=False) for pid in range(1, 31)]
    r = np.median([r_height(x) for x in normal], axis=0)
    s = np.median([extreme(x, (-0.01, 0.05), np.minimum) for x in normal], axis=0)
    assert 0.4 < r[lead("V2")] < 1.0 and 0.9 < r[lead("V4")] < 2.0, r
    assert -1.5 < s[lead("V2")] < -0.7, s


def test_normal_frontal_axis_has_the_reference_median_and_range() -> None:
    """Measured on normal records (the heart's turn plus each wave's own): median about +45 degrees,
    2nd-98th percentiles about -30 to +90 (Rijnbeek, Mason2007)."""
    axes = [axis_deg(render(spec(pid), artifacts=False)) for pid in range(1, 101)]
    low, median, high = np.percentile(axes, [2, 50, 98])
    assert 30 < median < 60 and -50 < low < -10 and 75 < high < 110, (low, median, high)


def test_breathing_turns_the_dipole_in_the_frontal_plane() -> None:
    p = sample_patient(np.random.default_rng(1), 50, False)
    still = Rhythm(np.arange(-1.0, 12.0, 0.9), 0.25, 0.0, 0.0, 0.0)
    breathing = replace(still, resp_axis_deg=8.0)
    a = render_vcg(p.model, still, FS, 5000, np.random.default_rng(2))
    b = render_vcg(p.model, breathing, FS, 5000, np.random.default_rng(2))
    strong = np.hypot(a[:, 0], a[:, 1]) > 0.2
    turn = np.degrees(np.arctan2(b[:, 1], b[:, 0]) - np.arctan2(a[:, 1], a[:, 0]))[strong]
    expected = 8.0 * np.sin(2 * np.pi * 0.25 * np.arange(5000)[strong] / FS)
    assert np.allclose(turn, expected, atol=1e-6)
    assert np.allclose(a[:, 2], b[:, 2])


def test_beats_differ_in_size_and_timing_with_the_configured_spread() -> None:
    p = sample_patient(np.random.default_rng(3), 50, True)
    gain, shift = beat_variation(np.random.default_rng(4), p.model, 3000)
    spread = load_json("physiology.json")["record"]
    for k, group in enumerate(p.model.group):
        assert np.std(np.log(gain[:, k])) == pytest.approx(spread["beat_amp_log_sd"][group], rel=0.1)
        assert np.std(shift[:, k]) == pytest.approx(spread["beat_time_sd_s"][group], rel=0.1)
    r = render(spec(1), artifacts=False)
    peaks = r.signal[_samples(_beats(r, len(r.signal)), np.linspace(-0.03, 0.03, 31)), lead("V5")].max(axis=1)
    assert 0.005 < np.std(peaks) / np.mean(peaks) < 0.1  # no two beats alike, none far off
    big = replace(p.model, group=p.model.group + ("T",) * (MAX_COMPONENTS + 1 - len(p.model.group)))
    with pytest.raises(ValueError, match="components"):
        beat_variation(np.random.default_rng(0), big, 5)


def test_atrial_fibrillation_has_no_p_wave_and_an_irregular_rhythm() -> None:
    spread: dict[str, list[np.ndarray]] = {"sinus": [], "af": []}
    p: dict[str, list[float]] = {"sinus": [], "af": []}  # the P window's peak: P, or f waves only
    for pid in PIDS:
        sinus, af = pair(pid, rhythm="af")
        for name, r in (("sinus", sinus), ("af", af)):
            rr = np.diff(_beats(r, 5000))
            spread[name].append(rr / rr.mean() - 1.0)
            p[name].append(float(extreme(r, (-0.2, -0.11), np.maximum)[lead("II")]))
    assert min(p["sinus"]) > 0.04 and all(a < s for a, s in zip(p["af"], p["sinus"], strict=True)), p
    assert np.mean(p["af"]) < 0.5 * np.mean(p["sinus"]), p  # f waves (0.02-0.08 mV) where P was
    assert np.std(np.concatenate(spread["af"])) > 0.12 > 2 * np.std(np.concatenate(spread["sinus"]))
    codes = scp_codes(NONE, NONE, NONE, NONE, "af")
    assert codes["AFIB"] == 100.0 and "SR" not in codes and "NORM" in codes


def _premature(normal: Rendered, ectopic: Rendered) -> np.ndarray:
    """Indices of the beats that came early."""
    return np.flatnonzero(ectopic.r_times < normal.r_times - 1e-9)


def _qrs_span(r: Rendered, at: float, threshold: float = 0.2) -> float:
    """Seconds during which the spatial size of the signal (all leads, against the level just
    before the beat's window) exceeds `threshold` of its peak within 0.1 s of `at`."""
    w = r.signal[_samples(np.array([at]), np.linspace(-0.1, 0.1, 101))[0]]
    size = np.linalg.norm(w - w[:5].mean(axis=0), axis=1)
    return float((size > threshold * size.max()).sum() * 0.002)


def test_a_pvc_comes_early_wide_without_p_with_opposite_t_and_a_compensatory_pause() -> None:
    e = ectopy_config()
    for pid in PIDS:
        normal, pvc = pair(pid, ectopy="pvc")
        early = _premature(normal, pvc)
        assert e["count"][0] <= len(early) <= e["count"][1], early
        first = pvc.r_times[early[0]] - 0.5
        assert np.allclose(normal.signal[: int(first * FS)], pvc.signal[: int(first * FS)])  # all else alike
        for k in early:
            rr = normal.r_times[k] - normal.r_times[k - 1]
            assert pvc.r_times[k] - pvc.r_times[k - 1] < 0.8 * rr
            if k + 1 not in early:
                assert pvc.r_times[k + 1] == normal.r_times[k + 1]  # the next sinus beat on time
            assert _qrs_span(pvc, pvc.r_times[k]) > _qrs_span(normal, normal.r_times[k]) + 0.015, pid
    p = sample_patient(np.random.default_rng(5), 50, False)
    rhythm = Rhythm(np.arange(-1.0, 12.0, 0.8), 0.25, 0.0, 0.0, 0.0)
    model, ectopic = with_ectopy(np.random.default_rng(6), "pvc", p.model, rhythm, 10.0)
    own = np.array([n.startswith(PREFIX) for n in model.names])
    early = np.flatnonzero(np.diff(ectopic.r_times, prepend=-1.8) < 0.7)
    assert ectopic.shown is not None and (ectopic.shown[early] == own).all()  # no P, no sinus QRS
    assert (ectopic.shown[np.setdiff1d(np.arange(len(ectopic.r_times)), early)] == ~own).all()
    qrs, t = model.vector[model.index(f"{PREFIX}R1")], model.vector[model.index(f"{PREFIX}T")]
    assert qrs @ t < 0 and 1.0 <= np.linalg.norm(qrs) <= 2.0  # the T wave opposite to the wide QRS
    with pytest.raises(ValueError, match="ectopy"):
        with_ectopy(np.random.default_rng(6), "vt", p.model, rhythm, 10.0)


def test_a_pac_comes_early_with_another_p_and_resets_the_sinus_node() -> None:
    for pid in PIDS:
        normal, pac = pair(pid, ectopy="pac")
        early = _premature(normal, pac)
        k = early[0]
        assert pac.r_times[k] - pac.r_times[k - 1] < 0.9 * (normal.r_times[k] - normal.r_times[k - 1])
        later = np.setdiff1d(np.arange(k + 1, len(pac.r_times)), early)
        shift = normal.r_times[later] - pac.r_times[later]
        assert (shift > 0.05).all()  # the sinus node reset: the beats after it come earlier too
        assert abs(_qrs_span(pac, pac.r_times[k]) - _qrs_span(normal, normal.r_times[k])) < 0.01  # normal QRS
    p = sample_patient(np.random.default_rng(5), 50, False)
    rhythm = Rhythm(np.arange(-1.0, 12.0, 0.8), 0.25, 0.0, 0.0, 0.0)
    model, ectopic = with_ectopy(np.random.default_rng(7), "pac", p.model, rhythm, 10.0)
    sinus, other = model.vector[model.index("P")], model.vector[model.index(f"{PREFIX}P")]
    cos = sinus @ other / np.linalg.norm(sinus) / np.linalg.norm(other)
    assert cos < np.cos(np.radians(ectopy_config()["pac_p_turn_deg"][0])) + 1e-9  # another atrial focus
    assert ectopic.shown is not None and set(ectopic.shown.sum(axis=1)) == {len(model.names) - 1}


def test_infarcts_lower_heart_rate_variability(plan: list[RecordSpec]) -> None:
    """RR variability is lower after an infarct (Kleiger 1987, Bigger 1995): the plan gives every
    infarct `hrv_scale_mi`, and for the same patient and draws the RR deviations scale by it."""
    scale = load_json("physiology.json")["record"]["hrv_scale_mi"]
    assert {s.hrv_scale for s in plan if s.mi_type != NONE} == {scale}
    assert {s.hrv_scale for s in plan if s.mi_type == NONE} == {1.0}
    for pid in PIDS:
        normal, low = pair(pid, hrv_scale=scale)
        a, b = np.diff(normal.r_times), np.diff(low.r_times)
        assert np.std(b) == pytest.approx(scale * np.std(a), rel=0.02), pid


def test_the_scar_q_wave_does_not_start_the_qrs_early() -> None:
    """An infarct's Q wave replaces initial forces and lasts at least 30 ms (UDMI4): the scar's Q
    component starts (centre minus 2.5 widths) with the normal q wave and lasts about 40 ms, so the
    QRS onset seen in the leads moves by under 12 ms at full severity (a wider Q moved it 21 ms)."""
    phys = load_json("physiology.json")
    old, q = phys["mi"]["old"], next(c for c in phys["components"] if c["name"] == "Q")
    assert old["q_center_s"] - 2.5 * old["q_width_s"] >= q["center_s"] - 2.5 * q["width_s"] - 1e-9
    assert 4.3 * old["q_width_s"] >= 0.03  # above a tenth of its depth for at least 30 ms

    def onset(r: Rendered) -> np.ndarray:
        b = _beats(r, len(r.signal))
        w = r.signal[_samples(b, np.linspace(-0.1, 0.0, 51))]
        base = r.signal[_samples(b, np.linspace(*PR, 5))].mean(axis=1, keepdims=True)
        size = np.linalg.norm(w - base, axis=2)
        return np.array([np.median(np.argmax(size > 0.05, axis=1)) * 0.002])

    for territory in ("anterior", "inferior", "lateral"):
        moved = mean_change(onset, mi_type="old", pattern="q_wave", territory=territory, severity=1.0)
        assert abs(moved[0]) < 0.012, (territory, moved)


# --- MI-negative mimics -------------------------------------------------------------------------


def mimic(kind: str, measure: Measure) -> np.ndarray:
    return mean_change(measure, confounder=kind, confounder_severity=1.0)


def test_early_repolarization_elevates_the_j_point_without_q_waves() -> None:
    j = mimic("early_repolarization", lambda r: level(r, 0.05))
    q = mimic("early_repolarization", q_depth)
    assert (j[idx("II", "AVF", "V4", "V5")] > 0.05).all(), j
    assert (q > -0.02).all(), q


def test_pericarditis_elevates_st_widely_and_depresses_pr() -> None:
    st = mimic("pericarditis", lambda r: st60(r, r.qrs_end))
    pr = mimic("pericarditis", lambda r: level(r, -0.07, base=TP))
    assert (st[idx("I", "II", "AVF", "V4", "V5", "V6")] > 0.04).all() and st[lead("AVR")] < -0.03, st
    assert pr[lead("II")] < -0.01 and pr[lead("AVR")] > 0.005, pr


def test_positional_q_shows_in_iii_and_avf_only() -> None:
    q = mimic("positional_q", q_depth)
    assert (q[idx("III", "AVF")] < -0.08).all(), q
    # the chest leads see a little of it: more with the chest gain (1.25) and a heart turned left
    assert (np.abs(q[idx("V1", "V2", "V3", "V4", "V5", "V6")]) < 0.65 * abs(q[lead("III")])).all(), q


def test_brugada_elevates_st_in_v1_v2_and_inverts_their_t() -> None:
    st = mimic("brugada", lambda r: level(r, 0.08))
    t = mimic("brugada", lambda r: level(r, 0.27))
    assert (st[idx("V1", "V2")] > 0.1).all() and st[idx("V1", "V2")].min() > st[idx("V5", "V6")].max(), st
    assert (t[idx("V1", "V2")] < -0.05).all(), t


def test_hyperkalaemia_peaks_the_t_wave() -> None:
    for pid in PIDS:
        a, b = pair(pid, confounder="hyperkalaemia", confounder_severity=1.0)
        window = (a.qrs_end + 0.08, 0.45)
        ta, tb = extreme(a, window, np.maximum), extreme(b, window, np.maximum)
        tallest = int(np.argmax(ta))
        assert tb[tallest] > 1.6 * ta[tallest], pid


def level_series(r: Rendered, offsets: np.ndarray) -> np.ndarray:
    return np.array([level(r, o) for o in offsets])


def test_digoxin_sags_st_lowers_t_and_shortens_qt() -> None:
    st = mimic("digoxin", lambda r: st60(r, r.qrs_end))
    assert (st[idx("V5", "V6")] < -0.03).all(), st
    lag = np.linspace(0.15, 0.45, 61)
    for pid in PIDS:
        a, b = pair(pid, confounder="digoxin", confounder_severity=1.0)
        t = [np.abs(level_series(r, lag)[:, lead("V5")]) for r in (a, b)]
        assert t[1].max() < t[0].max(), pid
    beat = sample_patient(np.random.default_rng(5), 60, False).model
    dig = apply_confounder(beat, "digoxin", 1.0)
    assert dig.center[dig.index("T")] < beat.center[beat.index("T")] - 0.02  # a shorter QT


def test_wpw_shortens_pr_and_makes_inferior_pseudo_q_waves() -> None:
    q = mimic("wpw", lambda r: extreme(r, (-0.08, -0.03), np.minimum))
    assert (q[idx("III", "AVF")] < -0.03).all(), q
    for pid in PIDS:
        a, b = pair(pid, confounder="wpw", confounder_severity=1.0)
        lag = np.linspace(-0.25, -0.06, 60)
        peak = [lag[np.argmax(level_series(r, lag)[:, lead("II")])] for r in (a, b)]
        assert peak[1] > peak[0] + 0.03, pid  # the P wave closer to the QRS


def test_conduction_and_hypertrophy_patterns() -> None:
    """LVH: taller R in the tallest lateral lead, lateral T lowered (strain); RBBB and incomplete
    RBBB: a late R' in V1; LAFB: left axis deviation; pacing: a wide QRS."""
    r = mimic("LVH", r_height)
    t = mimic("LVH", lambda x: level(x, 0.27))
    assert r.max() > 0.3 and t[idx("I", "AVL", "V6")].mean() < -0.05, (r, t)
    for kind, minimum in (("RBBB", 0.15), ("IRBBB", 0.05)):
        late = mimic(kind, lambda x: level(x, 0.065))
        assert late[lead("V1")] > minimum, (kind, late)
    axes = []
    for pid in PIDS:
        normal, lafb = pair(pid, confounder="LAFB", confounder_severity=1.0)
        assert axis_deg(lafb) < axis_deg(normal) - 40.0, pid
        axes.append(axis_deg(lafb))
        _, paced = pair(pid, confounder="paced", confounder_severity=1.0)
        assert paced.qrs_end >= 0.12
    assert np.mean(axes) < -30.0, axes  # left axis deviation


def test_nonspecific_st_t_changes_flatten_lateral_t_waves() -> None:
    t = mimic("nonspecific_st_t", lambda r: level(r, 0.27))
    assert (t[idx("V5", "V6")] < -0.05).all(), t


def test_benign_fragmented_qrs_adds_a_terminal_r_prime_in_the_inferior_leads() -> None:
    """A fragmented QRS without scar (Terho 2014: mostly inferior): a terminal R' in II, III and aVF,
    broad enough that the feature store's fragmentation count (40 Hz low-pass) sees it, and
    smaller in the chest leads."""
    f = load_json("physiology.json")["fragmentation"]
    frag = dict(fragmentation="inferior", fragmentation_mv=0.25, fragmentation_shift_s=0.005)
    r_prime = mean_change(lambda r: level(r, f["center_s"] + 0.005), **frag)
    inferior = r_prime[idx("II", "III", "AVF")]
    assert (inferior > 0.1).all() and (np.abs(r_prime[6:]) < 0.6 * inferior.min()).all(), r_prime

    def counted(r: Rendered) -> np.ndarray:
        row = measure_record(r.signal.T, np.ones(12, bool))
        return np.array([row[f"frag_count_{n}"] for n in ("II", "III", "aVF")])

    pairs = [pair(p, **frag) for p in range(1, 9)]
    before = np.array([counted(a) for a, _ in pairs])
    added = np.array([counted(b) for _, b in pairs]) - before
    # a normal QRS has no fragment (its q, R and S are the base extrema); one R' is one fragment
    # where the 40 Hz low-pass leaves it prominent, and never more: of these 8 x 3 leads, in II of
    # patients 4, 5 and 6 and aVF of patient 6
    assert (before == 0).all() and np.isin(added, (0, 1)).all(), added
    assert added.sum() == 4, added


def test_every_mimic_is_mi_negative_unless_a_reader_calls_it() -> None:
    mi_codes = {t["scp"] for t in territories().values()} | {t["injury_scp"] for t in territories().values()}
    for kind, c in confounders().items():
        codes = scp_codes(NONE, NONE, NONE, kind, "sinus")
        assert not set(codes) & mi_codes, kind
        assert c["scp"] in codes or c["scp"] == "NORM"
        called = scp_codes(NONE, NONE, c["reads_as"], kind, "sinus")
        assert territories()[c["reads_as"]]["scp"] in called


# --- infarcts that escape the criteria -----------------------------------------------------------


def infarct(
    mi_type: str, pattern: str, territory: str, measure: Measure, severity: float = 0.7
) -> np.ndarray:
    return mean_change(measure, mi_type=mi_type, pattern=pattern, territory=territory, severity=severity)


def test_posterior_mi_depresses_st_in_v1_v3_and_leaves_tall_r() -> None:
    st = infarct("acute", "stemi", "posterior", lambda r: st60(r, r.qrs_end))
    assert st[idx("V1", "V2", "V3")].mean() < -0.1 and (st[idx("V1", "V2", "V3")] < 0.02).all(), st
    r = infarct("old", "q_wave", "posterior", r_height)
    q = infarct("old", "q_wave", "posterior", q_depth)
    assert r[idx("V1", "V2")].mean() > 0.15, r  # tall R: the mirror image of a posterior Q
    assert (q[idx("V1", "V2", "V3")] > -0.02).all(), q  # and no Q in V1-V3


def test_stemi_with_q_waves_elevates_st_and_adds_q_waves_and_r_loss() -> None:
    """About half of acute ST-elevation infarcts show Q waves and lost R forces on the first ECG."""
    st = infarct("acute", "stemi_q", "anterior", lambda r: st60(r, r.qrs_end))
    plain_st = infarct("acute", "stemi", "anterior", lambda r: st60(r, r.qrs_end))
    assert (st[idx("V2", "V3")] > 0.1).all(), st
    q = infarct("acute", "stemi_q", "anterior", q_depth)
    plain_q = infarct("acute", "stemi", "anterior", q_depth)
    assert (q[idx("V2", "V3")] < plain_q[idx("V2", "V3")] - 0.1).all(), (q, plain_q)
    r = infarct("acute", "stemi_q", "anterior", r_height)
    plain_r = infarct("acute", "stemi", "anterior", r_height)
    assert (r[idx("V1", "V2", "V3")] < plain_r[idx("V1", "V2", "V3")] - 0.05).all(), (r, plain_r)
    assert np.abs(st - plain_st).max() < 0.15  # the injury current is the same
    codes = scp_codes("acute", "stemi_q", "anterior", NONE, "sinus")
    assert {"AMI", "INJAS"} <= set(codes)


def test_nstemi_depresses_st_with_elevation_in_avr() -> None:
    st = infarct("acute", "nstemi", "anterior", lambda r: st60(r, r.qrs_end))
    assert (st[idx("V4", "V5")] < -0.05).all() and st[lead("AVR")] > 0.02, st
    assert (st < 0.1).all()  # no STEMI-like elevation


def test_t_wave_only_mi_inverts_t_without_st_or_q_change() -> None:
    t = infarct("acute", "t_wave", "anterior", lambda r: level(r, 0.27))
    st = infarct("acute", "t_wave", "anterior", lambda r: st60(r, r.qrs_end))
    q = infarct("acute", "t_wave", "anterior", q_depth)
    assert (t[idx("V2", "V3")] < -0.15).all(), t
    assert (np.abs(st) < 0.03).all() and (np.abs(q) < 0.01).all(), (st, q)


def test_non_q_mi_loses_r_and_t_without_q_waves() -> None:
    q = infarct("old", "non_q", "inferior", q_depth)
    r = infarct("old", "non_q", "inferior", r_height)
    t = infarct("old", "non_q", "inferior", lambda x: level(x, 0.27))
    full = infarct("old", "q_wave", "inferior", q_depth)
    assert (q[idx("II", "III", "AVF")] > -0.03).all() and (full[idx("II", "III", "AVF")] < -0.2).all()
    assert (r[idx("II", "AVF")] < -0.05).all() and (t[idx("II", "III", "AVF")] < -0.1).all(), (r, t)


@pytest.mark.parametrize(
    ("territory", "leads"), [("anteroseptal", ("V1", "V2", "V3")), ("anterior", ("V2", "V3", "V4"))]
)
def test_anterior_mi_loses_r_in_the_leads_facing_it(territory: str, leads: tuple[str, ...]) -> None:
    """An anterior infarct removes the R forces of the wall V1-V4 face (Zema 1981: poor R-wave
    progression), not only adds Q waves: without a Q wave (non_q) R in the wall's leads is over a
    quarter lower in all and over a seventh in each than the same patients' R without the
    infarct, and the inferior leads keep theirs."""
    facing = idx(*leads)
    normal = np.mean([r_height(pair(p)[0]) for p in PIDS], axis=0)[facing]
    r = infarct("old", "non_q", territory, r_height)
    assert (r[facing] < -normal / 7).all() and r[facing].sum() < -0.25 * normal.sum(), (r, normal)
    assert (np.abs(r[idx("II", "III", "AVF")]) < 0.1).all(), r
    chest = DOWER[2:8] / np.linalg.norm(DOWER[2:8], axis=1, keepdims=True)  # V1-V6
    u = np.asarray(territories()[territory]["r_direction"])
    cos = chest[[LEADS.index(n) - 6 for n in leads]] @ u / np.linalg.norm(u)
    assert (cos > 0.8).all(), cos  # the lost forces point at the wall's leads


def test_small_q_waves_are_shallower_than_full_q_waves() -> None:
    small = infarct("old", "small_q", "inferior", q_depth)[idx("II", "III", "AVF")]
    full = infarct("old", "q_wave", "inferior", q_depth)[idx("II", "III", "AVF")]
    assert (small < -0.05).all() and (small > 0.7 * full).all(), (small, full)


def test_an_infarct_prolongs_repolarization() -> None:
    """QTc is longer after an infarct (Schwartz and Wolf 1978, Wheelan 1986: about 25-35 ms): the
    ST and T components come later and last longer, so the T wave ends later; QRS stays."""
    stretch = 1.0 + load_json("physiology.json")["mi"]["qt_prolongation"]
    normal = sample_patient(np.random.default_rng(3), 60, False).model
    scarred = apply_mi(normal, "old", "q_wave", "inferior", 1.0)
    late = np.array(normal.rr_scaled)
    assert np.allclose(scarred.center[: len(late)][late], normal.center[late] * stretch)
    assert np.allclose(scarred.center[: len(late)][~late], normal.center[~late])

    def t_end(r: Rendered) -> np.ndarray:
        offsets = np.linspace(0.12, 0.55, 216)
        b = _beats(r, len(r.signal))
        base = r.signal[_samples(b, np.linspace(*PR, 5))].mean(axis=1, keepdims=True)
        size = np.median(np.linalg.norm(r.signal[_samples(b, offsets)] - base, axis=2), axis=0)
        peak = int(np.argmax(size))  # the T wave's end: where it falls below a fifth of its peak
        return np.array([offsets[peak + np.argmax(size[peak:] < 0.2 * size[peak])]])

    moved = infarct("old", "q_wave", "inferior", t_end, severity=1.0)
    assert 0.015 < moved[0] < 0.06, moved


def test_an_infarct_flattens_the_t_wave_beyond_its_territory() -> None:
    """Chronic ischaemia flattens T beyond the infarct's leads: the normal T vector shrinks by
    severity * t_flattening before the territory's own T change, so with a posterior infarct
    (whose own change is in V1-V3) T is lower in I, V5 and V6 and less negative in aVR."""
    flat = load_json("physiology.json")["mi"]["t_flattening"]
    normal = sample_patient(np.random.default_rng(3), 60, False).model
    t = normal.vector[normal.index("T")]
    d = np.asarray(territories()["posterior"]["direction"]) / np.linalg.norm(
        territories()["posterior"]["direction"]
    )
    old = load_json("physiology.json")["mi"]["old"]
    scarred = apply_mi(normal, "old", "non_q", "posterior", 1.0)
    assert np.allclose(scarred.vector[normal.index("T")], (1.0 - flat) * t - old["t_inversion_mv"] * d)
    top = infarct("old", "non_q", "posterior", lambda r: extreme(r, (0.15, 0.45), np.maximum), 1.0)
    low = infarct("old", "non_q", "posterior", lambda r: extreme(r, (0.15, 0.45), np.minimum), 1.0)
    assert (top[idx("I", "V5", "V6")] < -0.05).all() and low[lead("AVR")] > 0.03, (top, low)


def test_an_infarct_with_bundle_branch_block_keeps_both() -> None:
    for pid in PIDS:
        mi = dict(mi_type="old", pattern="q_wave", territory="anterior", severity=0.7)
        _, both = pair(pid, **mi, confounder="LBBB", confounder_severity=1.0)
        _, alone = pair(pid, **mi)
        assert both.qrs_end > alone.qrs_end + 0.05
        assert not np.allclose(both.signal, alone.signal)
    codes = scp_codes("old", "q_wave", "anterior", "LBBB", "sinus")
    assert {"AMI", "CLBBB"} <= set(codes)


# --- the plan: mixes and the reader ---------------------------------------------------------------


@pytest.fixture(scope="module")
def plan() -> list[RecordSpec]:
    sites = first_sites(4)
    return plan_shard(SEED, 0, 6000, 6000, sites, {s: 0.3 for s in sites})


def test_the_plan_mixes_patterns_mimics_placements_and_rhythms(plan: list[RecordSpec]) -> None:
    mi = [s for s in plan if s.mi_type != NONE]
    patterns = Counter(s.pattern for s in mi)
    assert set(patterns) == {"stemi", "stemi_q", "nstemi", "t_wave", "q_wave", "small_q", "non_q"}
    acute = sum(n for k, n in patterns.items() if k in ("stemi", "stemi_q", "nstemi", "t_wave"))
    assert acute / len(mi) == pytest.approx(load_json("physiology.json")["mi"]["acute_share"], abs=0.04)
    assert {s.territory for s in mi} == set(territories())
    assert Counter(s.confounder != NONE for s in mi)[True] / len(mi) == pytest.approx(0.3, abs=0.05)
    negatives = [s for s in plan if s.mi_type == NONE]
    assert {s.confounder for s in negatives} == {*confounders(), NONE}
    assert {s.placement for s in plan} == {"standard", "v1v2_high", "mason_likar"}
    assert Counter(s.rhythm for s in plan)["af"] / len(plan) == pytest.approx(0.08, abs=0.02)


def test_infarcts_are_mostly_old_as_ptbxl_stages_them(plan: list[RecordSpec]) -> None:
    """PTB-XL states an infarction stadium for 2,286 MI records: 298 acute to recent (I, I-II, II),
    the rest subacute to old; the archive's infarcts are acute in that share."""
    mi = [s for s in plan if s.mi_type != NONE]
    assert np.mean([s.mi_type == "acute" for s in mi]) == pytest.approx(298 / 2286, abs=0.03)
    assert {s.pattern for s in mi if s.mi_type == "acute"} == {"stemi", "stemi_q", "nstemi", "t_wave"}


def test_infarct_territories_follow_ptbxl(plan: list[RecordSpec]) -> None:
    """PTB-XL's MI statements are mostly inferior (IMI) and anteroseptal (ASMI); the rare posterior
    ones stay represented."""
    mi = Counter(s.territory for s in plan if s.mi_type != NONE)
    total = sum(mi.values())
    assert mi["inferior"] / total == pytest.approx(0.40, abs=0.04), mi
    assert mi["anteroseptal"] / total == pytest.approx(0.35, abs=0.04), mi
    assert max(mi["anterior"], mi["lateral"], mi["anterolateral"]) / total < 0.1 and mi["posterior"] > 0, mi


def test_a_fifth_of_patients_have_a_benign_fragmented_qrs_mostly_inferior(plan: list[RecordSpec]) -> None:
    """Terho 2014: fragmented QRS in 19.7 % of a general population, 15.7 % in the inferior leads;
    drawn whatever the infarct, so that MI-negative records have it as often as infarcts."""
    rates = load_json("physiology.json")["fragmentation"]["rates"]
    for mi in (False, True):
        kinds = Counter(s.fragmentation for s in plan if (s.mi_type != NONE) == mi)
        total = sum(kinds.values())
        assert 1 - kinds[NONE] / total == pytest.approx(sum(rates.values()), abs=0.035), (mi, kinds)
        assert kinds["inferior"] / total == pytest.approx(rates["inferior"], abs=0.03), (mi, kinds)
    sizes = [s.fragmentation_mv for s in plan if s.fragmentation != NONE]
    assert min(sizes) >= 0.1 and max(sizes) <= 0.3


def test_infarcts_come_with_more_fibrillation_and_bundle_branch_block(plan: list[RecordSpec]) -> None:
    """Atrial fibrillation (6-21 % with MI) and LBBB/RBBB (6.7 / 6.2 % of MI) as the sources give them."""
    rhythm = load_json("physiology.json")["rhythm"]
    mi = [s for s in plan if s.mi_type != NONE]
    negatives = [s for s in plan if s.mi_type == NONE]
    af_mi = np.mean([s.rhythm == "af" for s in mi])
    af_negative = np.mean([s.rhythm == "af" for s in negatives])
    assert af_mi == pytest.approx(rhythm["af_rate_mi"], abs=0.03) and af_mi > 1.5 * af_negative
    assert af_negative == pytest.approx(rhythm["af_rate"], abs=0.02)
    block = Counter(s.confounder for s in mi)
    assert block["LBBB"] / len(mi) == pytest.approx(0.067, abs=0.025)
    assert block["RBBB"] / len(mi) == pytest.approx(0.062, abs=0.025)


def test_premature_beats_in_sinus_rhythm_and_more_with_infarcts(plan: list[RecordSpec]) -> None:
    e = ectopy_config()
    assert all(s.ectopy == NONE for s in plan if s.rhythm == "af")
    sinus = [s for s in plan if s.rhythm == "sinus"]
    for mi, factor in ((False, 1.0), (True, e["mi_factor"])):
        kinds = Counter(s.ectopy for s in sinus if (s.mi_type != NONE) == mi)
        total = sum(kinds.values())
        assert kinds["pvc"] / total == pytest.approx(factor * e["pvc_rate"], abs=0.02), (mi, kinds)
        assert kinds["pac"] / total == pytest.approx(factor * e["pac_rate"], abs=0.02), (mi, kinds)


def test_the_reader_misses_subtle_infarcts_and_calls_some_mimics(plan: list[RecordSpec]) -> None:
    def stated(specs: list[RecordSpec]) -> float:
        return float(np.mean([s.statement != NONE for s in specs]))

    by_grade = {g: stated([s for s in plan if s.grade == g]) for g in ("subtle", "moderate", "severe")}
    assert by_grade["subtle"] < by_grade["moderate"] < by_grade["severe"], by_grade
    plain = [s for s in plan if s.mi_type == NONE and s.confounder == NONE]
    mimics = [s for s in plan if s.mi_type == NONE and s.confounder not in (NONE, "positional_q")]
    assert stated(plain) < 0.03 < stated(mimics), (stated(plain), stated(mimics))
    true_calls = [s for s in plan if s.mi_type != NONE and s.statement != NONE]
    assert all(s.statement == s.territory for s in true_calls)
    agreement = np.mean([(s.mi_type != NONE) == (s.statement != NONE) for s in plan])
    assert 0.85 < agreement < 0.97, agreement


def test_rotation_is_a_proper_rotation() -> None:
    m = rotation(20.0, -15.0)
    assert np.allclose(m @ m.T, np.eye(3)) and np.linalg.det(m) == pytest.approx(1.0)
