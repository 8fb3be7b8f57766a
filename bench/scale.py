"""Scaling of `msaic ingest` and `msaic score`: the local process pool at 1 and 2 workers against a
local Dask cluster of 1 and 2 worker processes (one thread each: one core each), on the same
archive in the same run, the whole run pinned to as many cores as workers (`pinned`), through the
stages' own Prefect tasks (`flows.cluster.run_stage`: on Dask one Prefect task per shard on
prefect-dask's DaskTaskRunner, the committer in this process). Each backend runs with the shard
sizes the product gives it: the local ones in the pool, `cluster_shard_factor` times larger on Dask
(`Settings.shard_records`); the default archive holds a dozen Dask shards of each stage.

Each rate is taken once started: the records handed back after the first round of shard results
over the time after it (a pool's start, a flow's start, a Dask worker's first imports and model
load stay out); a Dask cluster is started once per size and warmed with one run on a small
archive, as a long-lived cluster would be; the stages' default shard sizes. Every round runs every
backend, the pool and Dask at equal cores back to back (their order alternating by round), and each
ratio is the median over the rounds of the ratio within a round (`measure`). The archives are the
500 Hz records of a synthetic base archive replicated by hard links (as bench/score.py builds
them). From the per-core rates of the 2-worker Dask cluster it derives the cores that 10 M records
need in an 8-hour night. Then the per-record cost of ingest and of reading the store back with the
archive and the store on S3 (a SeaweedFS started for the purpose, `bench/_storage.py`) against local
disk, on the first `--s3-records` records. Prints one JSON object; no timed assertions (the goals
are reported as met or not).

    .venv/bin/python bench/scale.py [--base 48] [--small 128] [--records 6144] [--rounds 5]
        [--model DIR] [--stages ingest score] [--s3-records 240] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from _measure import emit, workdir
from _storage import s3_overhead
from score import base_records, replicate, train_model

NIGHT_S = 8 * 3600
NIGHT_RECORDS = 10_000_000
GOAL_2_OVER_1 = 1.7  # 2 Dask workers over 1
GOAL_DASK_OVER_POOL = 0.85  # Dask within 15 % of the process pool at equal cores
BACKENDS = ("pool-1", "pool-2", "dask-1", "dask-2")
STAGES = ("ingest", "score")


@contextmanager
def pinned(cores: int) -> Iterator[None]:
    """This process, and the processes it starts meanwhile (a Dask cluster's workers, the pool's
    forkserver), on its first `cores` CPUs only: equal cores means the whole run on as many cores,
    this parent's commits included."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, sorted(before)[:cores])
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


@contextmanager
def cluster(workers: int) -> Iterator[Any]:
    """A local Dask cluster of `workers` single-threaded processes (no dashboard, 127.0.0.1), as
    `--dask-local` starts it."""
    from distributed import LocalCluster

    from flows.cluster import DaskCluster

    with LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None, host="127.0.0.1"
    ) as local:
        yield DaskCluster(address=local.scheduler_address)


