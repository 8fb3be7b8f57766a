"""Data-parallel training: each rank's share of an epoch, and a real two-process `torchrun` training
of a tiny network through `msaic train` (gloo on 127.0.0.1, one torch thread per rank): it
completes, the ranks trained on disjoint halves of every epoch with the same weights at the end,
and rank 0 alone registered the one model."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from data_contracts import load_json
from msaic_model.model.config import load_config, with_overrides
from msaic_model.model.data import WaveformStream
from msaic_model.training.distributed import Ranks, ShardedStream
from msaic_model.training.registry import load_model
from msaic_model.training.run import signals_for
from tasks import store as st
from tests.helpers import TINIEST_MSAIC, copy_store

ROOT = Path(__file__).resolve().parents[3]
TINY = {**TINIEST_MSAIC, "train.epochs": 2, "train.lr": 0.003}


def _positions(stream: WaveformStream) -> np.ndarray:
    return np.concatenate([batch.position.numpy() for batch in stream])


def test_ranks_share_each_epoch_disjointly_and_equally(synth_store: Path) -> None:
    records = st.read_table(synth_store, "records", ["record_id", "mi_label"]).to_pandas()
    config = with_overrides(load_config("msaic"), TINY)
    ids, labels = records["record_id"].tolist(), records["mi_label"].fillna(0).to_numpy(int)
    whole = WaveformStream(synth_store, ids, labels, config, train=True, cache=False)
    for epoch in (1, 2):
        whole.set_epoch(epoch)
        everything = _positions(whole)
        shares = []
        for rank in (0, 1):
            share = ShardedStream(
                synth_store, ids, labels, config, train=True, cache=False, ranks=Ranks(rank, 2)
            )
            share.set_epoch(epoch)
            shares.append(_positions(share))
        assert len(shares[0]) == len(shares[1]) == len(everything) // 2  # equal steps on both ranks
        assert not set(shares[0]) & set(shares[1])  # disjoint
        assert set(shares[0]) | set(shares[1]) <= set(everything)
    assert not np.array_equal(
        shares[0],
        _positions(
            ShardedStream(  # the shares change with the epoch
                synth_store, ids, labels, config, train=True, cache=False, ranks=Ranks(0, 2)
            )
        ),
    )


@pytest.fixture(scope="module")
def store(measured_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the session's synthetic store with its quality verdicts and features."""
    return copy_store(measured_store, tmp_path_factory.mktemp("ddp") / "store")


def test_two_ranks_under_torchrun(store: Path, tmp_path: Path, prefect_harness: None) -> None:
    from prefect.settings import PREFECT_API_URL

    config = tmp_path / "tiny.json"
    config.write_text(with_overrides(load_config("msaic"), TINY).model_dump_json())
    evaluation = copy.deepcopy(load_json("evaluation.json"))
    evaluation["metrics"]["bootstrap_resamples"] = 100
    evaluation["importance"] = {"repeats": 1, "max_records": 12}
    (tmp_path / "evaluation.json").write_text(json.dumps(evaluation))
    env = os.environ | {
        "PREFECT_API_URL": PREFECT_API_URL.value(),  # both ranks report to the session's test API
        "GLOO_SOCKET_IFNAME": "lo",  # gloo on 127.0.0.1 only
        "OMP_NUM_THREADS": "1",
    }
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    cmd += ["-m", "flows.cli", "train", "--store", str(store), "--config", str(config), "--seed", "1"]
    cmd += ["--evaluation-config", str(tmp_path / "evaluation.json")]
    run = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-4000:]

    (model_path,) = (store / "models").iterdir()  # one model, registered once (by rank 0)
    assert run.stdout.count("registered:") == 1 and model_path.name in run.stdout.replace("\n", "")
    history = pd.DataFrame(json.loads((model_path / "metrics.json").read_text())["training"]["history"])
    split = pd.read_parquet(model_path / "split.parquet")
    n_train = int((split["part"] == "train").sum())
    assert 1 <= len(history) <= TINY["train.epochs"]
    for _, epoch in history.iterrows():  # each rank half of the epoch, no window on both
        assert epoch["rank_windows"] == [n_train // 2, n_train // 2] and epoch["windows"] == n_train // 2 * 2
        assert epoch["shared_windows"] == 0
    assert np.isfinite(history[["train_loss", "val_log_loss"]].to_numpy()).all()
    model = load_model(model_path)  # the weights fit checked equal on both ranks before rank 0 saved them
    scored = split[split["part"] != "train"]
    assert model.net is not None and len(scored) > 0
    again = model.predict_proba(signals_for(store, scored["record_id"].tolist()))
    np.testing.assert_allclose(again, scored["probability"].to_numpy(float), atol=1e-5)  # what it registered
