"""Prefect flow `quality`: the 12-lead signal-quality gate over a store (writes `quality/`).
The work is `tasks.quality.run.run_quality`; this module wires it to Prefect and to `msaic qc`."""

from __future__ import annotations

import argparse
from pathlib import Path

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from rich.console import Console
from rich.table import Table

from data_contracts.schemas import QC_VERDICTS
from flows.args import existing_dir, existing_path, positive_int
from flows.progress import counting
from tasks.quality.run import QualityTotals, run_quality
from tasks.settings import Settings

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


def quality_markdown(totals: QualityTotals) -> str:
    header = ["site", *QC_VERDICTS, "checked"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in _rows(totals)]
    return "\n".join([*lines, "", _closing(totals)])


def print_quality(totals: QualityTotals, console: Console | None = None) -> None:
    table = Table(title="msaic qc")
    for col in ("site", *QC_VERDICTS, "checked"):
        table.add_column(col, justify="left" if col == "site" else "right")
    for row in _rows(totals):
        table.add_row(*row)
    console = console or Console()
    console.print(table)
    console.print(_closing(totals))


@flow(name="quality")
def quality(store: Path, settings: Settings | None = None, show_progress: bool = False) -> QualityTotals:
    """Check every window of the store without a current quality row; flags and verdicts to `quality/`."""
    settings = settings or Settings()
    with counting("checking", "windows", show_progress) as advance:
        totals = quality_task(store, settings, on_progress=advance)
    create_markdown_artifact(
        quality_markdown(totals), key="quality-summary", description=f"quality of {store}"
    )
    return totals


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("qc", help="flag noisy, flat, saturated or reversed leads; a verdict per window")
    p.add_argument("--store", type=existing_dir, required=True, help="store directory (ingested)")
    p.add_argument("--workers", type=positive_int, help="worker processes (default: CPU count)")
    p.add_argument("--profile", type=existing_path, help="QC profile JSON (default: the packaged one)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    overrides = {"workers": args.workers} if args.workers else {}
    if args.profile:
        overrides["qc_profile"] = args.profile
    totals = quality(args.store, Settings(**overrides), show_progress=True)
    print_quality(totals)
    return 0
