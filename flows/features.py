"""Prefect flow `features`: median-beat measurements of every record into `features/`, then the
features contract (Great Expectations, per site) on what the store holds. The work is
`tasks.features.run.build_features`; this module wires it to Prefect (local processes, or one
Prefect task per shard on Dask: `flows.cluster`) and to `msaic features`."""

from __future__ import annotations

import argparse

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from data_contracts.feature_columns import FEATURE_VERSION
from data_contracts.suites import ValidationSummary
from flows.cluster import on_cluster, run_stage
from flows.options import add_dask, add_store, add_workers, cluster_of, settings_of, start_local_workers
from flows.progress import counting
from flows.summary import Summary, SummaryTable, markdown, print_summary
from tasks.features import FeatureTotals, build_features, validate_features
from tasks.settings import Settings
from tasks.store.location import Location

features_task = task(build_features, name="build-features", cache_policy=NO_CACHE)
contract_task = task(validate_features, name="features-contract", cache_policy=NO_CACHE)


def _rows(totals: FeatureTotals, contract: dict[str, ValidationSummary]) -> list[list[str]]:
    sites = sorted(set(totals.measured) | {s for s, _ in totals.skipped} | set(contract))
    rows = []
    for site in sites:
        skipped = ", ".join(f"{r} {n}" for (s, r), n in sorted(totals.skipped.items()) if s == site)
        check = contract.get(site)
        if check is None:
            verdict = "-"
        elif not check.evaluated:
            verdict = "not checked: too few rows (with the other small sites)"
        else:
            verdict = "ok" if check.success else "FAILED: " + ", ".join(check.failed)
            if check.table != f"features[{site}]":  # checked together with the other small sites
                verdict += f" ({check.table})"
        rows.append([site, str(totals.measured[site]), skipped or "-", verdict])
    return rows


def _closing(totals: FeatureTotals) -> str:
    return (
        f"{totals.written} records written ({FEATURE_VERSION}), {totals.up_to_date} already up to date, "
        f"{totals.awaiting_qc} awaiting `msaic qc`, {totals.quarantined} quarantined, "
        f"{totals.stale_rows_removed} stale rows replaced"
    )


def features_summary(totals: FeatureTotals, contract: dict[str, ValidationSummary]) -> Summary:
    """Records measured and skipped per site and the contract's verdict, then the closing line."""
    columns = ("site", "measured", "skipped", "contract")
    table = SummaryTable("msaic features", columns, _rows(totals, contract), right=("measured",))
    return Summary([table], [_closing(totals)])


@flow(name="features")
def features(
    store: Location, settings: Settings | None = None, show_progress: bool = False
) -> tuple[FeatureTotals, dict[str, ValidationSummary]]:
    """Measure every record without current features (after `msaic qc`), then check the contract."""
    settings = settings or Settings()
    with counting("measuring", "records", show_progress) as advance:
        totals = run_stage(features_task, "features-shard", store, settings, on_progress=advance)
    contract = contract_task(store)
    create_markdown_artifact(
        markdown(features_summary(totals, contract)),
        key="features-summary",
        description=f"features of {store}",
    )
    return totals, contract


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("features", help="median-beat intervals, amplitudes and MI criteria per record")
    add_store(p, "store directory (ingested and checked by qc)")
    add_workers(p)
    add_dask(p)
    p.set_defaults(func=run, warm_up=start_local_workers)


def run(args: argparse.Namespace) -> int:
    settings = settings_of(args)
    with on_cluster(features, cluster_of(args, settings)) as the_flow:
        totals, contract = the_flow(args.store, settings, show_progress=True)
    # a broken contract is reported here and enforced by `msaic train`
    print_summary(features_summary(totals, contract))
    return 0
