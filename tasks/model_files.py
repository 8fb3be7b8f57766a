"""The files of a registered model directory (`STORE/models/<model_id>/`) and their reading
without torch: what a process that only checks or names a model needs (the scoring parent, the
promotion gate), so that it does not pay PyTorch's import. `msaic_model.registry` writes these
files and loads the weights."""

from __future__ import annotations

import json
import math
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


class ModelError(ValueError):
    """A registered model directory that cannot be used (tampered, damaged or out of bounds): a
    model is refused before any work rather than scoring NaN or nonsense."""


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
    """Read and check a registered model directory: weights present, a known kind, an id, and a
    threshold that is null or a finite probability strictly between 0 and 1; raises
    FileNotFoundError or ModelError with the directory named."""
    model_dir = Path(model_dir)
    if not (model_dir / CONFIG).is_file() or not (model_dir / WEIGHTS).is_file():
        raise FileNotFoundError(f"{model_dir} is not a registered model ({CONFIG} and {WEIGHTS} expected)")
    config = _read_json(model_dir / CONFIG)
    if not isinstance(config, dict) or config.get("kind") not in MODEL_KINDS:
        kind = config.get("kind") if isinstance(config, dict) else None
        raise ModelError(f"{model_dir}: unknown model kind {kind!r}")
    if not isinstance(config.get("model_id"), str) or not config["model_id"]:
        raise ModelError(f"{model_dir}: {CONFIG} names no model_id")
    thresholds = _read_json(model_dir / THRESHOLDS)
    threshold = thresholds.get("threshold") if isinstance(thresholds, dict) else None
    if threshold is not None and not _is_probability(threshold):
        raise ModelError(
            f"{model_dir}: threshold {threshold!r} is not a probability strictly between 0 and 1"
        )
    return ModelFiles(config["model_id"], threshold, config)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(f"{path} is unreadable: {exc}") from None


def _is_probability(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and 0 < value < 1
    )
