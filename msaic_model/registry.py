"""The model registry: `STORE/models/<model_id>/`, and `load_model`, the one way to get a model back.

A registered directory holds only data, nothing that executes on load:
- `weights.safetensors`: the network's state dict, or a feature baseline's arrays;
- `config.json`: kind (`net`, `logreg`, `gbm`), the model config, the split, the feature columns;
- `thresholds.json`: the decision threshold and how it was chosen (validation only);
- `metrics.json`: evaluation with intervals, training history, permutation importance;
- `snapshot.json`: what data trained it (hash and count of the record ids of each part, the
  store part files read); `split.parquet`: the record → part assignment itself;
- `model_card.html`.
The directory is written under STORE/.staging and renamed into place, so a reader never sees a
half-registered model.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import safetensors.numpy
import safetensors.torch
import torch
from scipy.special import logit

from msaic_model.config import ModelConfig
from msaic_model.feature_baselines import FeatureModel, feature_model_from_arrays
from msaic_model.net import build_model
from msaic_model.train import CropOcclusion, predict_proba, resolve_device
from tasks import store as st
from tasks.model_files import CONFIG, MODELS, NET, THRESHOLDS, WEIGHTS, read_model_files

SPLIT_FILE = "split.parquet"
SNAPSHOT_TABLES: tuple[str, ...] = ("records", "waveforms", "quality", "features")


def new_model_id(name: str, split: str, fold: int | None = None) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    fold_tag = f"-fold{fold}" if fold is not None else ""
    return f"{name}-{split}{fold_tag}-{stamp}-{uuid.uuid4().hex[:6]}"


def model_dir(store: Path, model_id: str) -> Path:
    return Path(store) / MODELS / model_id


def sha256_of(values: list[str]) -> str:
    return hashlib.sha256("\n".join(values).encode()).hexdigest()


def data_snapshot(store: Path, assignment: pd.DataFrame) -> dict[str, Any]:
    """Identifiers of the data a model saw: per part and fold, the count and hash of its sorted
    record ids; per table, the store part files present (their relative paths and hash)."""
    parts = {
        f"{part}/fold{fold}": {"records": len(g), "record_ids_sha256": sha256_of(sorted(g["record_id"]))}
        for (fold, part), g in assignment.groupby(["fold", "part"], sort=True)
    }
    files = {}
    for table in SNAPSHOT_TABLES:
        found = sorted(str(p.relative_to(store)) for p in (Path(store) / table).rglob("*.parquet"))
        if found:
            files[table] = {"files": len(found), "files_sha256": sha256_of(found), "paths": found}
    return {"parts": parts, "store_files": files}


@dataclass(frozen=True)
class Registration:
    """Everything `register` writes (weights as numpy arrays or torch tensors)."""

    model_id: str
    config: dict[str, Any]
    weights: dict[str, Any]
    thresholds: dict[str, Any]
    metrics: dict[str, Any]
    snapshot: dict[str, Any]
    split: pd.DataFrame
    card_html: str


def register(store: Path, reg: Registration) -> Path:
    """Write the model directory atomically (staged, then renamed); refuses an existing id."""
    final = model_dir(store, reg.model_id)
    if final.exists():
        raise FileExistsError(f"model {reg.model_id} is already registered in {store}")
    staged = st.staging_dir(Path(store)) / f"model-{reg.model_id}"
    staged.mkdir()
    if reg.config["kind"] == NET:
        tensors = {k: v.detach().cpu().contiguous() for k, v in reg.weights.items()}
        safetensors.torch.save_file(tensors, staged / WEIGHTS, metadata={"model_id": reg.model_id})
    else:
        safetensors.numpy.save_file(reg.weights, staged / WEIGHTS, metadata={"model_id": reg.model_id})
    for name, payload in (
        (CONFIG, reg.config),
        (THRESHOLDS, reg.thresholds),
        ("metrics.json", reg.metrics),
        ("snapshot.json", reg.snapshot),
    ):
        (staged / name).write_text(json.dumps(payload, indent=2, default=_json_default))
    reg.split.to_parquet(staged / SPLIT_FILE, index=False)
    (staged / "model_card.html").write_text(reg.card_html, encoding="utf-8")
    final.parent.mkdir(parents=True, exist_ok=True)
    staged.replace(final)
    return final


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


@dataclass
class LoadedModel:
    """A model ready to score: `predict_proba(signals)` for (n, 12, 5000) float32 mV at 500 Hz
    (NaN allowed) returns (n,) MI probabilities, batching internally; `threshold` is the saved
    decision threshold (probability >= threshold is positive). A feature baseline first measures
    its features from the windows (quality gate + median-beat measurement, tens of ms a record)."""

    model_id: str
    threshold: float | None
    config: dict[str, Any]
    net: torch.nn.Module | None = None
    feature_model: FeatureModel | None = None

    @property
    def kind(self) -> str:
        return str(self.config["kind"])

    @property
    def model_config(self) -> ModelConfig:
        return ModelConfig.model_validate(self.config["model"])

    @property
    def feature_columns(self) -> list[str]:
        return list(self.config["feature_columns"])

    def predict_proba(self, signals: np.ndarray) -> np.ndarray:
        signals = np.asarray(signals, dtype=np.float32)
        if self.net is not None:
            return predict_proba(self.net, self.model_config, signals).astype(np.float64)
        return self.predict_features(self.measured_features(signals))

    def measured_features(self, signals: np.ndarray) -> np.ndarray:
        """Feature baselines: the model's feature columns measured on stored windows (NaN where
        not measurable)."""
        return extract_features(signals)[self.feature_columns].to_numpy(np.float64)

    def occlusion(self, signals: np.ndarray) -> CropOcclusion | SignalOcclusion:
        """The windows' probabilities and what score explanations mask leads on: a network's
        strongest crop of each window (`CropOcclusion`), a feature baseline's whole window
        (`SignalOcclusion`)."""
        signals = np.asarray(signals, dtype=np.float32)
        if self.net is not None:
            return CropOcclusion.of(self.net, self.model_config, signals)
        features = self.measured_features(signals)
        probability = self.predict_features(features)
        return SignalOcclusion(
            self, signals, probability, _log_odds(probability), np.isnan(features).all(axis=1)
        )

    def predict_features(self, x: np.ndarray) -> np.ndarray:
        """Feature baselines: probabilities from a (n, feature_columns) matrix (NaN allowed)."""
        if self.feature_model is None:
            raise ValueError(f"model {self.model_id} is a network; it scores signals, not features")
        return np.asarray(self.feature_model.predict_proba(x), dtype=np.float64)


@dataclass
class SignalOcclusion:
    """Occlusion for a feature baseline: removed leads become missing (NaN) in the stored windows,
    whose features are then measured again; log-odds as `CropOcclusion`."""

    model: LoadedModel
    signals: np.ndarray
    probability: np.ndarray  # (n,) probability of each window
    base_logit: np.ndarray  # (n,) its log-odds: occlusion looks at the whole window
    no_input: np.ndarray  # (n,) no feature could be measured (no median beat)

    def masked_logit(self, rows: np.ndarray, masks: np.ndarray) -> np.ndarray:
        """Log-odds of the windows `rows` with the leads where `masks` (m, 12) is True removed."""
        occluded = self.signals[rows]
        occluded[np.asarray(masks, dtype=bool)] = np.nan
        return _log_odds(self.model.predict_proba(occluded))


def _log_odds(p: np.ndarray) -> np.ndarray:
    """logit(p) in float64, bounded at ±27.6 (p within 1e-12 of 0 or 1)."""
    return logit(np.clip(np.asarray(p, dtype=np.float64), 1e-12, 1 - 1e-12))


def extract_features(signals: np.ndarray) -> pd.DataFrame:
    """The feature-store columns of raw windows, measured as the features stage measures them:
    the quality gate says which leads are usable (and rejects records, whose features stay NaN),
    then `feature_row`; values rounded to float32 as the store keeps them."""
    from data_contracts.feature_columns import FEATURE_COLUMNS
    from tasks.features.measure import criteria_config
    from tasks.features.run import RecordMeta, feature_row
    from tasks.quality import assess, load_profile

    quality = assess(signals, load_profile())
    unusable = [quality.masks[f] for f in criteria_config()["signal"]["unusable_flags"] if f in quality.masks]
    usable = ~np.any(unusable, axis=0) if unusable else np.ones(signals.shape[:2], bool)
    rows = [
        feature_row(signal, RecordMeta(str(i), "", verdict, tuple(lead_ok.tolist()), None, None))
        for i, (signal, verdict, lead_ok) in enumerate(zip(signals, quality.verdict, usable, strict=True))
    ]
    return pd.DataFrame(rows).reindex(columns=FEATURE_COLUMNS).astype(np.float32)


def load_model(model_dir: Path) -> LoadedModel:
    """A registered model from its directory, without executing anything stored in it (a network
    in eval mode, exactly as evaluated; score workers rewrite it, `inference.for_cpu_scoring`)."""
    files = read_model_files(Path(model_dir))
    weights = Path(model_dir) / WEIGHTS
    if files.kind == NET:
        net = build_model(ModelConfig.model_validate(files.config["model"]))
        net.load_state_dict(safetensors.torch.load_file(weights))
        net = net.to(resolve_device("auto")).eval()
        return LoadedModel(files.model_id, files.threshold, files.config, net=net)
    model = feature_model_from_arrays(files.kind, safetensors.numpy.load_file(weights))
    return LoadedModel(files.model_id, files.threshold, files.config, feature_model=model)
