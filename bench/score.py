"""Benchmark of `msaic score`: end-to-end records/s on a synthetic archive, the share of worker
time in read (decode + harmonize), quality and model (probabilities + explanation), and the peak
memory of the whole process tree, at two archive sizes (memory should not grow with the archive:
10,000 and 20,000 records by default, both past the workers' first minute, in which their RSS
grows from about 0.6 to 1.1 GB and then stays).

The archive is a synthetic base archive (`msaic synth`, four sites recording at 250, 500 and
1000 Hz) whose 500 Hz records (the target's "10-s 500 Hz records"; `--rate any` takes the sites'
mix) are replicated by hard links into as many site folders as needed, so 20,000 records cost no
synthesis time and little disk. The reference in the same run is the decode + harmonize floor:
`record_rows` alone, in one process, on the scored records; the ratio says how close scoring comes
to reading. Unless --model is given, the model is MSAIC-Net trained on another synthetic archive
(same sites, another seed). Prints one JSON object.

    .venv/bin/python bench/score.py [--records 20000] [--small 10000] [--workers 2] [--rate 500|any]
        [--model DIR] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

from _measure import emit, run_measured, workdir

ROOT = Path(__file__).resolve().parents[1]
TARGET_RECORDS_PER_S = 200.0


def base_records(base: Path, rate: int | None) -> list[Path]:
    """The base archive's headers, those sampled at `rate` Hz only when given."""
    from tasks.ingest.wfdb_header import header_text, parse_header

    units = sorted(base.rglob("*.hea"))
    if rate is None:
        return units
    return [p for p in units if parse_header(header_text(p.read_bytes())).fs == rate]


def replicate(units: list[Path], base: Path, out: Path, records: int) -> int:
    """`records` records as hard links of the base records `units`, `copy_<k>/` per replica (a site each)."""
    made = 0
    k = 0
    while made < records:
        for hea in units[: records - made]:
            for src in (hea, hea.with_suffix(".dat")):
                dst = out / f"copy_{k:03d}" / src.relative_to(base)
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.link(src, dst)
            made += 1
        k += 1
    return made


def read_floor(archive: Path, limit: int = 300) -> float:
    """Records/s of decode + harmonize alone (the ingest path scoring reuses), one process, on the
    first `limit` records of the scored archive."""
    from tasks.ingest.archive import RecordUnit
    from tasks.ingest.records import IngestConfig, Task, content_sha256, record_rows
    from tasks.ingest.run import walk_archive
    from tasks.settings import Settings

    cfg = IngestConfig.for_store(archive, Settings(pseudonym_key="bench"))
    walk = (u for u in walk_archive(archive, Settings()) if isinstance(u, RecordUnit))
    units = [u for _, u in zip(range(limit), walk, strict=False)]
    start = time.perf_counter()
    for unit in units:
        record_rows(Task(unit, "bench", None), content_sha256(unit.files), cfg)
    return len(units) / (time.perf_counter() - start)


def train_model(training: Path, work: Path, config: str | None) -> Path:
    """A real registered model: a training archive (another seed than the scored one) ingested,
    checked, measured, trained as `msaic train` trains (the config's epochs with early stopping),
    so that it flags what a real model flags (a one-epoch model flags most records, and each flag
    costs an explanation)."""
    from flows.ingest import ingest
    from flows.quality import quality
    from flows.train import train
    from tasks.features.run import build_features
    from tasks.settings import Settings

    store = work / "store"
    settings = Settings(workers=2)
    ingest(training, store, settings=settings)
    quality(store, settings)
    build_features(store, settings)
    trained = train(store, model="msaic", split="site", config=Path(config) if config else None)
    return trained[0].path


