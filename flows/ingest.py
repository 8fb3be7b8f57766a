"""Prefect flow `ingest`: a raw ECG archive into the Parquet store (records/, waveforms/,
quarantine/). The work is `tasks.ingest.run.ingest_archive`; this module wires it to Prefect
(local processes, or one Prefect task per shard on Dask: `flows.cluster`) and to `msaic ingest`."""

from __future__ import annotations

import argparse

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from flows.args import existing_location
from flows.cluster import on_cluster, run_stage
from flows.options import (
    add_dask,
    add_site,
    add_store,
    add_workers,
    cluster_of,
    settings_of,
    start_local_workers,
)
from flows.progress import counting
from flows.summary import ingest_summary, markdown, print_summary
from tasks.ingest import IngestTotals, ingest_archive
from tasks.settings import Settings
from tasks.store.location import Location

ingest_task = task(ingest_archive, name="ingest-archive", cache_policy=NO_CACHE)


@flow(name="ingest")
def ingest(
    archive: Location,
    store: Location,
    site: str | None = None,
    settings: Settings | None = None,
    show_progress: bool = False,
) -> IngestTotals:
    """Ingest one archive; inputs that cannot be processed are quarantined and counted."""
    settings = settings or Settings()
    with counting("ingesting", "windows", show_progress) as advance:
        totals = run_stage(ingest_task, "ingest-shard", archive, store, settings, site, advance)
    create_markdown_artifact(
        markdown(ingest_summary(totals)), key="ingest-summary", description=f"ingest of {archive}"
    )
    return totals


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ingest", help="ingest a raw ECG archive (directory, zip, tar) into the store")
    p.add_argument(
        "archive", type=existing_location, help="directory, .zip, .tar or .tar.gz (or s3://bucket/prefix)"
    )
    add_store(p, "store directory (created if missing)", writes=True)
    add_site(p)
    add_workers(p)
    add_dask(p)
    p.set_defaults(func=run, warm_up=start_local_workers)


def run(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    with on_cluster(ingest, cluster_of(args, settings)) as the_flow:
        totals = the_flow(args.archive, args.store, args.site, settings, show_progress=True)
    print_summary(ingest_summary(totals))
    return 0
