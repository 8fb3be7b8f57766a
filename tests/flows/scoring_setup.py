"""A real registered model for the scoring and serve tests, trained once per test session.

The session's checked and measured synthetic store (`measured_store`) is copied and a tiny MSAIC-Net
(tests/flows/tiny_msaic.json) is trained on it through the real `train` flow and registry. The
result is kept under the session's base temporary directory, so that every test module that asks
for it reuses the same model instead of training its own.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.helpers import copy_store

TINY_CONFIG = Path(__file__).with_name("tiny_msaic.json")


def trained_store(tmp_path_factory: pytest.TempPathFactory, measured_store: Path) -> tuple[Path, str]:
    """(a copy of the session's store with quality and features, and one registered tiny model;
    that model's id)."""
    from flows.train import train

    root = tmp_path_factory.getbasetemp() / "score-model"
    done = root / "model_id"
    if done.is_file():
        return root / "store", done.read_text()
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir()
    store = copy_store(measured_store, root / "store")
    trained = train(store, model="msaic", split="site", config=TINY_CONFIG)
    done.write_text(trained[0].model_id)
    return store, trained[0].model_id
