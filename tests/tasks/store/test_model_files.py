"""The torch-free reading of a registered model directory (tasks/store/model_files.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tasks.store.model_files import CONFIG, THRESHOLDS, WEIGHTS, read_model_files


def _model_dir(root: Path, kind: str, threshold: float | None) -> Path:
    path = root / "models" / f"{kind}-1"
    path.mkdir(parents=True)
    (path / CONFIG).write_text(json.dumps({"kind": kind, "model_id": f"{kind}-1"}))
    (path / THRESHOLDS).write_text(json.dumps({"threshold": threshold}))
    (path / WEIGHTS).write_bytes(b"")
    return path


def test_reads_id_threshold_and_kind(tmp_path: Path) -> None:
    files = read_model_files(_model_dir(tmp_path, "gbm", 0.25))
    assert (files.model_id, files.threshold, files.kind) == ("gbm-1", 0.25, "gbm")
    assert read_model_files(_model_dir(tmp_path, "net", None)).threshold is None


def test_refuses_what_is_not_a_registered_model(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not a registered model"):
        read_model_files(tmp_path)
    with pytest.raises(ValueError, match="unknown model kind 'svm'"):
        read_model_files(_model_dir(tmp_path, "svm", 0.5))


def test_the_scoring_parent_does_not_import_torch() -> None:
    """`msaic score`'s parent checks the model with these files alone: importing torch there cost
    seconds of start-up on the critical path (its workers import it, in the forkserver)."""
    code = "import sys, flows.score, tasks.scoring.run; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
