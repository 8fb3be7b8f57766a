"""How a window is scored: the MI probability of a stored window, in one place.

A stored window is 12 leads x 5000 samples, mV at 500 Hz, NaN where a lead is missing (what
`tasks.ingest` writes after harmonizing a record). `window_probability` and the functions below it
score it as training validated it:

1. `prepare` (`msaic_model.model.data`, shared with training): NaN set to zero, values clipped,
   an optional high-pass, resampling to the model's rate, for the packaged MSAIC-Net one median
   beat per lead (a window without a beat is all zero: `no_input`, not scored), the config's
   normalization;
2. `_crops`: crops of the training length that tile the window, the last one aligned to its end
   (one crop for median-beat input);
3. `crop_logits`: the network's MI logit of each crop;
4. the window's probability is the mean of its crops' probabilities (`_mean_probability`), and
   its log-odds `window_logit` (what calibration reads, finite where the probability reads 1).

`predict_proba` applies this to stored windows in batches, `predict_store` to record ids of a
store, `CropOcclusion` also keeps what the occlusion explanation of a positive call needs. Archive
scoring (`tasks.scoring.score.score_units`) runs the quality gate first (a `reject` window is not
scored), calls a registered model's `occlusion` (`msaic_model.training.registry.LoadedModel`, the
same path for the feature baselines), flags a window whose probability reaches the model's saved
threshold, and explains it.

Score workers also rewrite a trained network for CPU (`for_cpu_scoring`): the same outputs to
float rounding, faster. Re-evaluation (`msaic evaluate`) keeps the network as trained, so that it
reproduces the registered metrics bit for bit. The rewrites:

- `fold_batch_norm`: every BatchNorm1d right after a Conv1d is folded into it (about 15 % faster).
- `channels_last`: every Conv1d and MaxPool1d runs as its (1 × k) 2-D twin on (n, C, 1, T) views in
  channels-last memory layout, where oneDNN's kernels are faster on CPU than on (n, C, T)
  (measured with the packaged MSAIC-Net shapes, one thread: 1×1 convolutions 1.2-5.8×, the dilated
  branches 1.1-1.3×). Activations stay (n, C, T) tensors to the modules around them, stored time
  by time; the blocks' channel concatenation keeps that layout (`blocks.cat_channels`), so no
  copy is made between layers.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from msaic_model.model.config import ModelConfig
from msaic_model.model.data import WaveformStream, crop_samples, prepare
from tasks.store.location import Location


def fold_batch_norm(net: nn.Module) -> nn.Module:
    """Fold every BatchNorm1d that directly follows a Conv1d (in a Sequential) into that
    convolution, with the running statistics. Puts the network in eval mode."""
    net.eval()
    for module in net.modules():
        if isinstance(module, nn.Sequential):
            for i in range(len(module) - 1):
                conv, norm = module[i], module[i + 1]
                if isinstance(conv, nn.Conv1d) and isinstance(norm, nn.BatchNorm1d):
                    module[i], module[i + 1] = fuse_conv_bn_eval(conv, norm), nn.Identity()
    return net


def _as_channels_last(x: torch.Tensor) -> torch.Tensor:
    """(n, C, T) → (n, C, 1, T) in channels-last layout (a view when x is stored time by time)."""
    return x.unsqueeze(2).contiguous(memory_format=torch.channels_last)


class ChannelsLastConv1d(nn.Module):
    """A Conv1d's weights run as a (1 × k) Conv2d in channels-last layout; (n, C, T) in and out."""

    def __init__(self, conv: nn.Conv1d) -> None:
        super().__init__()
        if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise ValueError("only explicit zero padding is supported")
        weight = conv.weight.detach()[:, :, None, :].contiguous(memory_format=torch.channels_last)
        self.weight = nn.Parameter(weight, requires_grad=False)
        self.bias = None if conv.bias is None else nn.Parameter(conv.bias.detach(), requires_grad=False)
        self.stride, self.padding = (1, conv.stride[0]), (0, conv.padding[0])
        self.dilation, self.groups = (1, conv.dilation[0]), conv.groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.conv2d(
            _as_channels_last(x),
            self.weight,
            self.bias,
            self.stride,
            self.padding,
            self.dilation,
            self.groups,
        )
        return y.squeeze(2)


def _one(value: int | tuple[int, ...]) -> int:
    """A 1-d pooling parameter, given as an int or a 1-tuple."""
    return int(value if isinstance(value, int) else value[0])


class ChannelsLastMaxPool1d(nn.Module):
    """A MaxPool1d run as a (1 × k) 2-D max-pool in channels-last layout; (n, C, T) in and out."""

    def __init__(self, pool: nn.MaxPool1d) -> None:
        super().__init__()
        self.kernel, self.stride = (1, _one(pool.kernel_size)), (1, _one(pool.stride))
        self.padding, self.dilation = (0, _one(pool.padding)), (1, _one(pool.dilation))
        self.ceil_mode = pool.ceil_mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.max_pool2d(
            _as_channels_last(x), self.kernel, self.stride, self.padding, self.dilation, self.ceil_mode
        )
        return y.squeeze(2)


def channels_last(net: nn.Module) -> nn.Module:
    """Replace every Conv1d and MaxPool1d of `net` by its channels-last twin (in place)."""
    for module in list(net.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, nn.Conv1d):
                setattr(module, name, ChannelsLastConv1d(child))
            elif isinstance(child, nn.MaxPool1d):
                setattr(module, name, ChannelsLastMaxPool1d(child))
    return net


