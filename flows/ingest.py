"""Prefect flow `ingest`: a raw ECG archive into the Parquet store (records/, waveforms/,
quarantine/). The work is `tasks.ingest.run.ingest_archive`; this module wires it to Prefect
and to the `msaic ingest` command."""

from __future__ import annotations

import argparse
from pathlib import Path

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from flows.args import existing_path, output_dir, positive_int
from flows.progress import counting
from flows.summary import ingest_markdown, print_ingest
from tasks.ingest.records import IngestTotals
from tasks.ingest.run import ingest_archive
from tasks.settings import Settings

ingest_task = task(ingest_archive, name="ingest-archive", cache_policy=NO_CACHE)


@flow(name="ingest")
def ingest(
    archive: Path,
    store: Path,
    site: str | None = None,
    settings: Settings | None = None,
    show_progress: bool = False,
) -> IngestTotals:
    """Ingest one archive; inputs that cannot be processed are quarantined and counted."""
    settings = settings or Settings()
    with counting("ingesting", "windows", show_progress) as advance:
        totals = ingest_task(archive, store, settings, site, advance)
    create_markdown_artifact(
        ingest_markdown(totals), key="ingest-summary", description=f"ingest of {archive}"
    )
    return totals


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ingest", help="ingest a raw ECG archive (directory, zip, tar) into the store")
    p.add_argument("archive", type=existing_path, help="directory, .zip, .tar or .tar.gz")
    p.add_argument("--store", type=output_dir, required=True, help="store directory (created if missing)")
    p.add_argument("--site", help="site name for every record (default: metadata, else subfolder name)")
    p.add_argument("--workers", type=positive_int, help="worker processes (default: CPU count)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    overrides = {"workers": args.workers} if args.workers else {}
    totals = ingest(args.archive, args.store, args.site, Settings(**overrides), show_progress=True)
    print_ingest(totals)
    return 0
