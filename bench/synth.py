"""Benchmark: records/s of the synthetic archive generator (10-s 500 Hz 12-lead records written as
WFDB on 2 worker processes) against neurokit2's `ecg_simulate(method="multileads")`, in one run.
Prints one JSON object."""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import neurokit2 as nk

from tasks.synth.archive import SynthConfig, write_archive
from tasks.synth.sites import all_sites


def bench_synth(records: int, workers: int) -> dict[str, float]:
    sites = tuple(s.name for s in all_sites() if s.fs == 500)
    with tempfile.TemporaryDirectory(prefix="msaic-bench-synth-") as tmp:
        started = time.perf_counter()
        summary = write_archive(SynthConfig(records, sites, seed=1), Path(tmp) / "out", workers=workers)
        wall = time.perf_counter() - started
    return {"records": summary.records, "seconds": round(wall, 2), "records_per_s": round(records / wall, 1)}


def bench_neurokit(records: int) -> dict[str, float]:
    started = time.perf_counter()
    for i in range(records):
        nk.ecg_simulate(duration=10, sampling_rate=500, method="multileads", random_state=i)
    wall = time.perf_counter() - started
    return {"records": records, "seconds": round(wall, 2), "records_per_s": round(records / wall, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=4000, help="records for the generator")
    parser.add_argument("--nk-records", type=int, default=10, help="records for neurokit2")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    result = {
        "benchmark": "synth",
        "cpu_count": os.cpu_count(),
        "workers": args.workers,
        "msaic_synth_500hz_10s": bench_synth(args.records, args.workers),
        "neurokit2_multileads_500hz_10s": bench_neurokit(args.nk_records),
    }
    result["speedup"] = round(
        result["msaic_synth_500hz_10s"]["records_per_s"]
        / result["neurokit2_multileads_500hz_10s"]["records_per_s"],
        1,
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