def for_cpu_scoring(net: nn.Module) -> nn.Module:
    """Batch norm folded, then channels-last convolutions: what a score worker runs (eval mode)."""
    return channels_last(fold_batch_norm(net))


def resolve_device(choice: str) -> torch.device:
    """`auto` → the GPU when one is present, else the CPU."""
    if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


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


def crop_logits(model: nn.Module, crops: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor:
    """(n, k) MI logit (log-odds) of each crop of prepared crops (n, k, 12, crop); `features`
    (n, F), a fused network's second input, are those of each crop's window."""
    device = _device_of(model)
    inputs = [crops.flatten(0, 1).to(device, non_blocking=True)]
    if features is not None:
        inputs.append(features.repeat_interleave(crops.shape[1], dim=0).to(device))
    return model(*inputs).logits.float().reshape(crops.shape[:2]).cpu()


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


def window_probability(
    model: nn.Module, config: ModelConfig, x: torch.Tensor, features: torch.Tensor | None = None
) -> np.ndarray:
    """MI probability of whole prepared windows (n, 12, T): the mean probability over crops of the
    training length that tile the window, so that the network sees inputs as long as in training
    and every sample once (half-overlapping crops cost 1.75x the compute; on a held-out-site
    synthetic test set they gave AUROC 0.874 vs 0.875 for tiles)."""
    return _mean_probability(crop_logits(model, _crops(config, x), features))


def _as_tensor(features: np.ndarray | torch.Tensor | None) -> torch.Tensor | None:
    if features is None or isinstance(features, torch.Tensor):
        return features
    return torch.from_numpy(np.asarray(features, np.float32))


def _crop_batches(
    model: nn.Module,
    config: ModelConfig,
    signals: np.ndarray,
    batch_size: int | None = None,
    features: np.ndarray | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Stored windows (n, 12, 5000) mV 500 Hz (NaN allowed) prepared as in training, batch by
    batch, as their tiling crops (b, k, 12, crop) and the crops' logits (b, k); the model in eval
    mode, no gradients. `features` (n, F): a fused network's second input."""
    model.eval()
    size = batch_size or config.train.eval_batch_size
    f = _as_tensor(features)
    with torch.inference_mode():
        for start in range(0, len(signals), size):
            crops = _crops(config, prepare(signals[start : start + size], config))
            yield crops, crop_logits(model, crops, None if f is None else f[start : start + size])


def predict_stream(model: nn.Module, stream: WaveformStream) -> WindowScores:
    """MI probability and log-odds per window of an evaluation stream, aligned with its `record_ids`."""
    model.eval()
    probabilities = np.full(len(stream.record_ids), np.nan, np.float32)
    logits = np.full(len(stream.record_ids), np.nan, np.float64)
    with torch.inference_mode():
        for batch in stream:
            scores = WindowScores.of(crop_logits(model, _crops(stream.config, batch.x), batch.features))
            probabilities[batch.position.numpy()] = scores.probability
            logits[batch.position.numpy()] = scores.logit
    return WindowScores(probabilities, logits)


def predict_prepared(
    model: nn.Module,
    config: ModelConfig,
    x: np.ndarray,
    batch_size: int | None = None,
    features: np.ndarray | None = None,
) -> np.ndarray:
    """MI probability of already prepared windows (n, 12, T), as `prepare_array` gives them (and
    a fused network's features (n, F)): `window_probability` in batches, no gradients; the model
    is put in eval mode."""
    model.eval()
    size = batch_size or config.train.eval_batch_size
    f = _as_tensor(features)
    with torch.inference_mode():
        parts = [
            window_probability(
                model, config, torch.from_numpy(x[s : s + size]), None if f is None else f[s : s + size]
            )
            for s in range(0, len(x), size)
        ]
    return np.concatenate([np.empty(0, np.float32), *parts])


def predict_proba(
    model: nn.Module,
    config: ModelConfig,
    signals: np.ndarray,
    batch_size: int | None = None,
    features: np.ndarray | None = None,
) -> np.ndarray:
    """MI probability per stored window (n, 12, 5000) mV 500 Hz (NaN allowed; a fused network
    also takes their features (n, F)): prepared as in training, the mean over its tiling crops
    (`window_probability`), in batches, no gradients; the model is put in eval mode."""
    batches = _crop_batches(model, config, signals, batch_size, features)
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
    features: torch.Tensor | None = None  # (n, F) a fused network's features, never occluded

    @classmethod
    def of(
        cls, model: nn.Module, config: ModelConfig, signals: np.ndarray, features: np.ndarray | None = None
    ) -> CropOcclusion:
        """Score stored windows (n, 12, 5000) mV 500 Hz (NaN allowed) and keep their strongest crops."""
        crops, logits, empty = [], [], []
        for batch, z in _crop_batches(model, config, signals, features=features):
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
            _as_tensor(features),
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
                features = None if self.features is None else self.features[rows[part]]
                out.append(crop_logits(self.model, occluded, features)[:, 0].numpy())
        return np.concatenate(out)


def predict_store(
    model: nn.Module,
    config: ModelConfig,
    store: Location,
    record_ids: list[str] | pd.Series,
    features: np.ndarray | None = None,
) -> WindowScores:
    """MI probability and log-odds per record id (aligned with `record_ids`), streamed from the
    store; `features` (n, F) are a fused network's second input, aligned with `record_ids`."""
    stream = WaveformStream(store, list(record_ids), None, config, train=False, features=features)
    return predict_stream(model, stream)
