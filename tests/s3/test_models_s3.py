"""Models, training, evaluation, scoring, review and the scheduled flows with the store and the
model registry on S3 (a real SeaweedFS server, tests/s3/conftest.py): a tiny MSAIC-Net trained on
a store on S3 is registered there, sees the data the same store on disk gives, is evaluated there,
scores from there as the same model on disk does, and `msaic review` and `msaic serve`'s flows
read and write S3 locations."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from flows.args import local_path
from tasks import store as st
from tasks.store import remote
from tasks.store.location import ObjectPath
from tasks.store.model_files import CLAIM, CONFIG, WEIGHTS, read_model_files, write_model_dir
from tests.flows.scoring_setup import TINY_CONFIG
from tests.s3.conftest import upload

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def s3_store(s3_bucket: ObjectPath, model_dir: Path) -> ObjectPath:
    """The tables and QC profile of the store `model_dir` was trained on (ingested, checked and
    measured on disk), copied to a store on S3 (the stages themselves on S3: test_store_s3.py)."""
    store = s3_bucket / "models-s3" / "store"
    for name in ("records", "waveforms", "quality", "features", "qc_profile.json"):
        upload(model_dir.parent.parent / name, store / name)
    return store


@pytest.fixture(scope="module")
def trained(s3_store: ObjectPath) -> ObjectPath:
    """A tiny MSAIC-Net trained through the `train` flow on the store on S3; its directory."""
    from flows.train import train

    done = train(s3_store, model="msaic", split="site", config=TINY_CONFIG)
    assert len(done) == 1
    return done[0].path  # type: ignore[return-value]


def test_a_model_trained_on_s3_is_registered_there_on_the_data_a_disk_store_gives(
    trained: ObjectPath, s3_store: ObjectPath, model_dir: Path
) -> None:
    from msaic_model.training.registry import load_model

    assert isinstance(trained, ObjectPath) and trained.parent == s3_store / "models"
    for name in (CONFIG, WEIGHTS, CLAIM, "metrics.json", "snapshot.json", "split.parquet", "qc_profile.json"):
        assert (trained / name).is_file(), name
    assert b"<html" in (trained / "model_card.html").read_bytes()[:200].lower()
    on_s3, on_disk = (json.loads((d / "snapshot.json").read_text()) for d in (trained, model_dir))
    assert on_s3["parts"] == on_disk["parts"]  # the same records in each part, by hash
    assert on_s3["store_files"] == on_disk["store_files"] and on_s3["qc_profile"] == on_disk["qc_profile"]
    assert on_s3["store_files"]["records"]["files"] > 0
    loaded = load_model(trained, device="cpu")
    assert loaded.model_id == trained.name and 0 < float(loaded.threshold) < 1  # type: ignore[arg-type]
    assert not list((s3_store / st.STAGING).rglob("*")) and not remote.journals(s3_store)
    secret = os.environ["AWS_SECRET_ACCESS_KEY"].encode()
    assert all(secret not in ObjectPath(f"s3://{i.path}").read_bytes() for i in trained.files())


def test_a_model_id_is_registered_once_and_a_half_written_model_is_no_model(
    s3_prefix: ObjectPath, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tasks.store.repair import check_store, repair_store

    files = {WEIGHTS: b"w", CONFIG: b"{}"}
    write_model_dir(s3_prefix, "m1", files)
    with pytest.raises(FileExistsError, match="already registered"):
        write_model_dir(s3_prefix, "m1", files)
    # a writer killed after its claim and the weights: no config, so not a model, and its id stays taken
    half = s3_prefix / "models" / "m2"
    (half / CLAIM).write_text("{}")
    (half / WEIGHTS).write_bytes(b"w")
    with pytest.raises(FileNotFoundError, match="not a registered model"):
        read_model_files(half)
    with pytest.raises(FileExistsError):
        write_model_dir(s3_prefix, "m2", files)
    assert check_store(s3_prefix) == []  # a registration may still be writing it
    monkeypatch.setattr(remote, "ORPHAN_AGE_S", -1.0)  # instead of waiting an hour
    assert [(f.path, f.kind) for f in check_store(s3_prefix)] == [("models/m2", "incomplete_model")]
    assert [f.kind for f in repair_store(s3_prefix).moved] == ["incomplete_model"]
    assert write_model_dir(s3_prefix, "m2", files) == half
    assert (s3_prefix / "models" / "m1" / CONFIG).is_file()


def test_evaluate_a_model_on_s3_on_its_store_and_on_every_record(
    trained: ObjectPath, s3_store: ObjectPath, prefect_harness: None
) -> None:
    from flows.train import evaluate

    saved = evaluate(s3_store, model_id=trained.name)
    metrics = json.loads((trained / "metrics.json").read_text())
    assert saved["split"] == "saved" and saved["path"].startswith("s3://")
    assert saved["evaluation"]["test"]["n"] == metrics["evaluation"]["test"]["n"]
    assert saved["evaluation"]["test"]["auroc"]["value"] == pytest.approx(
        metrics["evaluation"]["test"]["auroc"]["value"], abs=1e-6
    )
    secret = os.environ["AWS_SECRET_ACCESS_KEY"].encode()
    assert secret not in ObjectPath(saved["path"]).read_bytes()
    everything = evaluate(s3_store, model=trained, all_records=True)
    recorded = ObjectPath(everything["recorded_in"])
    assert recorded.parent == trained / "external" and recorded.is_file()
    assert "external" in everything and everything["evaluation"]["test"]["n"] > 0
    assert secret not in recorded.read_bytes() + (trained / "model_card.html").read_bytes()


def test_scores_with_a_model_on_s3_are_those_of_the_same_model_on_disk(
    small_archive: Path, s3_prefix: ObjectPath, model_dir: Path, tmp_path: Path
) -> None:
    from flows.args import model_dir as model_argument
    from flows.score import run_score
    from tasks.settings import Settings

    model = upload(model_dir, s3_prefix / "models" / model_dir.name)
    assert model_argument(str(model)) == model  # what `msaic score --model s3://…` takes
    with pytest.raises(argparse.ArgumentTypeError, match="not a registered model"):
        model_argument(str(model.parent))
    settings = Settings(workers=1, score_shard_size=8)
    on_disk = run_score(small_archive, model_dir, tmp_path / "disk", settings)
    on_s3 = run_score(small_archive, model, s3_prefix / "out", settings)
    assert on_s3.counts == on_disk.counts and on_s3.model_id == on_disk.model_id
    assert on_s3.qc_profile == on_disk.qc_profile and on_s3.qc_warning is None  # the model's own profile
    a, b = (
        st.read_table(out, "scores").to_pandas().sort_values("record_id").reset_index(drop=True)
        for out in (tmp_path / "disk", s3_prefix / "out")
    )
    assert a["probability"].tolist() == b["probability"].tolist()


def _cli(*argv: str) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "flows.cli", *argv]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_cli_names_a_missing_model_or_store_on_s3_in_one_line(
    s3_prefix: ObjectPath, small_archive: Path
) -> None:
    missing = str(s3_prefix / "nope")
    for argv in (
        ("score", str(small_archive), "--model", missing, "--out", str(s3_prefix / "out")),
        ("train", "--store", missing),
        ("review", "--out", missing),
    ):
        done = _cli(*argv)
        assert done.returncode == 2 and "does not exist" in done.stderr, (argv, done.stderr[-2000:])
        assert "Traceback" not in done.stderr
        assert os.environ["AWS_SECRET_ACCESS_KEY"] not in done.stdout + done.stderr
    with pytest.raises(argparse.ArgumentTypeError, match="takes a local path"):  # configs, demo, synth
        local_path(missing)


def test_review_serves_an_out_on_s3_and_records_decisions_in_a_store_on_s3(
    small_archive: Path, s3_prefix: ObjectPath, prefect_harness: None
) -> None:
    from flows.ingest import ingest
    from flows.review import Review, serve
    from msaic_model.model.config import load_config
    from msaic_model.model.net import build_model
    from tasks.scoring import score_archive_run
    from tasks.settings import Settings
    from tests.msaic_model.training.test_model_validation import register_model

    archive, store, out = upload(small_archive, s3_prefix / "archive"), s3_prefix / "store", s3_prefix / "out"
    ingest(archive, store, settings=Settings(workers=1))
    config = load_config(TINY_CONFIG)
    kind = {"kind": "net", "model": config.model_dump(mode="json")}
    model = register_model(s3_prefix, "flag-all", kind, build_model(config).state_dict(), 1e-6)
    score_archive_run(archive, model, out, Settings(workers=1))
    review = Review(out, store, "Dr. Ada Example", Settings())  # type: ignore[arg-type]
    assert len(review.frame) > 0 and review.frame["store_record_id"].notna().all()
    server = serve(review, 0)
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        with urllib.request.urlopen(url, timeout=30) as page:
            assert b"<html" in page.read()[:500].lower()
        record_id = str(review.frame["record_id"].iloc[0])
        with urllib.request.urlopen(f"{url}ecg/{record_id}.svg", timeout=60) as svg:
            assert svg.read().startswith(b"<svg")
        assert (out / "ecg" / f"{record_id}.svg").is_file()  # cached in OUT on S3
        body = json.dumps({"record_id": record_id, "decision": "mi", "territory": None}).encode()
        post = urllib.request.Request(
            f"{url}api/adjudications",
            data=body,
            headers={"Content-Type": "application/json", "X-MSAIC-Review": "1"},
        )
        with urllib.request.urlopen(post, timeout=30) as answer:
            assert "decided_at" in json.loads(answer.read())
    finally:
        server.shutdown()
    decided = st.read_table(store, "adjudications")
    assert decided.num_rows == 1 and decided["decision"].to_pylist() == ["mi"]
    assert not (store / remote.LOCK).exists()


def test_serve_flows_promote_and_screen_with_store_archives_and_out_on_s3(
    trained: ObjectPath,
    s3_store: ObjectPath,
    small_archive: Path,
    s3_prefix: ObjectPath,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from flows.serve import deployments, nightly_screen
    from msaic_model.training.promotion import LOG, gate, promoted_model
    from tasks.settings import Settings

    # the flows read their Settings from the environment; one worker, in this process: a process
    # pool forks from this session's forkserver, which earlier tests may have started before the
    # SeaweedFS endpoint was put in the environment (a real `msaic serve` has it from the start)
    monkeypatch.setenv("MSAIC_WORKERS", "1")

    archive = upload(small_archive, s3_prefix / "archive")
    screening = str(s3_prefix / "screening")
    settings = Settings(store=str(s3_store), serve_archives=[str(archive)], serve_out=screening)
    parameters = {d.name: d.parameters for d in deployments(settings)}
    assert parameters["nightly-ingest"] == {"archives": [str(archive)], "store": str(s3_store)}
    assert parameters["nightly-screening"]["out_root"] == screening
    decision = gate(s3_store, trained.name)
    assert decision.promoted and promoted_model(s3_store) == trained.name
    lines = (s3_store / "models" / LOG).read_text().splitlines()
    assert [json.loads(line)["candidate"] for line in lines] == [trained.name]
    outs = nightly_screen(**parameters["nightly-screening"])  # as the deployment calls it: URLs
    assert outs == [str(s3_prefix / "screening" / "archive" / trained.name)]
    assert (ObjectPath(outs[0]) / "worklist.csv").is_file()
    assert st.read_table(ObjectPath(outs[0]), "scores").num_rows > 0
