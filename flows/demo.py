"""`msaic demo`: the pipeline on its built-in default, a synthetic multi-site archive.

Runs the stages that exist today, each as its own Prefect flow run: `synth` writes the archive,
`ingest` reads it into the store. Later stages join this sequence as they land."""

from __future__ import annotations

import argparse
from pathlib import Path

from flows.ingest import ingest
from flows.summary import print_ingest
from flows.synth import synth
from tasks.settings import Settings

DEMO_RECORDS = 600
DEMO_SITES = 4


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the pipeline on a synthetic multi-site archive")
    p.add_argument("--workdir", type=Path, default=Path("demo_out"), help="where the archive and store go")
    p.add_argument("--records", type=int, default=DEMO_RECORDS, help="recordings to synthesize")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    workdir: Path = args.workdir
    archive, store = workdir / "archive", workdir / "store"
    settings = Settings()
    if not (archive / "ptbxl_database.csv").exists():
        summary = synth(out=archive, records=args.records, sites=DEMO_SITES, seed=0, workers=settings.workers)
        print(f"synth: {summary.records} records over {len(summary.per_site)} sites in {archive}")
    totals = ingest(archive, store, settings=settings, show_progress=True)
    print_ingest(totals)
    print(f"archive: {archive.resolve()}\nstore:   {store.resolve()}")
    return 0
