"""Benchmark of the quality gate: accuracy against the synthetic truth, the real-data points, and
speed and agreement against the reference loop (`nk.ecg_clean` + `nk.ecg_quality(zhao2018)` per
lead) on the same windows in the same run. Prints one JSON object.

- Synthetic: an archive with artifact rates scaled up (`--artifact-scale`), ingested, then the
  `quality` flow. Per flag: recall on the truth rows at the strengths the QC profile calls
  unusable, the share flagged below them, and false flags on clean leads (no truth row at all).
  EMG strength is the burst rms at the site's native rate; a 1000-Hz site's noise above 250 Hz
  cannot survive the store's 500 Hz, so recall is also given on the in-band strength (the first-
  difference noise spectrum of tasks/synth/artifacts.py integrated up to 250 Hz).
- Real: LUDB (site `ludb`) and the CinC 2021 sample ingested; LUDB clean-lead share and the flags
  of the CinC records with flat chest leads; the reversal detector on LUDB as recorded and with each
  cable swap applied by the lead-field algebra (half of LUDB is in its fit: bench/qc_real.py gives
  the held-out figures).
- Speed: the warm flow (Prefect API already up) with `--workers`, and `run_quality` on one process,
  against the single-process reference loop on the same windows.
Usage: python bench/qc.py [--records 1000] [--artifact-scale 4] [--seed 2026] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
from _neurokit import UNACCEPTABLE, zhao2018

os.environ.setdefault("MSAIC_PSEUDONYM_KEY", "bench-key-not-secret")

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
FLAT_CHEST = {
    "JS45542": ["V1", "V2", "V3", "V4", "V5", "V6"],
    "JS45544": ["V2", "V3", "V4", "V5", "V6"],
    "JS45551": ["V4", "V5", "V6"],
}
STORED_NYQUIST_HZ = 250.0


def emg_in_band(strength: float, fs: int) -> float:
    """RMS of the first-difference noise burst left below the stored Nyquist frequency."""
    a = min(STORED_NYQUIST_HZ / fs, 0.5)
    share = (a / 2 - math.sin(2 * math.pi * a) / (4 * math.pi)) / 0.25
    return strength * math.sqrt(share)


def load(store: Path) -> tuple[pd.DataFrame, np.ndarray]:
    """Quality rows joined to records, in waveform order, and the (n, 12, 5000) signals."""
    from tasks import store as st

    waves = st.read_table(store, "waveforms")
    ids = waves["record_id"].to_pylist()
    signals = st.signals_of(waves["signal"])
    rec = st.read_table(store, "records", ["record_id", "source_path", "site"]).to_pandas()
    q = st.read_table(store, "quality").to_pandas().drop(columns=["site"])
    frame = pd.DataFrame({"record_id": ids}).merge(rec, on="record_id").merge(q, on="record_id")
    assert list(frame["record_id"]) == ids
    return frame, signals


def flag_sets(frame: pd.DataFrame) -> np.ndarray:
    from data_contracts.schemas import FLAG_COLUMNS

    return np.array([[set(c.split(",")) - {""} for c in row] for row in frame[FLAG_COLUMNS].to_numpy()])


def agreement(ref: np.ndarray, flags: np.ndarray) -> dict[str, object]:
    unacceptable = np.isin(ref, UNACCEPTABLE)
    flagged = np.array([[bool(f) for f in row] for row in flags])
    return {
        "reference_ratings": dict(Counter(ref.ravel().tolist())),
        "reference_unacceptable_leads": int(unacceptable.sum()),
        "of_which_flagged_by_qc": int((unacceptable & flagged).sum()),
        "share_flagged_by_qc": round(float((unacceptable & flagged).sum() / max(unacceptable.sum(), 1)), 4),
        "qc_flagged_leads": int(flagged.sum()),
        "of_which_reference_unacceptable": int((unacceptable & flagged).sum()),
    }


def confusion(frame: pd.DataFrame, flags: np.ndarray, archive: Path, unusable: dict[str, float]) -> dict:
    from data_contracts.leads import CANONICAL_LEADS
    from tasks.quality.gate import FLAGS

    truth = pd.read_parquet(archive / "truth.parquet")[["ecg_id", "fs"]]
    arts = pd.read_parquet(archive / "truth_artifacts.parquet").merge(truth, on="ecg_id")
    ecg = frame["source_path"].str.extract(r"/(\d+)_hr\.hea$")[0].astype(int)
    row = dict(zip(ecg, range(len(frame)), strict=True))
    lead = {x.upper(): j for j, x in enumerate(CANONICAL_LEADS)}
    arts = arts[arts["ecg_id"].isin(row)]
    arts = arts.assign(i=arts["ecg_id"].map(row), j=arts["lead"].map(lead))
    touched = np.zeros(flags.shape, dtype=bool)
    touched[arts["i"], arts["j"]] = True
    clean = ~touched
    has = {f: np.array([[f in s for s in r] for r in flags]) for f in FLAGS}
    size = np.where(
        arts["artifact"] == "amplitude", np.maximum(arts["strength"], 1 / arts["strength"]), arts["strength"]
    )
    arts = arts.assign(size=size)
    out: dict[str, dict] = {}
    for flag in FLAGS:
        a = arts[arts["artifact"] == flag]
        hit = has[flag][a["i"], a["j"]] if len(a) else np.zeros(0, dtype=bool)
        bad = (a["size"] >= unusable.get(flag, np.inf)).to_numpy()
        entry = {
            "unusable_at": unusable.get(flag),
            "truth_leads_unusable": int(bad.sum()),
            "true_positives": int(hit[bad].sum()),
            "false_negatives": int((~hit[bad]).sum()),
            "recall_unusable": round(float(hit[bad].mean()), 4) if bad.any() else None,
            "truth_leads_below_unusable": int((~bad).sum()),
            "flagged_below_unusable": round(float(hit[~bad].mean()), 4) if (~bad).any() else None,
            "clean_leads": int(clean.sum()),
            "false_flags_on_clean_leads": int(has[flag][clean].sum()),
            "false_flag_rate_clean": round(float(has[flag][clean].mean()), 5),
            "flagged_on_leads_with_other_artifacts": int((has[flag] & touched).sum() - hit.sum()),
        }
        if flag == "emg":
            band = np.array([emg_in_band(s, fs) for s, fs in zip(a["strength"], a["fs"], strict=True)])
            inband = band >= unusable["emg"]
            entry["recall_unusable_in_band"] = round(float(hit[inband].mean()), 4) if inband.any() else None
            entry["truth_leads_unusable_in_band"] = int(inband.sum())
            entry["recall_unusable_by_native_fs"] = {
                int(fs): round(float(hit[bad & (a["fs"] == fs).to_numpy()].mean()), 4)
                for fs in sorted(a["fs"].unique())
                if (bad & (a["fs"] == fs).to_numpy()).any()
            }
        if flag == "reversal":
            entry["recall_by_swap"] = {
                swap: round(float(hit[(a["detail"] == swap).to_numpy()].mean()), 4)
                for swap in sorted(a["detail"].unique())
            }
        out[flag] = entry
    any_flag = np.array([[bool(s) for s in r] for r in flags])
    out["any_flag"] = {"false_flag_rate_clean": round(float(any_flag[clean].mean()), 5)}
    return out


def swapped_reversal(signals: np.ndarray, profile) -> dict[str, object]:
    """The reversal flag on real windows as recorded and with each swap applied to them by the lead-field
    algebra: per swap, the share flagged with that swap's leads (recall), with another swap's leads
    (wrong swap), or not flagged; as recorded, the share flagged at all (false alarms)."""
    from data_contracts.leads import CANONICAL_LEADS
    from tasks.quality.gate import assess
    from tasks.quality.lead_reversal import apply_swap, leads_changed

    def flagged_leads(x: np.ndarray) -> list[frozenset[str]]:
        mask = assess(x, profile).masks["reversal"]
        return [frozenset(np.array(CANONICAL_LEADS)[row]) for row in mask]

    as_recorded = flagged_leads(signals)
    out: dict[str, object] = {
        "windows": len(signals),
        "flagged_as_recorded": round(float(np.mean([bool(f) for f in as_recorded])), 4),
    }
    for swap in profile.reversal.model.swaps:
        got = flagged_leads(apply_swap(signals, swap))
        right = frozenset(leads_changed(swap))
        out[swap] = {
            "recall": round(float(np.mean([f == right for f in got])), 4),
            "wrong_swap": round(float(np.mean([bool(f) and f != right for f in got])), 4),
        }
    return out


def time_flow(store: Path, workers: int) -> dict[str, float]:
    """Cold flow (starts the Prefect API), the same work warm (worker processes as the settings
    decide), warm with a pool of `workers` processes forced, and one process without Prefect."""
    from flows.quality import quality
    from tasks.quality.run import run_quality
    from tasks.settings import Settings

    times = {}
    for label in ("flow_cold_s", "flow_warm_s"):
        shutil.rmtree(store / "quality", ignore_errors=True)
        started = time.perf_counter()
        totals = quality(store, Settings(workers=workers))
        times[label] = round(time.perf_counter() - started, 2)
    shutil.rmtree(store / "quality", ignore_errors=True)
    started = time.perf_counter()
    quality(store, Settings(workers=workers, qc_windows_per_worker=1))
    times[f"flow_warm_forced_{workers}_processes_s"] = round(time.perf_counter() - started, 2)
    shutil.rmtree(store / "quality", ignore_errors=True)
    started = time.perf_counter()
    run_quality(store, Settings(workers=1))
    times["run_quality_1_process_s"] = round(time.perf_counter() - started, 2)
    times["windows"] = totals.checked
    return times


def speed(times: dict[str, float], ref_s: float, workers: int) -> dict[str, float]:
    n = times["windows"]
    return {
        **times,
        "workers": workers,
        "reference_s": round(ref_s, 2),
        "reference_ms_per_window": round(1000 * ref_s / n, 2),
        "flow_warm_ms_per_window": round(1000 * times["flow_warm_s"] / n, 2),
        "speedup_flow_warm": round(ref_s / times["flow_warm_s"], 1),
        "speedup_one_process": round(ref_s / times["run_quality_1_process_s"], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=1000)
    parser.add_argument("--artifact-scale", type=float, default=4.0)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--sites", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--skip-real", action="store_true")
    args = parser.parse_args()

    from flows.cli import quiet_prefect_defaults

    quiet_prefect_defaults()
    from tasks.ingest.run import ingest_archive
    from tasks.quality.gate import load_profile
    from tasks.settings import Settings
    from tasks.synth.archive import SynthConfig, write_archive
    from tasks.synth.sites import first_sites

    profile = load_profile()
    out: dict[str, object] = {"qc_version": profile.version}
    with tempfile.TemporaryDirectory(prefix="msaic-bench-qc-") as tmp:
        root = Path(tmp)
        config = SynthConfig(
            args.records, first_sites(args.sites), seed=args.seed, artifact_scale=args.artifact_scale
        )
        write_archive(config, root / "archive", workers=args.workers)
        ingest_archive(root / "archive", root / "store", Settings(workers=args.workers))
        times = time_flow(root / "store", args.workers)
        frame, signals = load(root / "store")
        flags = flag_sets(frame)
        ref, ref_s = zhao2018(signals, 500)
        out["synthetic"] = {
            "records": args.records,
            "artifact_scale": args.artifact_scale,
            "seed": args.seed,
            "windows": len(frame),
            "verdicts": dict(Counter(frame["verdict"])),
            "confusion": confusion(frame, flags, root / "archive", profile.unusable),
            "speed": speed(times, ref_s, args.workers),
            "agreement_with_reference": agreement(ref, flags),
        }
        if not args.skip_real:
            real = root / "real"
            ingest_archive(SHARED / "ludb", real, Settings(workers=args.workers), site="ludb")
            ingest_archive(SHARED / "cinc2021", real, Settings(workers=args.workers))
            times = time_flow(real, args.workers)
            frame, signals = load(real)
            flags = flag_sets(frame)
            ludb = (frame["site"] == "ludb").to_numpy()
            ref, ref_s = zhao2018(signals[ludb], 500)
            name = frame["source_path"].map(lambda p: Path(p).stem)
            from data_contracts.leads import CANONICAL_LEADS

            flat = {}
            for record, leads in FLAT_CHEST.items():
                i = int(np.flatnonzero(name == record)[0])
                flat[record] = {
                    "verdict": frame.loc[i, "verdict"],
                    "flat_leads_expected": leads,
                    "flat_leads_flagged": [x for j, x in enumerate(CANONICAL_LEADS) if "flat" in flags[i, j]],
                    "all_flagged_flat": all("flat" in flags[i, CANONICAL_LEADS.index(x)] for x in leads),
                }
            ludb_times = dict(times, windows=int(ludb.sum()))
            out["real"] = {
                "windows": len(frame),
                "ludb_clean_lead_share": round(float(np.mean([not f for f in flags[ludb].ravel()])), 4),
                "ludb_flags": dict(Counter(f for s in flags[ludb].ravel() for f in s)),
                "ludb_reversal": swapped_reversal(signals[ludb], profile),
                "flat_chest": flat,
                "verdicts_by_site": {
                    s: dict(Counter(g["verdict"])) for s, g in frame.groupby("site", sort=True)
                },
                "speed_note": "flow times cover all real windows; the reference ran on the LUDB windows only",
                "flow": times,
                "reference_ludb_s": round(ref_s, 2),
                "reference_ms_per_window": round(1000 * ref_s / ludb.sum(), 2),
                "speedup_flow_warm_per_window": round(
                    (ref_s / ludb.sum()) / (ludb_times["flow_warm_s"] / len(frame)), 1
                ),
                "agreement_with_reference_ludb": agreement(ref, flags[ludb]),
            }
    print(json.dumps(out, indent=2, default=str))


if __name__ == "__main__":
    main()
