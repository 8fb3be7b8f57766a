"""`msaic serve`: the three deployments are registered with their cron schedules against the
test API, each is triggered once, and a Prefect runner executes the runs to completion."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from data_contracts import load_json
from tests.flows.scoring_setup import TINY_CONFIG, trained_store
from tests.helpers import copy_store


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, measured_store: Path) -> Path:
    trained, _ = trained_store(tmp_path_factory, measured_store)
    return copy_store(trained, tmp_path_factory.mktemp("serve") / "store")


async def _trigger_and_run(deployments: list, parameters: dict[str, dict]) -> dict[str, str]:
    """Register the deployments on a runner, trigger each once, run what is due, and return the
    final state of each flow run by deployment name."""
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.runner import Runner

    runner = Runner(name="msaic-serve-test", pause_on_shutdown=False, limit=1)
    for d in deployments:
        await runner.aadd_deployment(d)
    runs = {}
    for d in deployments:
        run = await run_deployment(f"{d.flow_name}/{d.name}", parameters=parameters.get(d.name), timeout=0)
        runs[d.name] = run.id
    for _ in range(len(deployments)):  # limit=1: one run per pass, in the order triggered
        await runner.start(run_once=True)
    async with get_client() as client:
        return {name: (await client.read_flow_run(i)).state.type.value for name, i in runs.items()}


def test_each_deployment_is_scheduled_and_runs_once(
    prefect_harness: None, store: Path, synth_archive: Path, tmp_path: Path
) -> None:
    from flows.serve import deployments
    from msaic_model.training.promotion import LOG, promoted_model
    from tasks.settings import Settings

    settings = Settings(
        store=store,
        serve_archives=[synth_archive],
        serve_out=tmp_path / "screening",
        serve_retrain_cron="30 2 * * 6",
    )
    deps = deployments(settings)
    crons = {d.name: d.schedules[0].schedule.cron for d in deps}
    assert crons == {
        "nightly-ingest": "0 1 * * *",
        "weekly-retrain": "30 2 * * 6",
        "nightly-screening": "0 5 * * *",
    }
    assert promoted_model(store) is None

    retrain = {"weekly-retrain": {"config": str(TINY_CONFIG), "epochs": 1}}
    states = asyncio.run(_trigger_and_run(deps[:2], retrain))
    assert states == {"nightly-ingest": "COMPLETED", "weekly-retrain": "COMPLETED"}
    assert list((store / "reports").glob("*.html")), "the nightly run wrote a quality report"
    decisions = [json.loads(line) for line in (store / "models" / LOG).read_text().splitlines()]
    assert len(decisions) == 1
    candidate = store / "models" / decisions[0]["candidate"]
    held = json.loads((candidate / "metrics.json").read_text())["evaluation"]["shift"]["held_out"]
    interval = {k: held[load_json("promotion.json")["metric"]][k] for k in ("value", "low", "high")}
    assert decisions[0]["candidate_interval"] == interval, "the candidate's own held-out-site interval"
    assert interval["low"] <= interval["value"] <= interval["high"]
    assert decisions[0]["promoted"] and decisions[0]["current"] is None  # the first one is promoted
    snapshot = json.loads((candidate / "snapshot.json").read_text())
    assert decisions[0]["adjudications"] == snapshot["adjudications"]  # what the retraining used
    assert decisions[0]["adjudications"]["decisions"] == 0
    model_id = promoted_model(store)
    assert model_id == decisions[0]["candidate"]

    states = asyncio.run(_trigger_and_run(deps[2:], {}))
    assert states == {"nightly-screening": "COMPLETED"}
    out = tmp_path / "screening" / synth_archive.name / model_id
    assert (out / "worklist.csv").is_file()
    assert len(list((out / "ledger").glob("*.json"))) > 0


def test_promotion_rule() -> None:
    from msaic_model.training.promotion import Interval, decide

    current = Interval(0.80, 0.70, 0.90)
    assert decide(None, current, 0.0) == (False, "candidate has no held-out-site interval")
    assert decide(Interval(0.6, 0.5, 0.7), None, 0.0)[0]
    assert decide(Interval(0.82, 0.70, 0.93), current, 0.0)[0]
    assert not decide(Interval(0.85, 0.69, 0.95), current, 0.0)[0]  # a lower bound that drops
    assert not decide(Interval(0.79, 0.71, 0.88), current, 0.0)[0]
    assert decide(Interval(0.79, 0.71, 0.88), current, 0.05)[0]