def run_score(archive: Path, model: Path, out: Path, workers: int) -> dict:
    cmd = [sys.executable, "-m", "flows.cli", "score", str(archive), "--model", str(model), "--out", str(out)]
    cmd += ["--workers", str(workers)]
    env = (
        {"PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120"}
        | os.environ
        | {"MSAIC_PSEUDONYM_KEY": "bench"}
    )
    wall, peak = run_measured(cmd, cwd=ROOT, env=env)
    summary = json.loads((out / "score_summary.json").read_text())
    seconds, counts = summary["seconds"], summary["counts"]
    busy = seconds["read"] + seconds["quality"] + seconds["model"] + seconds.get("explain", 0.0)
    records = summary["counts"]["records"]
    return {
        "records": records,
        "windows": summary["counts"]["windows"],
        "flagged": summary["counts"]["flagged"],
        "flagged_share_of_scored": round(counts["flagged"] / max(1, counts["scored"]), 3),
        "wall_s": round(wall, 2),
        "records_per_s_end_to_end": round(records / wall, 1),
        "records_per_s_in_run": round(summary["records_per_s"], 1),
        "share_read": round(seconds["read"] / busy, 3),
        "share_quality": round(seconds["quality"] / busy, 3),
        "share_model": round((seconds["model"] + seconds.get("explain", 0.0)) / busy, 3),
        "share_model_of_which_explain": round(seconds.get("explain", 0.0) / busy, 3),
        "worker_ms_per_record": {k: round(1000 * v / records, 2) for k, v in seconds.items()},
        "peak_rss_mb_process_tree": round(peak, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument(
        "--small",
        type=int,
        default=10_000,
        help="the smaller archive, for memory growth (a run shorter than about a minute ends while the "
        "workers' allocators still warm up: 2,000 records measure that, not growth with the archive)",
    )
    parser.add_argument("--base", type=int, default=400, help="records of the synthetic base archive")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--rate",
        default="500",
        choices=["250", "500", "1000", "any"],
        help="score only the base records sampled at this rate (Hz), as the target states for 10-s 500 Hz "
        "records; 'any' scores the sites' mix (250, 500 and 1000 Hz: resampled, and 2x the bytes at 1000)",
    )
    parser.add_argument("--model", type=Path, help="registered model dir (default: train one on the base)")
    parser.add_argument("--config", help="model config to train (default: the packaged MSAIC-Net default)")
    parser.add_argument("--workdir", type=Path, help="keep inputs and outputs here (default: temporary)")
    args = parser.parse_args()

    with workdir(args.workdir, "msaic-bench-score-") as work:
        from tasks.synth.archive import SynthConfig, write_archive
        from tasks.synth.sites import first_sites

        base, training = work / "base", work / "training"
        for path, seed in ((base, 3), (training, 4)):  # the model never saw the records it scores
            if not path.exists():
                synth = SynthConfig(n_records=args.base, sites=first_sites(4), seed=seed)
                write_archive(synth, path, workers=2)
        model = args.model or train_model(training, work, args.config)
        rate = None if args.rate == "any" else int(args.rate)
        units = base_records(base, rate)
        if not units:
            sys.exit(f"the base archive has no records at {args.rate} Hz")
        results = {}
        for n in (args.small, args.records):
            archive = work / f"archive-{args.rate}hz-{n}"
            if not archive.exists():
                replicate(units, base, archive, n)
            out = work / f"out-{n}"
            shutil.rmtree(out, ignore_errors=True)
            results[n] = run_score(archive, model, out, args.workers)
            print(json.dumps({"size": n, **results[n]}), file=sys.stderr, flush=True)  # progress
        big = results[args.records]
        floor = read_floor(work / f"archive-{args.rate}hz-{args.small}")
        emit(
            {
                "bench": "score",
                "cpu_count": os.cpu_count(),
                "workers": args.workers,
                "rate_hz": args.rate,
                "distinct_records": len(units),
                "model": model.name,
                "sizes": results,
                "records_per_s_end_to_end": big["records_per_s_end_to_end"],
                "target_records_per_s": TARGET_RECORDS_PER_S,
                "target_met": big["records_per_s_end_to_end"] >= TARGET_RECORDS_PER_S,
                "reference_read_only_records_per_s_1_process": round(floor, 1),
                "ratio_in_run_rate_to_read_only_x_workers": round(
                    big["records_per_s_in_run"] / (floor * args.workers), 3
                ),
                "memory_ratio_large_to_small": round(
                    big["peak_rss_mb_process_tree"] / results[args.small]["peak_rss_mb_process_tree"], 3
                ),
            }
        )


if __name__ == "__main__":
    main()
