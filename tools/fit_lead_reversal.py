"""Fit the cable-reversal score (tasks/quality/lead_reversal.py) and write data_contracts/lead_reversal.json.

Fitted on clean records only: a synthetic archive without artifacts (its own seed, not the one
bench/qc.py scores) and the fitting part of the real benchmark (bench/qc_real.py: LUDB and the CinC
2021 sample split by patient with its SPLIT_SEED; the held-out part is never read here), each window
kept when the gate trusts all its 12 leads (none missing, flat, saturated or low_sqi). Every record is
shown as recorded and with each limb-electrode swap and each chest cable swap applied. The decision
margins of the QC profile are chosen from out-of-fold scores: the real fitting windows are split into
`--folds` folds, each scored by weights fitted without it, and for each candidate margin the JSON
shows how many of them as recorded would be flagged (false alarms) and the recall of each swap
applied to them.
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
VERSION = "reversal/2"


def clean_beats(signals: np.ndarray, profile) -> tuple[np.ndarray, np.ndarray, int]:
    """Mean beats and P-window correlations of the windows whose 12 leads the gate trusts (none
    missing, flat, saturated or low_sqi: every lead can vote)."""
    from tasks.quality.gate import assess

    res = assess(signals.astype(np.float32), profile)
    dead = ("missing", "flat", "saturation", "low_sqi")
    keep = ~np.any([res.masks[f].any(1) for f in dead], axis=0)
    return res.indices.template[keep].astype(np.float64), res.indices.p_corr[keep], len(signals)


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
        waves = st.read_table(root / "store", "waveforms")
        flat = waves["signal"].combine_chunks().flatten().flatten().to_numpy()
    return flat.reshape(waves.num_rows, 12, -1)


MARGINS = (0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0)


def out_of_fold(synth: tuple, real: tuple, swaps: tuple[str, ...], args, p, p_min) -> dict:
    """Per candidate margin: the share of real windows as recorded whose best limb (chest) swap
    beats "no swap" by more than it, scored by weights fitted without their fold, and per swap the
    share applied to them that is found (the right swap, by more than the margin)."""
    from tasks.quality import lead_reversal as lr

    fold = np.arange(len(real[0])) % args.folds
    names = (None, *swaps)
    lead = np.zeros((len(names), len(fold)))  # best swap over "no swap", by what was shown
    right = np.zeros((len(names), len(fold)), dtype=bool)  # the best swap is the one shown
    kind = np.zeros((len(names), len(fold)), dtype=bool)  # the best swap is a chest swap
    for f in range(args.folds):
        train = fold != f
        t, q = np.concatenate([synth[0], real[0][train]]), np.concatenate([synth[1], real[1][train]])
        model = lr.ReversalModel(VERSION, swaps, lr.fit_weights(t, q, p, p_min, swaps, args.l2), {})
        trusted = np.ones(((~train).sum(), 12), dtype=bool)
        for k, name in enumerate(names):
            views = lr.features(*lr.shown(real[0][~train], real[1][~train], name), trusted, p, p_min)
            s = lr.scores(views, model)
            best = np.argmax(s[:, 1:], axis=1)
            lead[k, ~train] = s[np.arange(len(best)), best + 1] - s[:, 0]
            right[k, ~train] = best + 1 == k
            kind[k, ~train] = np.isin(best, [swaps.index(c) for c in lr.CHEST_SWAPS])
    out = {}
    for m in MARGINS:
        out[str(m)] = {
            "false_alarms_limb": round(float(((lead[0] > m) & ~kind[0]).mean()), 4),
            "false_alarms_chest": round(float(((lead[0] > m) & kind[0]).mean()), 4),
            "recall": {
                name: round(float(((lead[k] > m) & right[k]).mean()), 3)
                for k, name in enumerate(names)
                if name
            },
        }
    return {"windows": len(fold), "folds": args.folds, "by_margin": out}


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
    from qc_real import SPLIT_SEED, base_set

    from tasks.quality import lead_reversal as lr
    from tasks.quality.gate import load_profile

    profile = load_profile()
    p, p_min = profile.indices, profile.reversal.p_wave_min_corr
    base = base_set(profile)
    fit = (base.part == "fit") & base.records
    real_t, real_p, real_n = clean_beats(base.w.x[fit], profile)
    synth_t, synth_p, synth_n = clean_beats(synthetic_signals(args.synth_records, args.seed), profile)
    template, p_corr = np.concatenate([synth_t, real_t]), np.concatenate([synth_p, real_p])
    swaps = lr.LIMB_SWAPS + lr.CHEST_SWAPS
    oof = out_of_fold((synth_t, synth_p), (real_t, real_p), swaps, args, p, p_min)
    weights = lr.fit_weights(template, p_corr, p, p_min, swaps, args.l2)
    model = lr.ReversalModel(VERSION, swaps, weights, {})
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
        "beat, then in the QRS, T and P windows; then each lead's QRS, T and P polarity). Written by "
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
