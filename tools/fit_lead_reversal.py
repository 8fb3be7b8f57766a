"""Fit the cable-reversal score (tasks/quality/lead_reversal.py) and write data_contracts/lead_reversal.json.

Fitted on clean records only: a synthetic archive without artifacts (its own seed, not the one
bench/qc.py scores; its Mason-Likar, high V1-V2, paced and conduction-disorder records count as
"no swap", which is what they are) and the fitting part of the real benchmark (bench/qc_real.py:
LUDB and the CinC 2021 sample split by patient with its SPLIT_SEED; the held-out part is never read
here), each window kept when the gate trusts all its 12 leads (none missing, flat, saturated or
low_sqi). Every record is shown as recorded and with each limb-electrode swap and each chest cable
swap applied. Out-of-fold scores: the real windows split by patient and the synthetic windows
each into `--folds` folds, each fold scored by weights fitted without it; for each candidate margin
the JSON shows how many windows as recorded would be flagged (false alarms, real and synthetic
apart) and the recall of each swap applied to the real windows.
The QC profile's margins follow a rule fixed before the figures are seen (`chosen_margins`): for
each kind (limb, chest), the smallest candidate margin at which no real fitting window (the clean
ones out of fold; the others, with a lead too noisy for a clean record but all 12 trusted, never
fitted on, by the final model) and at most SYNTH_FALSE_ALARMS of the synthetic windows, out of fold,
are flagged with a swap of that kind
(a suspected swap flags the leads it changes, and clean records may be flagged and rejected
only rarely). A suspected swap rejects the record only from a larger margin (`chosen_reject_margins`,
also fixed before the figures were seen): for each kind, the largest candidate margin at which every
swap of that kind that the flag margin finds in at least RELIABLE of the real windows out of fold
(the swaps the detector tells for certain: LA/RA and RA/LL turn lead I or II over) is still found in
at least RELIABLE of them. Between the two margins a record keeps its `reversal` flags but is only
`limited`: a clean record whose mean beats happen to look swapped stays in screening, and a swap
that changes the ECG little (LA/LL in a heart whose axes lie near +30 degrees) is flagged, not
dropped.
Prints one JSON object (what it fitted on, those out-of-fold figures, and how often the final score
ranks the true hypothesis first on its own training windows).
Usage: python tools/fit_lead_reversal.py [--synth-records 400] [--seed 7] [--l2 1.0] [--folds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

os.environ.setdefault("MSAIC_PSEUDONYM_KEY", "bench-key-not-secret")

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "data_contracts" / "lead_reversal.json"
VERSION = "reversal/3"
SYNTH_FALSE_ALARMS = 0.0025  # 1 in 400
RELIABLE = 0.95  # the recall the issue asks of every artifact kind


def clean_beats(signals: np.ndarray, profile) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean beats and P-window correlations of the windows whose 12 leads the gate trusts (none
    missing, flat, saturated or low_sqi: every lead can vote), and which windows those are."""
    from tasks.quality.gate import assess

    res = assess(signals.astype(np.float32), profile)
    dead = ("missing", "flat", "saturation", "low_sqi")
    keep = ~np.any([res.masks[f].any(1) for f in dead], axis=0)
    return res.indices.template[keep].astype(np.float64), res.indices.p_corr[keep], keep


def synthetic_signals(records: int, seed: int) -> np.ndarray:
    """The windows of a synthetic archive without artifacts, ingested."""
    from tasks import store as st
    from tasks.ingest.run import ingest_archive
    from tasks.settings import Settings
    from tasks.synth.archive import SynthConfig, write_archive
    from tasks.synth.sites import first_sites

    with tempfile.TemporaryDirectory(prefix="msaic-fit-reversal-") as tmp:
        root = Path(tmp)
        write_archive(
            SynthConfig(records, first_sites(4), seed=seed, artifact_scale=0.0), root / "a", workers=2
        )
        ingest_archive(root / "a", root / "store", Settings(workers=2))
        return st.signals_of(st.read_table(root / "store", "waveforms")["signal"])


MARGINS = tuple(k / 2 for k in range(17)) + tuple(
    float(k) for k in range(9, 31)
)  # 0, 0.5, ..., 8, 9, ..., 30


