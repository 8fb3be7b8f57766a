"""Prefect flow `quality_report` and the `msaic report quality` command: the data-quality report
of a store as a self-contained HTML page in STORE/reports/ and a Prefect markdown artifact. The
work is in `tasks.report.quality`."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from rich.console import Console

from flows.args import existing_store
from tasks.report import QualityReport, build_report, load_inputs, summary_line, write_report
from tasks.settings import Settings
from tasks.store.location import Location

build_task = task(build_report, name="build-quality-report", cache_policy=NO_CACHE)
write_task = task(write_report, name="write-quality-report", cache_policy=NO_CACHE)


@flow(name="quality_report")
def quality_report(store: Location, settings: Settings | None = None) -> Location:
    """Build the report from the store, publish it, and return the timestamped HTML path."""
    now = datetime.now(UTC)
    report: QualityReport = build_task(store, settings or Settings(), now)
    path = write_task(store, report.html, now)
    create_markdown_artifact(
        f"{report.markdown}\n\nFull report: `{path}`", key="quality-report", description=report.summary
    )
    return path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="generated reports (HTML in STORE/reports/)")
    kinds = p.add_subparsers(dest="report", required=True, metavar="REPORT")
    q = kinds.add_parser("quality", help="data-quality report: verdicts, flags, noise, quarantine, contracts")
    q.add_argument(
        "--store", type=existing_store, required=True, help="store directory (after msaic ingest and qc)"
    )
    q.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    path = quality_report(args.store)
    console = Console()
    console.print(summary_line(load_inputs(args.store)))
    console.print(f"quality report written to {path} (and {path.parent / 'quality.html'})")
    return 0
