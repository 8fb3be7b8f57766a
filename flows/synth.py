"""`msaic synth`: the Prefect flow that writes a synthetic multi-site 12-lead archive in the
PTB-XL layout with its ground truth (the generator itself lives in tasks/synth)."""

from __future__ import annotations

import argparse
from pathlib import Path

from prefect import flow
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from flows.args import output_dir, positive_int
from flows.options import add_workers, settings_of
from tasks.settings import Settings
from tasks.synth.archive import Summary, SynthConfig, write_archive
from tasks.synth.sites import first_sites

DEFAULT_SITES = 4


@flow(name="synth")
def synth(
    out: Path,
    records: int,
    sites: int = DEFAULT_SITES,
    seed: int = 0,
    mi_prevalence: float | None = None,
    workers: int | None = None,
) -> Summary:
    """Generate `records` recordings over the first `sites` site profiles into `out`."""
    config = SynthConfig(n_records=records, sites=first_sites(sites), seed=seed, mi_prevalence=mi_prevalence)
    columns = (TextColumn("synth"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, transient=True) as progress:
        bar = progress.add_task("synth", total=records)
        return write_archive(
            config,
            Path(out),
            workers=workers or Settings().workers,
            on_progress=lambda n: progress.advance(bar, n),
        )


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("synth", help="write a synthetic multi-site archive (PTB-XL layout) with ground truth")
    p.add_argument("--out", required=True, type=output_dir, help="output directory (missing or empty)")
    p.add_argument("--records", required=True, type=positive_int, help="number of recordings")
    p.add_argument("--sites", type=int, default=DEFAULT_SITES, help="number of site profiles (1-6)")
    p.add_argument("--seed", type=int, default=0, help="the same seed gives the same archive, byte for byte")
    p.add_argument("--mi-prevalence", type=float, default=None, help="mean MI prevalence over the sites")
    add_workers(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    summary = synth(
        out=args.out,
        records=args.records,
        sites=args.sites,
        seed=args.seed,
        mi_prevalence=args.mi_prevalence,
        workers=settings_of(args).workers,
    )
    sites = ", ".join(f"{name} {n}" for name, n in sorted(summary.per_site.items()))
    print(
        f"synth: {summary.records} records of {summary.patients} patients ({sites}); "
        f"{summary.mi} with MI, {summary.with_artifacts} with artifacts; "
        f"{summary.records_per_s:.0f} records/s; archive in {summary.out}"
    )
    return 0
