"""Median-beat features against LUDB's cardiologists, and their speed against neurokit2.

Accuracy: absolute error (ms) of QRS onset, QRS offset, T end and P onset per lead, and of the PR,
QRS and QT intervals per record, against LUDB's per-lead annotations (tasks/features/reference.py);
median and 90th percentile; on the first `--nk-records` records also neurokit2's own delineation
(from the same `nk.ecg_process` runs, per beat, leniently matched) as a reference.
Speed: records/s of the whole per-record path (filter, beats, median beats, delineation, measures,
criteria) in one process and in a pool of `--workers` processes, on the same LUDB records as
`nk.ecg_process` run lead by lead (the reference), in the same run.
With --store, also `build_features` end to end on a copy of that store (ingested, checked by qc).
Prints JSON. Usage: python bench/features.py [--records 200] [--nk-records 10] [--workers 2] [--store S]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import tempfile
import threading
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import neurokit2 as nk
import numpy as np
import psutil

from data_contracts.leads import CANONICAL_LEADS
from data_contracts.schemas import FS, N_LEADS
from tasks.features.beats import FeatureSkip
from tasks.features.criteria import criteria
from tasks.features.measure import criteria_config, measure_beats, measure_record
from tasks.features.reference import BOUNDARIES, INTERVALS, annotated_beats, compare, read_ludb
from tasks.features.run import build_features
from tasks.settings import Settings

LUDB = Path(__file__).resolve().parents[2] / "shared" / "data" / "ludb" / "data"


def _stats(values: list[float] | np.ndarray) -> dict[str, float | int]:
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    return {"median_ms": float(np.median(v)), "p90_ms": float(np.percentile(v, 90)), "n": int(v.size)}


def accuracy(paths: list[Path]) -> dict:
    per_lead = {b: [[] for _ in CANONICAL_LEADS] for b in BOUNDARIES}
    per_record = {k: [] for k in INTERVALS}
    skipped = []
    for path in paths:
        try:
            beats, d = measure_beats(read_ludb(path), np.ones(N_LEADS, bool))
        except FeatureSkip as skip:
            skipped.append(f"{path.name}: {skip}")
            continue
        err = compare(path, beats, d)
        for b in BOUNDARIES:
            for i in range(N_LEADS):
                per_lead[b][i].append(err.lead[b][i])
        for k in INTERVALS:
            per_record[k].append(err.interval[k])
    return {
        "boundaries_all_leads": {
            b: _stats(np.concatenate([np.asarray(x) for x in per_lead[b]])) for b in BOUNDARIES
        },
        "boundaries_per_lead": {
            b: {lead: _stats(per_lead[b][i]) for i, lead in enumerate(CANONICAL_LEADS)} for b in BOUNDARIES
        },
        "intervals_per_record": {k: _stats(per_record[k]) for k in INTERVALS},
        "records_skipped": skipped,
    }


def features_of(signal: np.ndarray) -> dict:
    """The full per-record path of the features stage (measures and criteria)."""
    try:
        row = measure_record(signal, np.ones(N_LEADS, bool))
    except FeatureSkip:
        return {}
    return row | criteria(row, "M", 60.0, criteria_config())


def _chunk(signals: np.ndarray) -> int:
    for s in signals:
        features_of(s)
    return len(signals)


def rate_single(signals: np.ndarray) -> dict[str, float]:
    """Records/s on the wall clock, and CPU ms per record (what a busy machine does not change)."""
    t, cpu = time.perf_counter(), time.process_time()
    _chunk(signals)
    return {
        "records_per_s": len(signals) / (time.perf_counter() - t),
        "cpu_ms_per_record": (time.process_time() - cpu) * 1000 / len(signals),
    }


def rate_pool(signals: np.ndarray, workers: int) -> float:
    """Records/s of a warm pool (process start-up and imports excluded, transfer included)."""
    with ProcessPoolExecutor(workers) as pool:
        list(pool.map(_chunk, np.array_split(signals[: 2 * workers], 2 * workers)))  # warm-up
        t = time.perf_counter()
        done = sum(pool.map(_chunk, np.array_split(signals, 8 * workers)))
        return done / (time.perf_counter() - t)


NK_COLUMNS = {
    "qrs_on": "ECG_R_Onsets",
    "qrs_off": "ECG_R_Offsets",
    "t_end": "ECG_T_Offsets",
    "p_on": "ECG_P_Onsets",
}


def rate_neurokit(signals: np.ndarray) -> tuple[dict[str, float], list[list[dict[str, np.ndarray] | None]]]:
    """Records/s and CPU ms per record of `nk.ecg_process` run on each of the 12 leads, and the
    boundaries its delineation found (per record and lead; None where it failed)."""
    found: list[list[dict[str, np.ndarray] | None]] = []
    t, cpu = time.perf_counter(), time.process_time()
    for s in signals:
        found.append([])
        for lead in s:
            try:
                out, _ = nk.ecg_process(lead, sampling_rate=FS)
            except Exception:  # a failing lead still costs its time, as in a real run
                found[-1].append(None)
                continue
            found[-1].append({b: np.flatnonzero(out[c].to_numpy()) for b, c in NK_COLUMNS.items()})
    rate = {
        "records_per_s": len(signals) / (time.perf_counter() - t),
        "cpu_ms_per_record": (time.process_time() - cpu) * 1000 / len(signals),
    }
    return rate, found


def neurokit_accuracy(paths: list[Path], found: list[list[dict[str, np.ndarray] | None]]) -> dict:
    """Per record and lead, the median over annotated beats of the distance from each annotated
    boundary to the nearest boundary neurokit2 found (within 100 ms; a lenient matching)."""
    errors: dict[str, list[float]] = {b: [] for b in BOUNDARIES}
    for path, leads in zip(paths, found, strict=False):
        for lead, got in zip(CANONICAL_LEADS, leads, strict=True):
            beats = annotated_beats(path, lead)
            for i, b in enumerate(BOUNDARIES):
                truth = beats[:, 1 + i][np.isfinite(beats[:, 1 + i])] if beats.size else np.empty(0)
                if got is None or not got[b].size or not truth.size:
                    errors[b].append(np.nan)
                    continue
                dist = np.abs(got[b][None, :] - truth[:, None]).min(axis=1) * 1000.0 / FS
                errors[b].append(float(np.median(dist[dist <= 100])) if (dist <= 100).any() else np.nan)
    return {b: _stats(v) | {"not_found": int(np.isnan(v).sum())} for b, v in errors.items()}


def _cpu_of_tree(stop: threading.Event, seen: dict[int, float]) -> None:
    """Sample the CPU seconds of every descendant process (workers included) until `stop`."""
    me = psutil.Process()
    while not stop.wait(0.1):
        for proc in me.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                t = proc.cpu_times()
                seen[proc.pid] = t.user + t.system


def rate_store(store: Path, workers: int) -> dict[str, float]:
    """`build_features` end to end (plan, worker start-up, Parquet reads, measures, staged writes,
    commits) on a copy of an ingested and checked store, without its features/; CPU seconds of this
    process and its workers (sampled every 0.1 s, so a little is missed)."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "store"
        shutil.copytree(store, copy, ignore=shutil.ignore_patterns("features", ".staging", "*.lock"))
        seen: dict[int, float] = {}
        stop = threading.Event()
        sampler = threading.Thread(target=_cpu_of_tree, args=(stop, seen), daemon=True)
        t, cpu = time.perf_counter(), time.process_time()
        sampler.start()
        totals = build_features(copy, Settings(workers=workers))
        wall, cpu = time.perf_counter() - t, time.process_time() - cpu + sum(seen.values())
        stop.set()
        sampler.join()
    return {
        "records": totals.written,
        "records_per_s": totals.written / wall,
        "seconds": wall,
        "cpu_ms_per_record_all_processes": cpu * 1000 / max(totals.written, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=200)
    parser.add_argument("--nk-records", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--store", type=Path, help="an ingested store with quality/: also time build_features on it"
    )
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    paths = [LUDB / str(k) for k in range(1, args.records + 1)]
    signals = np.stack([read_ludb(p) for p in paths]).astype(np.float32)
    nk_signals = signals[: args.nk_records]
    ours_same = rate_single(nk_signals)
    neurokit, found = rate_neurokit(nk_signals)
    ours_on_nk_records = accuracy(paths[: args.nk_records])["boundaries_all_leads"]
    result = {
        "ludb_records": len(paths),
        "accuracy": accuracy(paths),
        "accuracy_on_the_nk_records": {
            "records": len(nk_signals),
            "ours_median_beat": ours_on_nk_records,
            "nk_ecg_process_per_beat": neurokit_accuracy(paths, found),
        },
        "speed": {
            "load_average_1min": os.getloadavg()[0],
            "one_process": rate_single(signals),
            f"records_per_s_{args.workers}_processes": rate_pool(signals, args.workers),
            "reference_same_records": {
                "records": len(nk_signals),
                "ours_one_process": ours_same,
                "nk_ecg_process_per_lead_one_process": neurokit,
                "cpu_ratio_nk_over_ours": neurokit["cpu_ms_per_record"] / ours_same["cpu_ms_per_record"],
                "wall_ratio_ours_over_nk": ours_same["records_per_s"] / neurokit["records_per_s"],
            },
        },
    }
    if args.store:
        result["speed"][f"store_{args.workers}_workers"] = rate_store(args.store, args.workers)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
