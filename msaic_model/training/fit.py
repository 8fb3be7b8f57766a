"""The training loop shared by MSAIC-Net and the neural baselines, and batched inference.

`fit` trains on windows streamed from the store (random crops, augmentation, optional class-balanced
sampling; epochs of at least `min_windows_per_epoch` windows, see `TrainConfig`), scores every
validation window after every epoch (mean over its crops, as at inference) and keeps the weights of
the epoch with the best validation AUPRC (early stopping after `patience` epochs without a gain; the
validation log loss decides when the validation set holds a single class). Seeds make a run
repeatable on the same device. The threshold is not chosen here: the caller picks it from
`FitResult.val_probabilities`, which come from the validation split only.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import average_precision_score, log_loss, roc_auc_score
from torch import nn
from torch.nn import functional as F

from msaic_model.model.config import ModelConfig
from msaic_model.model.data import WaveformStream, crop_samples, prepare
from msaic_model.model.net import build_model
from msaic_model.training.losses import MsaicLoss, positive_class_weight


def resolve_device(choice: str) -> torch.device:
    """`auto` → the GPU when one is present, else the CPU."""
    if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    """Seed torch (initialization, dropout; the data stream has its own generators) and ask cuDNN
    for deterministic kernels."""
    torch.manual_seed(seed)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def _device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _crops(config: ModelConfig, x: torch.Tensor) -> torch.Tensor:
    """(n, k, 12, crop): crops of the training length that tile each prepared window (n, 12, T),
    the last one aligned to its end; one crop, the whole window, when training used no crop."""
    t = x.shape[-1]
    crop = min(t, crop_samples(config))
    starts = list(range(0, t - crop + 1, crop))
    if starts[-1] != t - crop:
        starts.append(t - crop)  # cover the end of the window
    return torch.stack([x[:, :, s : s + crop] for s in starts], dim=1)


def crop_logits(model: nn.Module, crops: torch.Tensor) -> torch.Tensor:
    """(n, k) MI logit (log-odds) of each crop of prepared crops (n, k, 12, crop)."""
    logits = model(crops.flatten(0, 1).to(_device_of(model), non_blocking=True)).logits.float()
    return logits.reshape(crops.shape[:2]).cpu()


def _mean_probability(logits: torch.Tensor) -> np.ndarray:
    """(n,) window probability from its crops' logits (n, k): the mean of the crops' probabilities."""
    return torch.sigmoid(logits).mean(dim=1).numpy()


def window_logit(logits: torch.Tensor) -> np.ndarray:
    """(n,) float64 log-odds of the window probability (the mean of its crops' probabilities) from
    the crops' logits (n, k), computed in log space: log Σσ(z) − log Σσ(−z). It stays finite and
    distinct where the float32 probability reads 1, so it ranks confident calls and is what the
    calibration reads; a single crop's log-odds is its logit."""
    z = logits.double()
    return (torch.logsumexp(F.logsigmoid(z), dim=1) - torch.logsumexp(F.logsigmoid(-z), dim=1)).numpy()


@dataclass(frozen=True)
class WindowScores:
    """Per window: the MI probability (float32, the mean over its crops, as scoring stores it) and
    its log-odds (float64, `window_logit`)."""

    probability: np.ndarray
    logit: np.ndarray

    @classmethod
    def of(cls, logits: torch.Tensor) -> WindowScores:
        """Scores of windows from their crops' logits (n, k)."""
        return cls(_mean_probability(logits), window_logit(logits))


def window_probability(model: nn.Module, config: ModelConfig, x: torch.Tensor) -> np.ndarray:
    """MI probability of whole prepared windows (n, 12, T): the mean probability over crops of the
    training length that tile the window, so that the network sees inputs as long as in training
    and every sample once (half-overlapping crops cost 1.75x the compute; on a held-out-site
    synthetic test set they gave AUROC 0.874 vs 0.875 for tiles)."""
    return _mean_probability(crop_logits(model, _crops(config, x)))


def _crop_batches(
    model: nn.Module, config: ModelConfig, signals: np.ndarray, batch_size: int | None = None
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Stored windows (n, 12, 5000) mV 500 Hz (NaN allowed) prepared as in training, batch by
    batch, as their tiling crops (b, k, 12, crop) and the crops' logits (b, k); the model in eval
    mode, no gradients."""
    model.eval()
    size = batch_size or config.train.eval_batch_size
    with torch.inference_mode():
        for start in range(0, len(signals), size):
            crops = _crops(config, prepare(signals[start : start + size], config))
            yield crops, crop_logits(model, crops)


def predict_stream(model: nn.Module, stream: WaveformStream) -> WindowScores:
    """MI probability and log-odds per window of an evaluation stream, aligned with its `record_ids`."""
    model.eval()
    probabilities = np.full(len(stream.record_ids), np.nan, np.float32)
    logits = np.full(len(stream.record_ids), np.nan, np.float64)
    with torch.inference_mode():
        for batch in stream:
            scores = WindowScores.of(crop_logits(model, _crops(stream.config, batch.x)))
            probabilities[batch.position.numpy()] = scores.probability
            logits[batch.position.numpy()] = scores.logit
    return WindowScores(probabilities, logits)


def predict_prepared(
    model: nn.Module, config: ModelConfig, x: np.ndarray, batch_size: int | None = None
) -> np.ndarray:
    """MI probability of already prepared windows (n, 12, T), as `prepare_array` gives them:
    `window_probability` in batches, no gradients; the model is put in eval mode."""
    model.eval()
    size = batch_size or config.train.eval_batch_size
    with torch.inference_mode():
        parts = [
            window_probability(model, config, torch.from_numpy(x[s : s + size]))
            for s in range(0, len(x), size)
        ]
    return np.concatenate([np.empty(0, np.float32), *parts])


def predict_proba(
    model: nn.Module, config: ModelConfig, signals: np.ndarray, batch_size: int | None = None
) -> np.ndarray:
    """MI probability per stored window (n, 12, 5000) mV 500 Hz (NaN allowed): prepared as in
    training, the mean over its tiling crops (`window_probability`), in batches, no gradients; the
    model is put in eval mode."""
    batches = _crop_batches(model, config, signals, batch_size)
    probabilities = (_mean_probability(z) for _, z in batches)
    return np.concatenate([np.empty(0, np.float32), *probabilities])


@dataclass
class CropOcclusion:
    """A network's scores of windows and the occlusion behind the explanation of a positive call.
    `probability` is each window's MI probability (as `predict_proba`); occlusion looks at the crop
    of each window with the highest probability, the part of the window behind a positive call, and
    speaks log-odds (`base_logit`, nothing removed), which keep measuring a lead's weight where the
    probability has saturated at 1. Removing a lead sets its prepared input to zero, as a missing
    (NaN) lead is prepared, so each window is prepared and scored once and an occlusion costs one
    crop-sized forward pass. Median-beat input is one crop; its other leads keep the beats found
    with every lead (a lead missing from the record would also be left out of beat detection)."""

    model: nn.Module
    config: ModelConfig
    crops: torch.Tensor  # (n, 12, crop) prepared
    probability: np.ndarray  # (n,) window probability, the mean over its crops
    logit: np.ndarray  # (n,) its log-odds (`window_logit`; with one crop, `base_logit`)
    base_logit: np.ndarray  # (n,) logit of each strongest crop, nothing removed
    no_input: np.ndarray  # (n,) the prepared window is all zero: no median beat, or no lead at all

    @classmethod
    def of(cls, model: nn.Module, config: ModelConfig, signals: np.ndarray) -> CropOcclusion:
        """Score stored windows (n, 12, 5000) mV 500 Hz (NaN allowed) and keep their strongest crops."""
        crops, logits, empty = [], [], []
        for batch, z in _crop_batches(model, config, signals):
            crops.append(batch[torch.arange(len(batch)), z.argmax(dim=1)])
            logits.append(z)
            empty.append((batch == 0).flatten(1).all(dim=1).numpy())
        z = torch.cat(logits) if logits else torch.empty(0, 1)
        scores = WindowScores.of(z)
        return cls(
            model,
            config,
            torch.cat(crops) if crops else torch.empty(0),
            scores.probability,
            scores.logit,
            z.amax(dim=1).numpy(),
            np.concatenate([np.empty(0, bool), *empty]),
        )

    def masked_logit(self, rows: np.ndarray, masks: np.ndarray) -> np.ndarray:
        """Logit of the crops `rows` with the leads where `masks` (m, 12) is True removed."""
        size = self.config.train.eval_batch_size
        keep = torch.from_numpy(~np.asarray(masks, dtype=bool)).to(self.crops.dtype)[:, :, None]
        out = [np.empty(0, np.float32)]
        self.model.eval()
        with torch.inference_mode():
            for start in range(0, len(rows), size):
                part = slice(start, start + size)
                occluded = (self.crops[rows[part]] * keep[part])[:, None]  # (b, 1 crop, 12, crop)
                out.append(crop_logits(self.model, occluded)[:, 0].numpy())
        return np.concatenate(out)


def predict_store(
    model: nn.Module, config: ModelConfig, store: Path, record_ids: list[str] | pd.Series
) -> WindowScores:
    """MI probability and log-odds per record id (aligned with `record_ids`), streamed from the store."""
    return predict_stream(model, WaveformStream(store, list(record_ids), None, config, train=False))


@dataclass
class FitResult:
    """The best model (eval mode), its config, one history row per epoch, the best epoch (1-based)
    and the validation probabilities of the best model, aligned with the rows of `val`."""

    model: nn.Module
    config: ModelConfig
    history: pd.DataFrame
    best_epoch: int
    val_probabilities: np.ndarray

    def predict_proba(self, signals: np.ndarray) -> np.ndarray:
        return predict_proba(self.model, self.config, signals)


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
    store: Path,
    train: pd.DataFrame,
    val: pd.DataFrame,
    config: ModelConfig,
    log: Callable[[str], None] | None = None,
) -> FitResult:
    """Train `config`'s network on the windows of `train` (record_id, mi_label 0/1, optional site)
    and early-stop on `val`; see the module docstring."""
    y_train, y_val = _labels(train, "train"), _labels(val, "val")
    tc = config.train
    seed_everything(tc.seed)
    if tc.num_threads:
        torch.set_num_threads(tc.num_threads)
    device = resolve_device(tc.device)
    model = build_model(config).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    criterion = MsaicLoss(config.loss, positive_class_weight(y_train))
    sites = train["site"].unique().tolist() if "site" in train.columns else None
    stream = WaveformStream(
        store,
        train["record_id"].tolist(),
        y_train,
        config,
        train=True,
        sites=sites,
        windows_per_epoch=tc.epoch_windows(len(train)),
    )
    val_stream = WaveformStream(store, val["record_id"].tolist(), y_val, config, train=False, cache=True)
    both_classes = len(np.unique(y_val)) == 2

    rows: list[dict[str, float]] = []
    best_score, best_epoch, best_state, best_probs = -np.inf, 0, None, None
    for epoch in range(1, tc.epochs + 1):
        stream.set_epoch(epoch)
        model.train()
        sums = np.zeros(3)
        windows = 0
        start = time.perf_counter()
        for batch in stream:
            if len(batch.y) < 2:  # batch norm needs two windows
                continue
            parts = criterion(model(batch.x.to(device, non_blocking=True)), batch.y.to(device))
            optimizer.zero_grad(set_to_none=True)
            parts.total.backward()
            optimizer.step()
            sums += [float(p.detach()) * len(batch.y) for p in parts]
            windows += len(batch.y)
        seconds = time.perf_counter() - start
        probs = predict_stream(model, val_stream).probability
        row = {
            "epoch": epoch,
            "train_loss": sums[0] / max(windows, 1),
            "train_classification": sums[1] / max(windows, 1),
            "train_contrastive": sums[2] / max(windows, 1),
            "windows": windows,
            "seconds": seconds,
            "windows_per_s": windows / seconds if seconds > 0 else float("nan"),
            **_validation_scores(y_val, probs),
        }
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
    return FitResult(model, config, pd.DataFrame(rows), best_epoch, best_probs)
