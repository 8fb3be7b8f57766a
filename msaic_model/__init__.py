"""PyTorch side of the pipeline: MSAIC-Net, baselines, losses, training and evaluation.

The names below are the public API; the submodules hold the details.
"""

from __future__ import annotations

from msaic_model.model.blocks import NetOutput, parameter_count
from msaic_model.model.config import ModelConfig, available_configs, load_config, with_overrides
from msaic_model.model.data import WaveformStream, prepare
from msaic_model.model.net import MsaicNet, build_model
from msaic_model.training.fit import FitResult, fit, predict_proba, predict_store, resolve_device
from msaic_model.training.importance import TERRITORIES, lead_groups, permutation_importance
from msaic_model.training.losses import MsaicLoss, imbalance_aware_supcon

__all__ = [
    "TERRITORIES",
    "FitResult",
    "ModelConfig",
    "MsaicLoss",
    "MsaicNet",
    "NetOutput",
    "WaveformStream",
    "available_configs",
    "build_model",
    "fit",
    "imbalance_aware_supcon",
    "lead_groups",
    "load_config",
    "parameter_count",
    "permutation_importance",
    "predict_proba",
    "predict_store",
    "prepare",
    "resolve_device",
    "with_overrides",
]
