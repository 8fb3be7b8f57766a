"""The training loop shared by MSAIC-Net and the neural baselines.

`fit` trains on windows streamed from the store (random crops, augmentation, optional class-balanced
sampling; epochs of at least `min_windows_per_epoch` windows, see `TrainConfig`), scores every
validation window after every epoch (`msaic_model.model.inference`, as scoring does) and keeps the weights of
the epoch with the best validation AUPRC (early stopping after `patience` epochs without a gain; the
validation log loss decides when the validation set holds a single class). Seeds make a run
repeatable on the same device. A fused network (`net.fusion`) also reads each window's
feature-store values (`store_features`); `train.init_weights` starts from pretrained weights
(a fused network's waveform branch from a waveform network's: `load_initial_weights`).
The threshold is not chosen here: the caller picks it from
`FitResult.val_probabilities`, which come from the validation split only.
Under `torchrun` the processes train one model together (`msaic_model.training.distributed`):
each its share of the windows, rank 0 validating for all.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import safetensors.torch
import torch
from sklearn.metrics import average_precision_score, log_loss, roc_auc_score
from torch import nn

from msaic_model.model.config import ModelConfig, init_weights_path
from msaic_model.model.data import WaveformStream
from msaic_model.model.inference import predict_proba, predict_stream, resolve_device
from msaic_model.model.net import FEATURE_HEAD, TREES, build_model
from msaic_model.training import distributed
from msaic_model.training.eligible import feature_matrix
from msaic_model.training.losses import MsaicLoss, positive_class_weight
from tasks.store.location import Location, location


def seed_everything(seed: int) -> None:
    """Seed torch (initialization, dropout; the data stream has its own generators) and ask cuDNN
    for deterministic kernels."""
    torch.manual_seed(seed)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


@dataclass
class FitResult:
    """The best model (eval mode), its config, one history row per epoch, the best epoch (1-based)
    and the validation probabilities of the best model, aligned with the rows of `val` (NaN on
    the ranks other than 0 of a distributed run, which do not validate)."""

    model: nn.Module
    config: ModelConfig
    history: pd.DataFrame
    best_epoch: int
    val_probabilities: np.ndarray

    def predict_proba(self, signals: np.ndarray) -> np.ndarray:
        return predict_proba(self.model, self.config, signals)


def store_features(store: Location, record_ids: list[str], config: ModelConfig) -> np.ndarray | None:
    """A fused network's second input for stored records (None for any other network)."""
    if not config.feature_columns:
        return None
    return feature_matrix(store, record_ids, config.feature_columns)


def initial_weights(config: ModelConfig) -> dict[str, torch.Tensor] | None:
    """The weights of the safetensors file `train.init_weights` names (a packaged file by name, a path
    or an s3:// URL), if any."""
    path = config.train.init_weights
    return None if path is None else safetensors.torch.load(location(init_weights_path(path)).read_bytes())


def load_initial_weights(model: nn.Module, weights: dict[str, torch.Tensor]) -> None:
    """Load `train.init_weights` into a fresh `model`. The file must fit the network exactly, with
    two exceptions: the weights of a waveform MSAIC-Net (no `features.*` tensors, as
    `msaic_model.training.pretrain` writes them) start the waveform branch of a fused one, whose
    feature head keeps its fresh initialization (its normalization is set from the training set
    afterwards); stacked trees are never started from a file (they are fitted after training).
    Anything else missing, any tensor the network lacks or of another shape is an error."""
    state = model.state_dict()
    weights = {k: v for k, v in weights.items() if not k.startswith(TREES)}
    fresh = {k for k in state if k.startswith(TREES)}
    if not any(k.startswith(FEATURE_HEAD) for k in weights):
        fresh |= {k for k in state if k.startswith(FEATURE_HEAD)}
    loaded = model.load_state_dict(weights, strict=False)
    if loaded.unexpected_keys or set(loaded.missing_keys) != fresh:
        raise RuntimeError(
            "init_weights do not fit this network: missing "
            f"{sorted(set(loaded.missing_keys) - fresh)}, unexpected {sorted(loaded.unexpected_keys)}"
        )


def _labels(frame: pd.DataFrame, name: str) -> np.ndarray:
    missing = {"record_id", "mi_label"} - set(frame.columns)
    if missing:
        raise ValueError(f"{name} frame lacks columns {sorted(missing)}")
    if frame.empty:
        raise ValueError(f"{name} frame is empty")
    if frame["mi_label"].isna().any():
        raise ValueError(
            f"{name} frame has windows without mi_label; drop unlabelled windows before training"
        )
    return frame["mi_label"].to_numpy().astype(np.int64)


