"""`msaic demo`: the whole pipeline on its built-in default, a synthetic multi-site archive.

Each stage runs as its own Prefect flow, as a user would run the commands one by one: `synth`
writes the archive (once), `ingest` reads it into the store, `quality` flags the leads and the
quality report is written, `features` measures the median beats, `train` fits MSAIC-Net with the
site-held-out split, evaluates and registers it, and `score_archive` screens the archive with it.
Re-running reuses the archive; ingest, quality and features only add what is new, and each run's
model screens into a folder of its own, `screening/<model_id>` (a scoring OUT holds one model's
scores: the second run failed on the first one's). A new store of
the synthetic archive gets a fixed pseudonym key (unless MSAIC_PSEUDONYM_KEY sets one), so every
fresh run draws the same split; an archive the demo did not synthesize never gets that public key."""

from __future__ import annotations

import argparse
from pathlib import Path

from pydantic import SecretStr
from rich.console import Console

from flows.args import output_dir, positive_int
from flows.features import features, features_summary
from flows.ingest import ingest
from flows.quality import quality, quality_summary
from flows.report import quality_report
from flows.score import score_archive, score_summary
from flows.summary import ingest_summary, print_summary
from flows.synth import synth
from flows.train import print_evaluation, train
from tasks.settings import Settings
from tasks.store.pseudonym import KEY_FILE

DEMO_RECORDS = 600
DEMO_SITES = 4
# not seed 0: the packaged pretrained MSAIC-Net started from a seed-0 synthetic archive
# (msaic_model/model/weights/msaic_synth20000.json), which the demo's test part must not share
DEMO_SEED = 1
DEMO_PSEUDONYM_KEY = "msaic-demo"  # the demo's patients are synthetic; a real store keeps a random key


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the whole pipeline on a synthetic multi-site archive")
    p.add_argument(
        "--workdir", type=output_dir, default=Path("demo_out"), help="where the archive and store go"
    )
    p.add_argument("--records", type=positive_int, default=DEMO_RECORDS, help="recordings to synthesize")
    p.add_argument(
        "--epochs", type=int, help="MSAIC-Net training epochs (default: the config's, with early stopping)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    workdir: Path = args.workdir
    archive, store = workdir / "archive", workdir / "store"
    settings = Settings()
    console = Console()
    if not (archive / "ptbxl_database.csv").exists():
        summary = synth(
            out=archive, records=args.records, sites=DEMO_SITES, seed=DEMO_SEED, workers=settings.workers
        )
        console.print(f"synth: {summary.records} records over {len(summary.per_site)} sites in {archive}")
    synthetic = (archive / "truth.parquet").exists()  # written by synth alone
    if settings.pseudonym_key is None and synthetic and not (store / KEY_FILE).exists():
        # synthetic patients in a new store: a fixed key makes every run draw the same split
        settings = settings.model_copy(update={"pseudonym_key": SecretStr(DEMO_PSEUDONYM_KEY)})
    print_summary(ingest_summary(ingest(archive, store, settings=settings, show_progress=True)), console)
    print_summary(quality_summary(quality(store, settings, show_progress=True)), console)
    report = quality_report(store, settings)
    print_summary(features_summary(*features(store, settings, show_progress=True)), console)
    model = train(store, model="msaic", split="site", epochs=args.epochs)[0]
    print_evaluation(model.model_id, model.metrics["evaluation"], console)
    screening = workdir / "screening" / model.model_id
    scored = score_archive(archive, model.path, screening, settings, show_progress=True)
    print_summary(score_summary(scored, screening.resolve()), console)
    console.print(
        f"\nquality report: {report.resolve()}\n"
        f"model card:     {(model.path / 'model_card.html').resolve()}\n"
        f"worklist:       {(screening / 'worklist.html').resolve()}"
    )
    return 0
