"""Prefect flow `score_archive`: screen a whole archive with a registered model into OUT
(scores/, quarantine/, worklist.csv, worklist.html). The work is `tasks.scoring.run`; this module
chooses where shards run (local processes by default, or shard-level Prefect tasks on Dask
through prefect-dask's `DaskTaskRunner`) and wires the `msaic score` command."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from prefect import Task, flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectFuture
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from flows.args import existing_location, model_dir, store_location
from flows.options import add_profile, add_site, add_workers, settings_of
from flows.summary import Summary, SummaryTable, markdown, print_summary
from tasks.review import write_worklist
from tasks.scoring import ScoreTotals, expected_inputs, run_shard, score_archive_run, start_worker_server
from tasks.settings import Settings
from tasks.store.location import Location

score_shard = task(run_shard, name="score-shard", cache_policy=NO_CACHE)
score_local = task(score_archive_run, name="score-archive-local", cache_policy=NO_CACHE)
worklist_task = task(write_worklist, name="worklist", cache_policy=NO_CACHE)


class TaskExecutor:
    """The shard runner's executor for shards run as Prefect tasks of `task` on the flow's task
    runner (Dask): `submit(partial(task.fn, **kw), job)` becomes `task.submit(job, **kw)`."""

    def __init__(self, task: Task) -> None:
        self.task = task

    def submit(self, fn: Callable[..., Any], /, *args: Any) -> PrefectFuture:
        call = fn if isinstance(fn, partial) else partial(fn)
        if call.func is not self.task.fn:
            raise ValueError(f"{self.task.name} runs {self.task.fn.__name__}, not {call.func.__name__}")
        return self.task.submit(*call.args, *args, **call.keywords)


class _RateColumn(ProgressColumn):
    def render(self, task) -> Text:
        return Text(f"{task.speed or 0:.0f} records/s")


@flow(name="score_archive")
def score_archive(
    archive: Location,
    model: Path,
    out: Location,
    settings: Settings | None = None,
    site: str | None = None,
    use_dask: bool = False,
    show_progress: bool = False,
) -> ScoreTotals:
    """Score every record of ARCHIVE into OUT; resumes what an earlier run with OUT left."""
    settings = settings or Settings()

    def run(on_progress: Callable[[int], None] | None) -> ScoreTotals:
        if use_dask:  # one Prefect task per shard, on the flow's DaskTaskRunner
            return score_archive_run(
                archive, model, out, settings, TaskExecutor(score_shard), on_progress=on_progress, site=site
            )
        return score_local(archive, model, out, settings, on_progress=on_progress, site=site)

    if show_progress:
        with Progress(
            TextColumn("scoring"),
            BarColumn(),
            MofNCompleteColumn(),
            _RateColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
        ) as bar:
            job = bar.add_task("score", total=expected_inputs(archive, settings))
            totals = run(lambda n: bar.advance(job, n))
    else:
        totals = run(None)
    _, _, n = worklist_task(out.resolve())
    summary = score_summary(totals, out.resolve())
    summary.lines.append(f"worklist: {n} rows")
    create_markdown_artifact(markdown(summary), key="score-summary", description=f"{archive}")
    return totals


def score_summary(totals: ScoreTotals, out: Path) -> Summary:
    """Counts of the run, quarantined inputs by stage and reason, speed and where the outputs are."""
    c = totals.counts
    counts = [
        ("records read", c["records"]),
        ("windows", c["windows"]),
        ("scored: pass", c["pass"]),
        ("scored: limited (flagged leads)", c["limited"]),
        ("not scored: quality reject", c["rejected"]),
        ("not scored: no median beat", c["no_input"]),
        ("flagged at the model threshold", c["flagged"]),
        ("quarantined inputs", c["quarantined"]),
        ("inputs already in OUT (resumed)", totals.records_resumed),
        ("files without a recording (skipped)", sum(totals.skipped.values())),
    ]
    busy = sum(v for k, v in totals.seconds.items() if k != "walk") or 1.0
    split = ", ".join(f"{k} {100 * v / busy:.0f}%" for k, v in sorted(totals.seconds.items()) if k != "walk")
    return Summary(
        [
            SummaryTable(
                f"msaic score · model {totals.model_id}",
                ("what", "count"),
                [(what, str(n)) for what, n in counts],
                right=("count",),
            ),
            SummaryTable(
                "quarantined",
                ("stage:reason", "inputs"),
                [(reason, str(n)) for reason, n in sorted(totals.quarantined.items())],
                right=("inputs",),
            ),
        ],
        [
            f"{c['records']} records in {totals.wall_s:.1f} s "
            f"({totals.records_per_s:.1f} records/s); worker time: {split}",
            f"quality gate: QC profile {totals.qc_profile['version']} ({totals.qc_profile['sha256'][:12]})",
            f"scores:   {out / 'scores'}",
            f"worklist: {out / 'worklist.csv'}\n          {out / 'worklist.html'}",
            f"quarantine: {out / 'quarantine'}",
            *([f"warning: {totals.qc_warning}"] if totals.qc_warning else []),
        ],
    )


def run_score(
    archive: Path,
    model: Path,
    out: Path,
    settings: Settings,
    dask_address: str | None = None,
    dask_local: bool = False,
    site: str | None = None,
    show_progress: bool = False,
) -> ScoreTotals:
    """Run the flow with the task runner the options ask for."""
    the_flow = score_archive
    if dask_address or dask_local:
        from prefect_dask import DaskTaskRunner

        runner = (
            DaskTaskRunner(address=dask_address)
            if dask_address
            else DaskTaskRunner(
                cluster_kwargs={
                    "n_workers": settings.workers,
                    "threads_per_worker": 1,
                    "processes": True,
                    "dashboard_address": None,
                }
            )
        )
        the_flow = score_archive.with_options(task_runner=runner)
    return the_flow(
        archive,
        model,
        out,
        settings,
        site=site,
        use_dask=bool(dask_address or dask_local),
        show_progress=show_progress,
    )


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("score", help="screen a whole archive with a registered model (resumable)")
    p.add_argument(
        "archive", type=existing_location, help="directory, .zip, .tar or .tar.gz (or s3://bucket/prefix)"
    )
    p.add_argument(
        "--model", type=model_dir, required=True, help="registered model directory (STORE/models/<id>)"
    )
    p.add_argument(
        "--out", type=store_location, required=True, help="output directory or s3:// prefix; rerun to resume"
    )
    add_workers(p, "worker processes or Dask workers (default: CPU count)")
    p.add_argument("--dask-address", help="run shards on this Dask scheduler (tcp://host:8786)")
    p.add_argument("--dask-local", action="store_true", help="run shards on a local Dask cluster")
    add_site(p)
    add_profile(p, "QC profile JSON of the quality gate (default: the model's, else the packaged one)")
    p.set_defaults(func=run, warm_up=warm_up)


def warm_up(args: argparse.Namespace) -> None:
    """Called by the CLI while Prefect's temporary API still boots: start the forkserver of the
    local workers, whose imports (torch) then overlap the boot instead of following it. Invalid
    settings are left for `run` to report."""
    try:
        workers = settings_of(args).workers
    except ValueError:
        return
    if workers > 1 and not (args.dask_address or args.dask_local):
        start_worker_server()


def run(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    totals = run_score(
        args.archive, args.model, args.out, settings, args.dask_address, args.dask_local, args.site, True
    )
    print_summary(score_summary(totals, args.out.resolve()))
    return 0
