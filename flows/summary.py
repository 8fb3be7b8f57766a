"""Summaries printed at the end of a CLI run and kept as Prefect markdown artifacts, both written
from one structure: a `Summary` (tables, then lines of text) rendered by `print_summary` (rich) and
`markdown`. Each command builds its `Summary` once from the totals of its run."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from rich.console import Console
from rich.table import Table

from tasks.ingest import IngestTotals


@dataclass(frozen=True)
class SummaryTable:
    """One table: a title, column names, rows of text; the `right` columns (counts) are
    right-justified."""

    title: str
    columns: Sequence[str]
    rows: list[Sequence[str]]
    right: Sequence[str] = ()


@dataclass
class Summary:
    """What a run did: tables (an empty one is left out), then lines of text."""

    tables: list[SummaryTable] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)


def rich_table(t: SummaryTable) -> Table:
    table = Table(title=t.title)
    for col in t.columns:
        table.add_column(col, justify="right" if col in t.right else "left")
    for row in t.rows:
        table.add_row(*row)
    return table


def print_summary(summary: Summary, console: Console | None = None) -> None:
    """The summary on the terminal: rich tables, then its lines."""
    console = console or Console()
    for t in summary.tables:
        if t.rows:
            console.print(rich_table(t))
    for line in summary.lines:
        console.print(line)


def markdown(summary: Summary) -> str:
    """The summary as markdown (a Prefect artifact): tables, then its lines."""
    parts = []
    for t in summary.tables:
        if t.rows:
            rows = [t.columns, ["---"] * len(t.columns), *t.rows]
            parts.append(f"**{t.title}**\n\n" + "\n".join("| " + " | ".join(r) + " |" for r in rows))
    return "\n\n".join([*parts, *summary.lines])


def _counts(counter: Counter) -> str:
    """`name n, name n` in decreasing count, or `none`."""
    return ", ".join(f"{k} {n}" for k, n in counter.most_common()) or "none"


def ingest_summary(totals: IngestTotals) -> Summary:
    """Records and windows per site, MI labels, then quarantined inputs by reason."""
    states = ("positive", "negative", "unknown")
    sites = SummaryTable(
        "msaic ingest",
        ("site", "records", "windows", "MI+", "MI-", "MI unknown"),
        [
            [site, str(totals.records[site]), str(totals.windows[site])]
            + [str(totals.labels[(site, s)]) for s in states]
            for site in sorted(totals.windows)
        ],
        right=("records", "windows", "MI+", "MI-", "MI unknown"),
    )
    quarantined = SummaryTable(
        "quarantined",
        ("stage", "reason", "inputs"),
        [[stage, reason, str(n)] for (stage, reason), n in sorted(totals.quarantined.items())],
    )
    lines = [
        f"{sum(totals.records.values())} records ({sum(totals.windows.values())} windows) written, "
        f"{totals.unchanged} unchanged, {totals.replaced} replaced, "
        f"{sum(totals.quarantined.values())} quarantined",
        f"records by format: {_counts(totals.formats)}",
    ]
    if totals.skipped:
        lines.append(f"files without a recording, skipped: {_counts(totals.skipped)}")
    return Summary([sites, quarantined], lines)
