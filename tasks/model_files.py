"""The files of a registered model directory (`STORE/models/<model_id>/`) and their reading
without torch: what a process that only checks or names a model needs (the scoring parent, the
promotion gate), so that it does not pay PyTorch's import. `msaic_model.registry` writes these
files and loads the weights."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MODELS = "models"  # STORE/models/<model_id>/
WEIGHTS = "weights.safetensors"
CONFIG = "config.json"
THRESHOLDS = "thresholds.json"
NET = "net"
FEATURE_MODELS: tuple[str, ...] = ("logreg", "gbm")
MODEL_KINDS: tuple[str, ...] = (NET, *FEATURE_MODELS)


@dataclass(frozen=True)
class ModelFiles:
    """A registered model's id, saved decision threshold (None when registered without one) and
    config (`kind`, the model config, the split, the feature columns)."""

    model_id: str
    threshold: float | None
    config: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.config["kind"])


def read_model_files(model_dir: Path) -> ModelFiles:
    """Read and check a registered model directory (weights present, a known kind); raises
    FileNotFoundError or ValueError with the directory named."""
    model_dir = Path(model_dir)
    if not (model_dir / CONFIG).is_file() or not (model_dir / WEIGHTS).is_file():
        raise FileNotFoundError(f"{model_dir} is not a registered model ({CONFIG} and {WEIGHTS} expected)")
    config = json.loads((model_dir / CONFIG).read_text())
    if config.get("kind") not in MODEL_KINDS:
        raise ValueError(f"{model_dir}: unknown model kind {config.get('kind')!r}")
    threshold = json.loads((model_dir / THRESHOLDS).read_text())["threshold"]
    return ModelFiles(config["model_id"], threshold, config)