class Clock:
    """An `on_progress` callback that notes when each shard result comes back. Its rate is the
    work after the first round of results (one per worker, which come back together) over the
    time after it: the start (a pool's processes, a Dask worker's imports and model load, the
    first shards) stays out."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.marks: list[tuple[float, int]] = []

    def __call__(self, n: int) -> None:
        self.marks.append((time.perf_counter(), n))

    def rate(self) -> float:
        """Records/s after the first round (nan without a second: a warm-up run)."""
        if len(self.marks) <= self.workers:
            return math.nan
        (t0, _), (t1, _) = self.marks[self.workers - 1], self.marks[-1]
        return sum(n for _, n in self.marks[self.workers :]) / (t1 - t0)


def stage_runs(model: Path | None, work: Path) -> dict[str, Callable[[Path, Any, int], dict[str, float]]]:
    """Per stage: run it on an archive on a cluster (None: the local pool) with `workers`, through
    the stage's own flow task and shard task (`flows.cluster.run_stage`), its progress clocked;
    its records, records/s once started and wall seconds."""
    from prefect import flow

    from flows.cluster import on_cluster, run_stage
    from flows.ingest import ingest_task
    from flows.score import score_local
    from tasks.settings import Settings

    @flow(name="bench-scale-ingest", validate_parameters=False)
    def ingest_clocked(archive: Path, store: Path, settings: Settings, clock: Clock) -> Any:
        return run_stage(ingest_task, "ingest-shard", archive, store, settings, None, clock)

    @flow(name="bench-scale-score", validate_parameters=False)
    def score_clocked(archive: Path, model: Path, out: Path, settings: Settings, clock: Clock) -> Any:
        return run_stage(score_local, "score-shard", archive, model, out, settings, on_progress=clock)

    def settings(workers: int) -> Settings:
        """The local cluster's workers see the archive, as with `--dask-local`."""
        return Settings(workers=workers, workers_see_archive=True)

    def fresh(name: str) -> Path:
        path = work / name
        shutil.rmtree(path, ignore_errors=True)
        return path

    def ingest_run(archive: Path, where: Any, workers: int) -> dict[str, float]:
        clock, t = Clock(workers), time.perf_counter()
        with on_cluster(ingest_clocked, where) as run:
            totals = run(archive, fresh("store"), settings(workers), clock)
        records = sum(totals.records.values())
        per_window = records / sum(totals.windows.values())
        return _figures(records, clock.rate() * per_window, time.perf_counter() - t)

    def score_run(archive: Path, where: Any, workers: int) -> dict[str, float]:
        clock, t = Clock(workers), time.perf_counter()
        with on_cluster(score_clocked, where) as run:
            totals = run(archive, model, fresh("out"), settings(workers), clock)
        records = totals.counts["records"] + totals.counts["quarantined"]
        figures = _figures(records, clock.rate(), time.perf_counter() - t)
        # the shards' own work (read, quality, model, write), apart from how they are run
        work_s = sum(v for k, v in totals.seconds.items() if k != "walk")
        return {**figures, "shard_work_ms_per_record": round(1000 * work_s / records, 2)}

    return {"ingest": ingest_run, "score": score_run}


def _figures(records: int, rate: float, wall: float) -> dict[str, Any]:
    return {"records": records, "records_per_s": round(rate, 1), "wall_s": round(wall, 2)}


def measure(
    archive: Path, warm_up: Path, model: Path | None, work: Path, rounds: int, stages: list[str]
) -> dict[str, dict[str, list[dict[str, float]]]]:
    """stage → backend → its figures in each of `rounds` rounds, for `stages`. Both Dask clusters
    are started once (each pinned to its cores) and warmed with one run on `warm_up`, as long-lived
    clusters would be. Within a round, at 1 core then at 2, each stage runs on the pool and on Dask
    back to back, the pool first in even rounds and Dask first in odd ones: a ratio is taken
    between runs minutes apart at most, so the machine's drift over a run (the references moved by
    a third between runs of the same code) falls on both sides of it alike."""
    runs = {stage: run for stage, run in stage_runs(model, work).items() if stage in stages}
    out: dict[str, dict[str, list[dict[str, float]]]] = {s: {b: [] for b in BACKENDS} for s in runs}
    with ExitStack() as stack:
        clusters = {}
        for workers in (1, 2):
            with pinned(workers):
                clusters[workers] = stack.enter_context(cluster(workers))
                for run in runs.values():
                    run(warm_up, clusters[workers], workers)
        for r in range(rounds):
            for workers in (1, 2):
                order = [None, clusters[workers]] if r % 2 == 0 else [clusters[workers], None]
                with pinned(workers):
                    for stage, run in runs.items():
                        for where in order:
                            backend = f"{'pool' if where is None else 'dask'}-{workers}"
                            figures = run(archive, where, workers)
                            out[stage][backend].append(figures)
                            print(json.dumps({stage: {backend: figures}}), file=sys.stderr, flush=True)
    return out


def _median(values: list[float]) -> float:
    return float(np.median(values))


