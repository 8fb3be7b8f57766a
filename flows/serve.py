"""`msaic serve`: the scheduled operation of the pipeline as Prefect deployments.

Three deployments, each on a cron schedule from the settings (`MSAIC_SERVE_*_CRON`, in
`MSAIC_SERVE_TIMEZONE`; flags override them):
- `nightly-ingest` (flow `nightly_ingest`, default 01:00 daily): ingest each configured archive
  into the store (incremental: unchanged sources are skipped), then the quality gate and the
  data-quality report;
- `weekly-retrain` (flow `weekly_retrain`, default Sundays 03:00): features brought up to date,
  a model trained and registered on the labels as the reviewers adjudicated them
  (STORE/adjudications/; how many it used is logged and kept with each decision), then the
  promotion gate (`msaic_model.training.promotion`): promoted only if its held-out-site AUROC interval is not
  worse than the promoted model's; every decision goes to STORE/models/promotions.jsonl;
- `nightly-screening` (flow `nightly_screen`, default 05:00 daily): score each screening archive
  with the promoted model into OUT/<archive>/<model_id>/; OUT is resumable, so each night scores
  only records it has not scored with that model.
The deployments run in this process (Prefect's `serve`), reporting to the Prefect API that
PREFECT_API_URL names. The store, the archives and OUT may each be a path or an s3:// location
(`tasks.store.location`); each worker of the runs needs the same AWS_* environment.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

from prefect import flow, get_run_logger, serve
from prefect.deployments.runner import RunnerDeployment
from prefect.schedules import Cron

from flows.args import existing_location, store_location
from flows.features import features
from flows.ingest import ingest
from flows.quality import quality
from flows.report import quality_report
from flows.score import score_archive
from flows.train import adjudication_line, train
from msaic_model.training.promotion import gate, promoted_model
from tasks.ingest import archive_name
from tasks.settings import Settings
from tasks.store.location import Location, location


@flow(name="nightly_ingest")
def nightly_ingest(archives: list[Location], store: Location) -> str:
    """Ingest each archive, check quality, and write the quality report; returns the report path."""
    settings, store = Settings(), location(store)
    for archive in archives:
        ingest(location(archive), store, settings=settings)
    quality(store, settings)
    return str(quality_report(store, settings))


@flow(name="weekly_retrain")
def weekly_retrain(
    store: Location,
    model: str = "msaic",
    split: str = "site",
    epochs: int | None = None,
    config: Path | None = None,
) -> list[dict]:
    """Bring features up to date, train and register, then gate each new model; logs how many
    adjudications the training used and returns the recorded decisions (which keep those counts)."""
    store = location(store)
    features(store, Settings())
    trained = train(store, model=model, split=split, epochs=epochs, config=config)
    if trained:
        get_run_logger().info(adjudication_line(trained[0].adjudications))
    return [asdict(gate(store, t.model_id)) for t in trained]


@flow(name="nightly_screen")
def nightly_screen(archives: list[Location], store: Location, out_root: Location | None = None) -> list[str]:
    """Score each archive with the promoted model; returns the OUT directories (none before the
    first promotion)."""
    store = location(store)
    model_id = promoted_model(store)
    if model_id is None:
        return []
    root = location(out_root) if out_root else store / "screening"
    outs = []
    for archive in map(location, archives):
        out = root / archive_name(archive) / model_id
        score_archive(archive, store / "models" / model_id, out, Settings())
        outs.append(str(out))
    return outs


def deployments(settings: Settings) -> list[RunnerDeployment]:
    """The three scheduled deployments for the store and archives the settings name."""
    if settings.store is None:
        raise ValueError("msaic serve needs a store: --store or MSAIC_STORE")

    def resolved(value: Path | str) -> str:
        return str(location(value).resolve())

    store = resolved(settings.store)
    archives = [resolved(a) for a in settings.serve_archives]
    screened = [resolved(a) for a in settings.serve_screen_archives] or archives
    tz = settings.serve_timezone
    out_root = resolved(settings.serve_out) if settings.serve_out else None
    return [
        nightly_ingest.to_deployment(
            "nightly-ingest",
            schedules=[Cron(settings.serve_ingest_cron, timezone=tz)],
            parameters={"archives": archives, "store": store},
            description="ingest + quality + quality report of the configured archives",
        ),
        weekly_retrain.to_deployment(
            "weekly-retrain",
            schedules=[Cron(settings.serve_retrain_cron, timezone=tz)],
            parameters={
                "store": store,
                "model": settings.serve_train_model,
                "split": settings.serve_train_split,
            },
            description="retrain, then promote only if the held-out-site AUROC interval is not worse",
        ),
        nightly_screen.to_deployment(
            "nightly-screening",
            schedules=[Cron(settings.serve_screen_cron, timezone=tz)],
            parameters={"archives": screened, "store": store, "out_root": out_root},
            description="score the screening archives with the promoted model",
        ),
    ]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the scheduled deployments (ingest, retraining, screening)")
    p.add_argument(
        "--store", type=store_location, help="store directory or s3://bucket/prefix (default: MSAIC_STORE)"
    )
    p.add_argument(
        "--archive", type=existing_location, action="append", help="archive ingested nightly (repeatable)"
    )
    p.add_argument(
        "--screen-archive", type=existing_location, action="append", help="archive screened nightly"
    )
    p.add_argument("--out", type=store_location, help="screening output root (default STORE/screening)")
    p.add_argument("--ingest-cron", help="cron of nightly-ingest (default: MSAIC_SERVE_INGEST_CRON)")
    p.add_argument("--retrain-cron", help="cron of weekly-retrain (default: MSAIC_SERVE_RETRAIN_CRON)")
    p.add_argument("--screen-cron", help="cron of nightly-screening (default: MSAIC_SERVE_SCREEN_CRON)")
    p.add_argument("--timezone", help="time zone of the schedules (default: MSAIC_SERVE_TIMEZONE)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    def text(value: Location | None) -> str | None:  # an s3:// location as its URL (settings keep strings)
        return None if value is None else str(value)

    flags = {
        "store": text(args.store),
        "serve_archives": args.archive and [text(a) for a in args.archive],
        "serve_screen_archives": args.screen_archive and [text(a) for a in args.screen_archive],
        "serve_out": text(args.out),
        "serve_ingest_cron": args.ingest_cron,
        "serve_retrain_cron": args.retrain_cron,
        "serve_screen_cron": args.screen_cron,
        "serve_timezone": args.timezone,
    }
    settings = Settings(**{k: v for k, v in flags.items() if v is not None})
    deps = deployments(settings)
    for d in deps:
        print(f"{d.flow_name}/{d.name}: {d.schedules[0].schedule.cron} ({settings.serve_timezone})")
    serve(*deps)
    return 0