def _validation_scores(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    both = len(np.unique(y)) == 2
    return {
        "val_auprc": float(average_precision_score(y, p)) if both else float("nan"),
        "val_auroc": float(roc_auc_score(y, p)) if both else float("nan"),
        "val_log_loss": float(log_loss(y, np.clip(p, 1e-7, 1 - 1e-7), labels=[0, 1])),
    }


def fit(
    store: Location,
    train: pd.DataFrame,
    val: pd.DataFrame,
    config: ModelConfig,
    log: Callable[[str], None] | None = None,
) -> FitResult:
    """Train `config`'s network on the windows of `train` (record_id, mi_label 0/1, optional site)
    and early-stop on `val`; see the module docstring."""
    y_train, y_val = _labels(train, "train"), _labels(val, "val")
    tc = config.train
    ranks = distributed.process_group()
    data = (train["record_id"].to_numpy(str), y_train, val["record_id"].to_numpy(str), y_val)
    distributed.require_same("their training and validation windows", distributed.digest(data), ranks)
    seed_everything(tc.seed)
    if tc.num_threads:
        torch.set_num_threads(tc.num_threads)
    device = distributed.rank_device(resolve_device(tc.device), ranks)
    model = build_model(config)
    start_from = initial_weights(config)
    if start_from is not None:
        load_initial_weights(model, start_from)
    train_features = store_features(store, train["record_id"].tolist(), config)
    if train_features is not None:
        model.features.set_normalization(torch.from_numpy(train_features).float())
    model = model.to(device)
    net = distributed.data_parallel(model, device, ranks, unused_parameters=config.loss.supcon_weight == 0)
    optimizer = torch.optim.AdamW(net.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    criterion = MsaicLoss(config.loss, positive_class_weight(y_train))
    sites = train["site"].unique().tolist() if "site" in train.columns else None
    shards = {"ranks": ranks} if ranks.parallel else {}
    stream = (distributed.ShardedStream if ranks.parallel else WaveformStream)(
        store,
        train["record_id"].tolist(),
        y_train,
        config,
        train=True,
        sites=sites,
        windows_per_epoch=tc.epoch_windows(len(train)),
        features=train_features,
        **shards,
    )
    val_ids = val["record_id"].tolist()
    val_stream = WaveformStream(
        store,
        val_ids,
        y_val,
        config,
        train=False,
        cache=True,
        features=store_features(store, val_ids, config),
    )
    both_classes = len(np.unique(y_val)) == 2

    rows: list[dict[str, float]] = []
    best_score, best_epoch, best_state, best_probs = -np.inf, 0, None, None
    for epoch in range(1, tc.epochs + 1):
        stream.set_epoch(epoch)
        net.train()
        sums = np.zeros(4)  # loss, classification, contrastive (window-weighted), windows
        positions: list[np.ndarray] = []
        start = time.perf_counter()
        for batch in stream:
            if len(batch.y) < 2:  # batch norm needs two windows
                continue
            inputs = [batch.x.to(device, non_blocking=True)]
            if batch.features is not None:
                inputs.append(batch.features.to(device))
            parts = criterion(net(*inputs), batch.y.to(device))
            optimizer.zero_grad(set_to_none=True)
            parts.total.backward()
            optimizer.step()
            sums += [*(float(p.detach()) * len(batch.y) for p in parts), len(batch.y)]
            if ranks.parallel:
                positions.append(batch.position.numpy())
        seconds = time.perf_counter() - start
        distributed.rank0_buffers(model, ranks)
        local_windows = int(sums[3])
        sums = distributed.sum_over_ranks(sums, ranks)
        windows = int(sums[3])
        probs = predict_stream(model, val_stream).probability if ranks.main else np.full(len(val), np.nan)
        row = {
            "epoch": epoch,
            "train_loss": sums[0] / max(windows, 1),
            "train_classification": sums[1] / max(windows, 1),
            "train_contrastive": sums[2] / max(windows, 1),
            "windows": windows,
            "seconds": seconds,
            "windows_per_s": windows / seconds if seconds > 0 else float("nan"),
            **distributed.from_main(_validation_scores(y_val, probs) if ranks.main else None, ranks),
        }
        if ranks.parallel:  # each rank's windows, and how many windows two ranks both trained on
            drawn = np.concatenate(positions) if positions else np.zeros(0, np.int64)
            row["rank_windows"] = distributed.gathered(local_windows, ranks)
            row["shared_windows"] = distributed.shared_windows(drawn, len(train), ranks)
        rows.append(row)
        score = row["val_auprc"] if both_classes else -row["val_log_loss"]
        if log:
            log(
                f"epoch {epoch}: loss {row['train_loss']:.4f}, val AUPRC {row['val_auprc']:.3f}, "
                f"AUROC {row['val_auroc']:.3f}, {row['windows_per_s']:.0f} windows/s"
            )
        if score > best_score:
            best_score, best_epoch, best_probs = score, epoch, probs
            best_state = copy.deepcopy(model.state_dict())
        elif epoch - best_epoch >= tc.patience:
            break
    model.load_state_dict(best_state)
    model.eval()
    state = model.state_dict()
    distributed.require_same(
        "the trained weights", distributed.digest(state[k] for k in sorted(state)), ranks
    )
    return FitResult(model, config, pd.DataFrame(rows), best_epoch, best_probs)
