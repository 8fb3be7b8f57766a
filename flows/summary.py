"""Summaries printed at the end of a CLI run, as rich tables and as Prefect markdown artifacts."""

from __future__ import annotations

from collections import Counter

from rich.console import Console
from rich.table import Table

from tasks.ingest.records import IngestTotals


def ingest_table(totals: IngestTotals) -> Table:
    """Records and windows per site, MI labels, then quarantined inputs by reason."""
    table = Table(title="msaic ingest", show_footer=False)
    for col in ("site", "records", "windows", "MI+", "MI-", "MI unknown"):
        table.add_column(col, justify="right" if col != "site" else "left")
    for site in sorted(totals.windows):
        table.add_row(
            site,
            str(totals.records[site]),
            str(totals.windows[site]),
            *(str(totals.labels[(site, s)]) for s in ("positive", "negative", "unknown")),
        )
    return table


def quarantine_table(totals: IngestTotals) -> Table:
    table = Table(title="quarantined")
    for col in ("stage", "reason", "inputs"):
        table.add_column(col)
    for (stage, reason), n in sorted(totals.quarantined.items()):
        table.add_row(stage, reason, str(n))
    return table


def ingest_markdown(totals: IngestTotals) -> str:
    lines = ["| site | records | windows | MI+ | MI- | MI unknown |", "|---|---|---|---|---|---|"]
    for site in sorted(totals.windows):
        counts = " | ".join(str(totals.labels[(site, s)]) for s in ("positive", "negative", "unknown"))
        lines.append(f"| {site} | {totals.records[site]} | {totals.windows[site]} | {counts} |")
    lines += ["", "| stage | reason | inputs |", "|---|---|---|"]
    lines += [f"| {s} | {r} | {n} |" for (s, r), n in sorted(totals.quarantined.items())]
    lines += [
        "",
        f"unchanged sources skipped: {totals.unchanged}; changed sources replaced: {totals.replaced}",
        f"records by format: {_counts(totals.formats)}; files without a recording: {_counts(totals.skipped)}",
    ]
    return "\n".join(lines)


def _counts(counter: Counter) -> str:
    """`name n, name n` in decreasing count, or `none`."""
    return ", ".join(f"{k} {n}" for k, n in counter.most_common()) or "none"


def print_ingest(totals: IngestTotals, console: Console | None = None) -> None:
    console = console or Console()
    console.print(ingest_table(totals))
    if totals.quarantined:
        console.print(quarantine_table(totals))
    console.print(
        f"{sum(totals.records.values())} records ({sum(totals.windows.values())} windows) written, "
        f"{totals.unchanged} unchanged, {totals.replaced} replaced, "
        f"{sum(totals.quarantined.values())} quarantined"
    )
    console.print(f"records by format: {_counts(totals.formats)}")
    if totals.skipped:
        console.print(f"files without a recording, skipped: {_counts(totals.skipped)}")
