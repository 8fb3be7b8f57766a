"""Prefect flow `quality`: the 12-lead signal-quality gate over a store (writes `quality/`).
The work is `tasks.quality.run.run_quality`; this module wires it to Prefect (local processes, or
one Prefect task per shard on Dask: `flows.cluster`) and to `msaic qc`."""

from __future__ import annotations

import argparse

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from data_contracts.schemas import QC_VERDICTS
from flows.cluster import on_cluster, run_stage
from flows.options import (
    add_dask,
    add_profile,
    add_store,
    add_workers,
    cluster_of,
    settings_of,
    start_local_workers,
)
from flows.progress import counting
from flows.summary import Summary, SummaryTable, markdown, print_summary
from tasks.quality import QualityTotals, run_quality
from tasks.settings import Settings
from tasks.store.location import Location

quality_task = task(run_quality, name="quality-check", cache_policy=NO_CACHE)


def _rows(totals: QualityTotals) -> list[list[str]]:
    """One row per site: windows checked in this run by verdict."""
    sites = sorted({site for site, _ in totals.verdicts})
    return [
        [
            site,
            *(str(totals.verdicts[(site, v)]) for v in QC_VERDICTS),
            str(sum(totals.verdicts[(site, v)] for v in QC_VERDICTS)),
        ]
        for site in sites
    ]


def _closing(totals: QualityTotals) -> str:
    top = ", ".join(f"{flag} {n}" for flag, n in totals.flag_totals().most_common(5))
    return (
        f"{totals.checked} windows checked ({totals.qc_version}), {totals.up_to_date} already up to date, "
        f"{totals.removed} stale rows replaced, {sum(totals.quarantined.values())} part files quarantined; "
        f"flagged leads: {top or 'none'}"
    )


def quality_summary(totals: QualityTotals) -> Summary:
    """Windows checked in this run per site and verdict, then the closing line."""
    columns = ("site", *QC_VERDICTS, "checked")
    table = SummaryTable("msaic qc", columns, _rows(totals), right=columns[1:])
    return Summary([table], [_closing(totals)])


@flow(name="quality")
def quality(store: Location, settings: Settings | None = None, show_progress: bool = False) -> QualityTotals:
    """Check every window of the store without a current quality row; flags and verdicts to `quality/`."""
    settings = settings or Settings()
    with counting("checking", "windows", show_progress) as advance:
        totals = run_stage(quality_task, "quality-shard", store, settings, on_progress=advance)
    create_markdown_artifact(
        markdown(quality_summary(totals)), key="quality-summary", description=f"quality of {store}"
    )
    return totals


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("qc", help="flag noisy, flat, saturated or reversed leads; a verdict per window")
    add_store(p, "store directory (ingested)")
    add_workers(p)
    add_profile(p, "QC profile JSON (default: the packaged one)")
    add_dask(p)
    p.set_defaults(func=run, warm_up=start_local_workers)


def run(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    with on_cluster(quality, cluster_of(args, settings)) as the_flow:
        totals = the_flow(args.store, settings, show_progress=True)
    print_summary(quality_summary(totals))
    return 0