def ratios(tries: dict[str, list[dict[str, float]]]) -> dict[str, Any]:
    """A stage's figures (the median run of each backend) and its ratios against its references,
    each the median of the rounds' paired ratios (runs of the same round), with every round's."""
    rate = {b: [t["records_per_s"] for t in tries[b]] for b in BACKENDS}

    def paired(num: str, den: str) -> dict[str, Any]:
        per_round = [n / d for n, d in zip(rate[num], rate[den], strict=True)]
        return {"median": round(_median(per_round), 3), "rounds": [round(v, 3) for v in per_round]}

    two_over_one = paired("dask-2", "dask-1")
    dask_over_pool = {n: paired(f"dask-{n}", f"pool-{n}") for n in ("1", "2")}
    medians = {b: sorted(tries[b], key=lambda f: f["records_per_s"])[len(tries[b]) // 2] for b in BACKENDS}
    return {
        **medians,
        "dask_2_over_dask_1": two_over_one,
        "pool_2_over_pool_1": paired("pool-2", "pool-1"),
        "dask_over_pool_1_core": dask_over_pool["1"],
        "dask_over_pool_2_cores": dask_over_pool["2"],
        "goal_dask_2_over_1_met": two_over_one["median"] >= GOAL_2_OVER_1,
        "goal_dask_within_15pct_of_pool_met": all(
            v["median"] >= GOAL_DASK_OVER_POOL for v in dask_over_pool.values()
        ),
        "records_per_s_per_core_dask_2": round(_median(rate["dask-2"]) / 2, 1),
    }


def shard_sizes() -> dict[str, dict[str, int]]:
    """Records per shard of each stage in the pool and on Dask, as the runs above used them."""
    from tasks.settings import Settings

    settings = Settings()
    local = {"ingest": settings.shard_size, "score": settings.score_shard_size}
    return {
        stage: {"pool": n, "dask": settings.shard_records(n, on_cluster=True)} for stage, n in local.items()
    }


def night(per_core: dict[str, float]) -> dict[str, Any]:
    """Cores for `NIGHT_RECORDS` in `NIGHT_S`, per stage and for ingest then score, from the
    measured per-core rates (linear in cores: the measured 2-over-1 ratio says how far that holds)."""
    core_s = {stage: 1 / rate for stage, rate in per_core.items()}
    core_s["ingest_then_score"] = sum(core_s.values())
    return {
        "records": NIGHT_RECORDS,
        "hours": NIGHT_S / 3600,
        "needed_records_per_s": round(NIGHT_RECORDS / NIGHT_S, 1),
        "cores": {stage: math.ceil(NIGHT_RECORDS * s / NIGHT_S) for stage, s in core_s.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", type=int, default=48, help="records of the synthetic base archive")
    parser.add_argument("--small", type=int, default=128, help="records of the warm-up archive")
    parser.add_argument("--records", type=int, default=6144, help="records of the measured archive")
    parser.add_argument("--rounds", type=int, default=5, help="rounds (each runs every backend; medians)")
    parser.add_argument("--model", type=Path, help="registered model dir (default: train one)")
    parser.add_argument("--config", help="model config to train (default: the packaged MSAIC-Net default)")
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES), help="stages to measure")
    parser.add_argument("--s3-records", type=int, default=240, help="records of the S3 vs disk runs, 0: none")
    parser.add_argument("--workdir", type=Path, help="keep inputs and outputs here (default: temporary)")
    args = parser.parse_args()

    from flows.cli import quiet_prefect_defaults

    quiet_prefect_defaults()
    os.environ.setdefault("MSAIC_PSEUDONYM_KEY", "bench")
    with workdir(args.workdir, "msaic-bench-scale-") as work:
        from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

        from flows.cluster import workers_report_here
        from tasks.synth.archive import SynthConfig, write_archive
        from tasks.synth.sites import first_sites

        base, training = work / "base", work / "training"
        for path, seed in ((base, 3), (training, 4)):
            if not path.exists() and (path == base or (args.model is None and "score" in args.stages)):
                write_archive(
                    SynthConfig(n_records=args.base, sites=first_sites(4), seed=seed), path, workers=2
                )
        units = base_records(base, 500)
        small, large = work / f"archive-{args.small}", work / f"archive-{args.records}"
        for archive, n in ((small, args.small), (large, args.records)):
            if not archive.exists():
                replicate(units, base, archive, n)
        with workers_report_here(), temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
            # the model's store apart from the runs' `store`, which each run starts afresh
            model = args.model or (
                train_model(training, work / "model", args.config) if "score" in args.stages else None
            )
            rates = measure(large, small, model, work, args.rounds, args.stages)
        stages = {stage: ratios(tries) for stage, tries in rates.items()}
        per_core = {stage: s["records_per_s_per_core_dask_2"] for stage, s in stages.items()}
        emit(
            {
                "bench": "scale",
                "cpu_count": os.cpu_count(),
                "records": {"small": args.small, "large": args.records, "distinct": len(units)},
                "shard_records": shard_sizes(),
                "model": model.name if model else None,
                "stages": stages,
                "night": night(per_core) if len(per_core) == len(STAGES) else None,
                "s3_vs_local": s3_overhead(large, args.s3_records) if args.s3_records else None,
            }
        )


if __name__ == "__main__":
    main()
