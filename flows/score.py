"""Prefect flow `score_archive`: screen a whole archive with a registered model into OUT
(scores/, quarantine/, worklist.csv, worklist.html). The work is `tasks.scoring.run`; this module
chooses where shards run (local processes by default, or shard-level Prefect tasks on Dask
through prefect-dask's `DaskTaskRunner`: `flows.cluster`) and wires the `msaic score` command."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
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
from flows.cluster import DaskCluster, on_cluster, run_stage
from flows.options import (
    add_dask,
    add_profile,
    add_site,
    add_workers,
    cluster_of,
    settings_of,
    start_local_workers,
)
from flows.summary import Summary, SummaryTable, markdown, print_summary
from tasks.review import write_worklist
from tasks.scoring import ScoreTotals, expected_inputs, score_archive_run
from tasks.settings import Settings
from tasks.store.location import Location

score_local = task(score_archive_run, name="score-archive-local", cache_policy=NO_CACHE)
worklist_task = task(write_worklist, name="worklist", cache_policy=NO_CACHE)


class _RateColumn(ProgressColumn):
    def render(self, task) -> Text:
        return Text(f"{task.speed or 0:.0f} records/s")


@flow(name="score_archive")
def score_archive(
    archive: Location,
    model: Location,
    out: Location,
    settings: Settings | None = None,
    site: str | None = None,
    show_progress: bool = False,
) -> ScoreTotals:
    """Score every record of ARCHIVE into OUT; resumes what an earlier run with OUT left."""
    settings = settings or Settings()

    def run(on_progress: Callable[[int], None] | None) -> ScoreTotals:
        return run_stage(
            score_local, "score-shard", archive, model, out, settings, on_progress=on_progress, site=site
        )

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
    archive: Location,
    model: Location,
    out: Location,
    settings: Settings,
    cluster: DaskCluster | None = None,
    site: str | None = None,
    show_progress: bool = False,
) -> ScoreTotals:
    """Run the flow on `cluster` (None: local processes)."""
    with on_cluster(score_archive, cluster) as the_flow:
        return the_flow(archive, model, out, settings, site=site, show_progress=show_progress)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("score", help="screen a whole archive with a registered model (resumable)")
    p.add_argument(
        "archive", type=existing_location, help="directory, .zip, .tar or .tar.gz (or s3://bucket/prefix)"
    )
    p.add_argument(
        "--model",
        type=model_dir,
        required=True,
        help="registered model directory (STORE/models/<id>, or s3://…)",
    )
    p.add_argument(
        "--out", type=store_location, required=True, help="output directory or s3:// prefix; rerun to resume"
    )
    add_workers(p)
    add_dask(p)
    add_site(p)
    add_profile(p, "QC profile JSON of the quality gate (default: the model's, else the packaged one)")
    p.set_defaults(func=run, warm_up=start_local_workers)


def run(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    totals = run_score(
        args.archive, args.model, args.out, settings, cluster_of(args, settings), args.site, True
    )
    print_summary(score_summary(totals, args.out.resolve()))
    return 0
