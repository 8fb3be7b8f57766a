"""Fit the limb-lead reversal score (tasks/lead_reversal.py) and write data_contracts/lead_reversal.json.

Fitted on clean records only: a synthetic archive without artifacts (its own seed, not the one
bench/qc.py scores) and the real CinC 2021 sample (real amplitudes, several sites), each window
kept when none of its 12 leads carries a flag. LUDB is left out on purpose: bench/qc.py and the
tests measure the detector on it as held-out real data. Prints one JSON object (what it fitted on,
and how often the fitted score ranks the true hypothesis first on its own training windows).
Usage: python tools/fit_lead_reversal.py [--synth-records 400] [--seed 7] [--l2 1.0]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import numpy as np

os.environ.setdefault("MSAIC_PSEUDONYM_KEY", "bench-key-not-secret")

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
MODEL = Path(__file__).resolve().parents[1] / "data_contracts" / "lead_reversal.json"
SWAPS = ("LA/RA", "LA/LL", "RA/LL")


def clean_features(store: Path, profile) -> tuple[np.ndarray, int]:
    """Per-lead reversal features of the store's windows without any flag, and the window count."""
    from tasks import lead_reversal
    from tasks import store as st
    from tasks.quality import assess

    waves = st.read_table(store, "waveforms")
    signals = waves["signal"].combine_chunks().flatten().flatten().to_numpy().reshape(waves.num_rows, 12, -1)
    res = assess(signals, profile)
    others = [f for f in res.masks if f != "reversal"]
    keep = ~np.any([res.masks[f].any(1) for f in others], axis=0)
    trusted = np.ones((int(keep.sum()), 12), dtype=bool)
    ix = res.indices
    per_lead = lead_reversal.features(
        ix.template[keep], ix.p_corr[keep], trusted, profile.indices, profile.reversal.p_wave_min_corr
    )
    return per_lead, len(signals)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--synth-records", type=int, default=400)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--l2", type=float, default=1.0)
    args = parser.parse_args()

    from flows.cli import quiet_prefect_defaults

    quiet_prefect_defaults()
    from tasks import lead_reversal
    from tasks.ingest_run import ingest_archive
    from tasks.quality import load_profile
    from tasks.settings import Settings
    from tasks.synth.archive import SynthConfig, write_archive
    from tasks.synth.sites import first_sites

    profile = load_profile()
    with tempfile.TemporaryDirectory(prefix="msaic-fit-reversal-") as tmp:
        root = Path(tmp)
        config = SynthConfig(args.synth_records, first_sites(4), seed=args.seed, artifact_scale=0.0)
        write_archive(config, root / "archive", workers=2)
        ingest_archive(root / "archive", root / "synth", Settings(workers=2))
        ingest_archive(SHARED / "cinc2021", root / "cinc", Settings(workers=2))
        synth, synth_n = clean_features(root / "synth", profile)
        cinc, cinc_n = clean_features(root / "cinc", profile)
    per_lead = np.concatenate([synth, cinc])
    weights = lead_reversal.fit_weights(per_lead, SWAPS, args.l2)
    model = lead_reversal.ReversalModel("reversal/1", SWAPS, weights, {})
    matrices = model.matrices
    first = {}
    for k, m in enumerate(matrices):
        shown = np.einsum("kj,njf->nkf", m, per_lead)
        s = lead_reversal.scores(shown, model)
        first[("none", *SWAPS)[k]] = round(float((s.argmax(1) == k).mean()), 4)
    p = profile.indices
    fitted_on = {
        "synthetic": f"{len(synth)} clean of {synth_n} windows, SynthConfig(seed={args.seed}, "
        f"n_records={args.synth_records}, sites=first_sites(4), artifact_scale=0)",
        "cinc2021": f"{len(cinc)} windows without flags of {cinc_n} (shared/data/cinc2021)",
        "held_out": "LUDB (all 200 records): measured by bench/qc.py and tests/tasks/test_lead_reversal.py",
    }
    raw = {
        "version": "reversal/1",
        "_doc": "Linear score of tasks/lead_reversal.py (conditional logit over 'no swap' and the swaps): "
        "weights over the per-hypothesis features in the order of lead_reversal.features (per limb lead "
        "I..aVF: correlations with V1..V6 over the beat, then in the QRS, T and P windows; then per limb "
        "lead its QRS, T, P polarity). Written by tools/fit_lead_reversal.py; decision thresholds are in "
        "qc_profile.json `reversal`.",
        "fitted_on": fitted_on,
        "l2": args.l2,
        "swaps": list(SWAPS),
        "windows_s": {
            "beat": list(p.beat_window_s),
            "qrs": list(p.qrs_window_s),
            "t": list(p.t_window_s),
            "p": list(p.p_window_s),
        },
        "weights": [round(float(w), 6) for w in weights],
    }
    MODEL.write_text(json.dumps(raw, indent=1) + "\n", encoding="utf-8")
    print(json.dumps({"model": str(MODEL), "fitted_on": fitted_on, "train_top1_by_truth": first}, indent=2))


if __name__ == "__main__":
    main()
