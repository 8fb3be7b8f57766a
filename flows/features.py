"""Prefect flow `features`: median-beat measurements of every record into `features/`, then the
features contract (Great Expectations, per site) on what the store holds. The work is
`tasks.features.run.build_features`; this module wires it to Prefect and to `msaic features`."""

from __future__ import annotations

import argparse
from pathlib import Path

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from rich.console import Console
from rich.table import Table

from data_contracts.feature_columns import FEATURE_VERSION
from data_contracts.suites import ValidationSummary
from flows.args import existing_dir, positive_int
from flows.progress import counting
from tasks.features.contract import validate_features
from tasks.features.run import FeatureTotals, build_features
from tasks.settings import Settings

features_task = task(build_features, name="build-features", cache_policy=NO_CACHE)
contract_task = task(validate_features, name="features-contract", cache_policy=NO_CACHE)


def _rows(totals: FeatureTotals, contract: dict[str, ValidationSummary]) -> list[list[str]]:
    sites = sorted(set(totals.measured) | {s for s, _ in totals.skipped} | set(contract))
    rows = []
    for site in sites:
        skipped = ", ".join(f"{r} {n}" for (s, r), n in sorted(totals.skipped.items()) if s == site)
        check = contract.get(site)
        verdict = "-" if check is None else ("ok" if check.success else "FAILED: " + ", ".join(check.failed))
        rows.append([site, str(totals.measured[site]), skipped or "-", verdict])
    return rows


def _closing(totals: FeatureTotals) -> str:
    return (
        f"{totals.written} records written ({FEATURE_VERSION}), {totals.up_to_date} already up to date, "
        f"{totals.awaiting_qc} awaiting `msaic qc`, {totals.quarantined} quarantined, "
        f"{totals.stale_rows_removed} stale rows replaced"
    )


def features_markdown(totals: FeatureTotals, contract: dict[str, ValidationSummary]) -> str:
    lines = ["| site | measured | skipped | contract |", "|---|---|---|---|"]
    lines += ["| " + " | ".join(row) + " |" for row in _rows(totals, contract)]
    return "\n".join([*lines, "", _closing(totals)])


def print_features(
    totals: FeatureTotals, contract: dict[str, ValidationSummary], console: Console | None = None
) -> None:
    table = Table(title="msaic features")
    for col in ("site", "measured", "skipped", "contract"):
        table.add_column(col, justify="right" if col == "measured" else "left")
    for row in _rows(totals, contract):
        table.add_row(*row)
    console = console or Console()
    console.print(table)
    console.print(_closing(totals))


@flow(name="features")
def features(
    store: Path, settings: Settings | None = None, show_progress: bool = False
) -> tuple[FeatureTotals, dict[str, ValidationSummary]]:
    """Measure every record without current features (after `msaic qc`), then check the contract."""
    settings = settings or Settings()
    with counting("measuring", "records", show_progress) as advance:
        totals = features_task(store, settings, on_progress=advance)
    contract = contract_task(store)
    create_markdown_artifact(
        features_markdown(totals, contract), key="features-summary", description=f"features of {store}"
    )
    return totals, contract


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("features", help="median-beat intervals, amplitudes and MI criteria per record")
    p.add_argument(
        "--store", type=existing_dir, required=True, help="store directory (ingested and checked by qc)"
    )
    p.add_argument("--workers", type=positive_int, help="worker processes (default: CPU count)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    overrides = {"workers": args.workers} if args.workers else {}
    totals, contract = features(args.store, Settings(**overrides), show_progress=True)
    print_features(totals, contract)  # a broken contract is reported here and enforced by `msaic train`
    return 0
