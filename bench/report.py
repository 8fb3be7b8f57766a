"""Benchmark: the data-quality report on a synthetic store (600 records, 4 sites by default,
ingested and checked by the real pipeline). Times `build_report` cold (a fresh interpreter:
imports and the first Great Expectations validation included) and warm, and compares the way the
report fetches the worst records' strips (row groups pruned on record_id) with a plain dataset
filter and with a read of the whole waveforms table, on the same store in the same run. Prints
one JSON object; the target is a cold report in < 10 s."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.dataset as ds

from tasks import store as st
from tasks.settings import Settings

_TIMED = """
import json, sys, time
from datetime import UTC, datetime
from pathlib import Path
t0 = time.perf_counter()
from tasks.report.quality import build_report
from tasks.settings import Settings
t1 = time.perf_counter()
build_report(Path(sys.argv[1]), Settings(), datetime.now(UTC))
t2, cpu = time.perf_counter(), time.process_time()
build_report(Path(sys.argv[1]), Settings(), datetime.now(UTC))
print(json.dumps({"cold_wall_s": t2 - t0, "cold_cpu_s": cpu, "import_s": t1 - t0,
                  "warm_wall_s": time.perf_counter() - t2}))
"""


def timed(store: Path) -> dict[str, float]:
    """One cold run in a fresh interpreter (imports and the first validation included), then a warm
    one in the same process."""
    done = subprocess.run(
        [sys.executable, "-c", _TIMED, str(store)], check=True, capture_output=True, text=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def make_store(root: Path, records: int, sites: int, workers: int) -> Path:
    from tasks.ingest.run import ingest_archive
    from tasks.quality.run import run_quality
    from tasks.synth.archive import SynthConfig, write_archive
    from tasks.synth.sites import all_sites

    names = tuple(s.name for s in all_sites()[:sites])
    write_archive(SynthConfig(records, names, seed=5), root / "archive", workers=workers)
    settings = Settings(workers=workers, pseudonym_key="bench-key")
    ingest_archive(root / "archive", root / "store", settings)
    run_quality(root / "store", settings)
    return root / "store"


def bench_fetch(store: Path, n: int) -> dict[str, float]:
    """The worst records' signals as the report fetches them, against a plain dataset filter and a
    read of the whole waveforms table."""
    from tasks.report import quality as rq

    ids = rq.worst_records(rq.load_inputs(store).windows, n)["record_id"].tolist()
    wanted = ds.field("record_id").isin(ids)
    ways = {
        "report_row_group_pruned_s": lambda: rq.load_signals(store, ids),
        "dataset_filter_s": lambda: st.read_table(store, "waveforms", ["record_id", "signal"], wanted),
        "whole_table_read_s": lambda: st.read_table(store, "waveforms", ["record_id", "signal"]),
    }
    out: dict[str, float] = {"records": len(ids)}
    for name, fetch in ways.items():
        started = time.perf_counter()
        got = fetch()
        out[name] = round(time.perf_counter() - started, 3)
        assert len(got) >= len(ids)
    out["speedup_vs_filter"] = round(out["dataset_filter_s"] / out["report_row_group_pruned_s"], 1)
    out["speedup_vs_whole"] = round(out["whole_table_read_s"] / out["report_row_group_pruned_s"], 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=600)
    parser.add_argument("--sites", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--store", type=Path, help="an existing checked store (default: make one)")
    parser.add_argument("--repeat", type=int, default=3, help="cold runs (the median is printed)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="msaic-bench-report-") as tmp:
        store = args.store or make_store(Path(tmp), args.records, args.sites, args.workers)
        load_before = os.getloadavg()[0]
        runs = [timed(store) for _ in range(args.repeat)]
        result = {
            "benchmark": "report_quality",
            "cpu_count": os.cpu_count(),
            "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
            "records": st.dataset(store, "records").count_rows(),
            "repeat": args.repeat,
            **{key: round(statistics.median(r[key] for r in runs), 2) for key in runs[0]},
            "strip_fetch": bench_fetch(store, Settings().report_worst_records),
        }
    result["target_cold_s"] = 10
    result["meets_target"] = result["cold_wall_s"] < result["target_cold_s"]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