def _scored(model, template, p_corr, names, p, p_min) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per hypothesis shown (rows) and window: the best swap's lead over "no swap", whether the best
    swap is the one shown, whether it is a chest swap."""
    from tasks.quality import lead_reversal as lr

    trusted = np.ones(template.shape[:2], dtype=bool)
    lead, right, kind = (np.zeros((len(names), len(template))) for _ in range(3))
    for k, name in enumerate(names):
        s = lr.scores(lr.features(*lr.shown(template, p_corr, name), trusted, p, p_min), model)
        best = np.argmax(s[:, 1:], axis=1)
        lead[k] = s[np.arange(len(best)), best + 1] - s[:, 0]
        right[k] = best + 1 == k
        kind[k] = np.isin(best, [model.swaps.index(c) for c in lr.CHEST_SWAPS])
    return lead, right.astype(bool), kind.astype(bool)


def out_of_fold(
    synth: tuple, real: tuple, noisy: tuple, final, swaps: tuple[str, ...], args, p, p_min, real_folds
) -> dict:
    """Per candidate margin: the real and the synthetic windows as recorded whose best limb (chest)
    swap beats "no swap" by more than it, scored by weights fitted without their fold, and per swap
    the share of the real windows with it applied that is found (the right swap, by more than the
    margin); and the margins the rule chooses. The fitting part's other real windows (`noisy`: a
    lead too noisy for a clean record, all 12 trusted) are never fitted on: the `final` model scores
    them, as the gate will, and they count as false alarms too. `real_folds`: the real windows'
    folds, by patient (bench/qc_real.py's patient_folds); the synthetic records have a window each."""
    from tasks.quality import lead_reversal as lr

    names = (None, *swaps)
    parts = {"real": real, "synthetic": synth}
    folds = {"real": real_folds, "synthetic": np.arange(len(synth[0])) % args.folds}
    got = {
        k: [np.zeros((len(names), len(v[0])), dtype=d) for d in (float, bool, bool)] for k, v in parts.items()
    }
    for f in range(args.folds):
        t = np.concatenate([v[0][folds[k] != f] for k, v in parts.items()])
        q = np.concatenate([v[1][folds[k] != f] for k, v in parts.items()])
        model = lr.ReversalModel(VERSION, swaps, lr.fit_weights(t, q, p, p_min, swaps, args.l2), {})
        for k, v in parts.items():
            here = folds[k] == f
            for out, new in zip(got[k], _scored(model, v[0][here], v[1][here], names, p, p_min), strict=True):
                out[:, here] = new
    got["real_noisy"] = list(_scored(final, *noisy, (None,), p, p_min))
    by_margin = {}
    for m in MARGINS:
        entry: dict = {}
        for k, (lead, _, kind) in got.items():
            entry[f"false_alarms_limb_{k}"] = int(((lead[0] > m) & ~kind[0]).sum())
            entry[f"false_alarms_chest_{k}"] = int(((lead[0] > m) & kind[0]).sum())
        lead, right, _ = got["real"]
        entry["recall_real"] = {
            name: round(float(((lead[k] > m) & right[k]).mean()), 3) for k, name in enumerate(names) if name
        }
        by_margin[str(m)] = entry
    allowed = int(SYNTH_FALSE_ALARMS * len(synth[0]))
    chosen = {
        kind: next(
            (
                m
                for m in MARGINS
                if by_margin[str(m)][f"false_alarms_{kind}_real"] == 0
                and by_margin[str(m)][f"false_alarms_{kind}_real_noisy"] == 0
                and by_margin[str(m)][f"false_alarms_{kind}_synthetic"] <= allowed
            ),
            None,
        )
        for kind in ("limb", "chest")
    }
    reject = {kind: _reject_margin(by_margin, chosen[kind], kind, swaps) for kind in chosen}
    return {
        "windows": {**{k: len(v[0]) for k, v in parts.items()}, "real_noisy": len(noisy[0])},
        "folds": args.folds,
        "rule": f"smallest margin with no real (clean out of fold, noisy by the final model) and at most "
        f"{allowed} synthetic out-of-fold false alarms of the kind",
        "chosen_margins": chosen,
        "reject_rule": f"largest margin at which every swap of the kind found in at least {RELIABLE} of the "
        f"real windows at the chosen margin is still found in at least {RELIABLE}",
        "chosen_reject_margins": reject,
        "by_margin": by_margin,
    }


def _reject_margin(
    by_margin: dict, flag_margin: float | None, kind: str, swaps: tuple[str, ...]
) -> float | None:
    """The reject margin of a kind (module docstring): the largest candidate margin at which each
    swap of the kind found reliably at `flag_margin` is still found in at least RELIABLE of the
    real windows (with none found reliably, every margin holds: the largest); None where no flag
    margin was chosen. (In a profile a reject margin of None means "reject from the flag margin",
    as before qc/6: the tool never proposes that.)"""
    from tasks.quality import lead_reversal as lr

    if flag_margin is None:
        return None
    of_kind = [s for s in swaps if (s in lr.CHEST_SWAPS) == (kind == "chest")]
    sure = [s for s in of_kind if by_margin[str(flag_margin)]["recall_real"][s] >= RELIABLE]
    held = [
        m
        for m in MARGINS
        if m >= flag_margin and all(by_margin[str(m)]["recall_real"][s] >= RELIABLE for s in sure)
    ]
    return max(held)


def _profile():
    """The packaged QC profile, its reversal model replaced by an all-zero one of the current feature
    layout: the fit needs only which leads the gate trusts, and the model file on disk may be of an
    older layout (the one being replaced)."""
    from tasks.quality import lead_reversal as lr
    from tasks.quality.gate import parse_profile

    raw = json.loads((ROOT / "data_contracts" / "qc_profile.json").read_text(encoding="utf-8"))
    model = json.loads(MODEL.read_text(encoding="utf-8"))
    model["weights"] = [0.0] * lr.N_FEATURES
    with tempfile.TemporaryDirectory(prefix="msaic-fit-reversal-") as tmp:
        path = Path(tmp) / "zero.json"
        path.write_text(json.dumps(model), encoding="utf-8")
        return parse_profile({**raw, "reversal": {**raw["reversal"], "model": str(path)}})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--synth-records", type=int, default=400)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--l2", type=float, default=1.0)
    parser.add_argument("--folds", type=int, default=5)
    args = parser.parse_args()

    from flows.cli import quiet_prefect_defaults

    quiet_prefect_defaults()
    sys.path.insert(0, str(ROOT / "bench"))
    from qc_real import SPLIT_SEED, base_set, patient_folds

    from tasks.quality import lead_reversal as lr

    profile = _profile()
    p, p_min = profile.indices, profile.reversal.p_wave_min_corr
    base = base_set(profile)
    fit = (base.part == "fit") & base.records
    real_t, real_p, real_keep = clean_beats(base.w.x[fit], profile)
    real_folds = patient_folds([base.w.record[k] for k in np.flatnonzero(fit)[real_keep]], args.folds)
    noisy = clean_beats(base.w.x[(base.part == "fit") & ~base.records], profile)[:2]
    synth_t, synth_p, synth_keep = clean_beats(synthetic_signals(args.synth_records, args.seed), profile)
    real_n, synth_n = len(real_keep), len(synth_keep)
    template, p_corr = np.concatenate([synth_t, real_t]), np.concatenate([synth_p, real_p])
    swaps = lr.LIMB_SWAPS + lr.CHEST_SWAPS
    weights = lr.fit_weights(template, p_corr, p, p_min, swaps, args.l2)
    model = lr.ReversalModel(VERSION, swaps, weights, {})
    oof = out_of_fold((synth_t, synth_p), (real_t, real_p), noisy, model, swaps, args, p, p_min, real_folds)
    trusted = np.ones(template.shape[:2], dtype=bool)
    first = {}
    for k, name in enumerate((None, *swaps)):
        views = lr.features(*lr.shown(template, p_corr, name), trusted, p, p_min)
        first[name or "none"] = round(float((lr.scores(views, model).argmax(1) == k).mean()), 4)
    fitted_on = {
        "synthetic": f"{len(synth_t)} clean of {synth_n} windows, SynthConfig(seed={args.seed}, "
        f"n_records={args.synth_records}, sites=first_sites(4), artifact_scale=0)",
        "real": f"{len(real_t)} windows with 12 trusted leads of {real_n} clean windows in the fitting "
        f"part of bench/qc_real.py (LUDB and CinC 2021 split by patient, SPLIT_SEED={SPLIT_SEED})",
        "held_out": "the held-out part of bench/qc_real.py, never read here",
    }
    raw = {
        "version": VERSION,
        "_doc": "Linear score of tasks/quality/lead_reversal.py (conditional logit over 'no swap' and the "
        "swaps): "
        "weights over the per-hypothesis features in the order of lead_reversal.hypothesis_features (the "
        "correlations of each limb lead with each chest lead and of each pair of chest leads, over the "
        "beat, then in the QRS, T and P windows; then each lead's QRS, T and P polarity; then each limb "
        "lead's QRS, T and P area and size over the limb leads' joint rms). Written by "
        "tools/fit_lead_reversal.py; decision margins are in qc_profile.json `reversal`.",
        "fitted_on": fitted_on,
        "l2": args.l2,
        "swaps": list(swaps),
        "windows_s": {
            "beat": list(p.beat_window_s),
            "qrs": list(p.qrs_window_s),
            "t": list(p.t_window_s),
            "p": list(p.p_window_s),
        },
        "weights": [round(float(w), 6) for w in weights],
    }
    MODEL.write_text(json.dumps(raw, indent=1) + "\n", encoding="utf-8")
    report = {"model": str(MODEL), "fitted_on": fitted_on, "out_of_fold": oof, "train_top1_by_truth": first}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
