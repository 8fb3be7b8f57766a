"""Building blocks of MSAIC-Net: the atrous (dilated) multi-branch block, lead-wise attention over
the 12 leads, feature-channel attention (squeeze-excitation or efficient channel attention) and
concat pooling, and `NetOutput`, what every network of the package returns. Inputs are
(batch, channels, time)."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from msaic_model.model.config import AtrousBlockConfig


class NetOutput(NamedTuple):
    """What every model's forward returns.

    logits: (n,) one MI logit per window (probability = sigmoid(logits));
    projection: (n, d) embedding for the contrastive loss (not normalized), None for baselines;
    lead_weights: (n, 12) the lead-attention gates of MSAIC-Net, None for baselines.
    """

    logits: torch.Tensor
    projection: torch.Tensor | None = None
    lead_weights: torch.Tensor | None = None


def same_padding(kernel_size: int, dilation: int = 1) -> int:
    """Padding that keeps the length for odd kernels (one sample shorter for even ones)."""
    return dilation * (kernel_size - 1) // 2


class SqueezeExcitation(nn.Module):
    """SE (Hu et al. 2018): per-channel gates from the time-averaged channel, via a bottleneck MLP."""

    def __init__(self, channels: int, reduction: int) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.gate = nn.Sequential(
            nn.Linear(channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, channels), nn.Sigmoid()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x.mean(dim=-1)).unsqueeze(-1)


class EfficientChannelAttention(nn.Module):
    """ECA (Wang et al. 2020): gates from a 1-D convolution across neighbouring channels, no bottleneck."""

    def __init__(self, kernel_size: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, 1, kernel_size, padding=same_padding(kernel_size), bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        squeezed = x.mean(dim=-1, keepdim=True).transpose(1, 2)  # (n, 1, C)
        gate = torch.sigmoid(self.conv(squeezed)).transpose(1, 2)  # (n, C, 1)
        return x * gate


def channel_attention(kind: str, channels: int, reduction: int, eca_kernel: int) -> nn.Module:
    if kind == "se":
        return SqueezeExcitation(channels, reduction)
    return EfficientChannelAttention(eca_kernel)


class LeadAttention(nn.Module):
    """Attention over the 12 leads while channels still belong to one lead each.

    The input holds `leads × per_lead` channels grouped by lead (lead k owns channels
    k·per_lead … (k+1)·per_lead − 1, as a grouped stem produces). Each lead is summarized by the
    mean and the maximum of its channels over time; a small MLP across leads gives one sigmoid
    gate per lead, which scales all of that lead's channels; the gates (batch, leads) are returned
    too, so that a caller can see how the model weighed the leads.
    """

    def __init__(self, leads: int, per_lead: int, hidden: int) -> None:
        super().__init__()
        self.leads, self.per_lead = leads, per_lead
        self.gate = nn.Sequential(
            nn.Linear(2 * leads, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, leads), nn.Sigmoid()
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n, _, t = x.shape
        grouped = x.view(n, self.leads, self.per_lead, t)
        summary = torch.cat([grouped.mean(dim=(2, 3)), grouped.amax(dim=(2, 3))], dim=1)
        weights = self.gate(summary)  # (n, leads)
        return (grouped * weights[:, :, None, None]).view(n, -1, t), weights


class ConvBnAct(nn.Sequential):
    def __init__(
        self, cin: int, cout: int, kernel_size: int, dilation: int = 1, groups: int = 1, act: bool = True
    ) -> None:
        layers: list[nn.Module] = [
            nn.Conv1d(
                cin,
                cout,
                kernel_size,
                padding=same_padding(kernel_size, dilation),
                dilation=dilation,
                groups=groups,
                bias=False,
            ),
            nn.BatchNorm1d(cout),
        ]
        if act:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


def cat_channels(parts: list[torch.Tensor]) -> torch.Tensor:
    """Concatenate (n, C_i, T) tensors along channels in their memory layout: stored time by time
    (channels last, as `inference.channels_last` runs a network), the result is too, so the next
    convolution needs no copy; `torch.cat` would return (n, C, T)-contiguous."""
    if parts[0].stride(1) == 1 and parts[0].shape[1] > 1:
        return torch.cat([p.transpose(1, 2) for p in parts], dim=2).transpose(1, 2)
    return torch.cat(parts, dim=1)


class AtrousBlock(nn.Module):
    """Parallel dilated branches (receptive fields from QRS detail to whole-beat context),
    concatenated and fused by a 1×1 convolution, gated by feature-channel attention, added to a
    (projected) residual, then optionally max-pooled."""

    def __init__(self, cin: int, cfg: AtrousBlockConfig, attention: nn.Module) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            ConvBnAct(cin, cfg.branch_width, cfg.kernel_size, dilation=d) for d in cfg.dilations
        )
        self.fuse = ConvBnAct(cfg.branch_width * len(cfg.dilations), cfg.width, 1, act=False)
        self.attention = attention
        self.residual = nn.Identity() if cin == cfg.width else ConvBnAct(cin, cfg.width, 1, act=False)
        self.act = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool1d(cfg.pool) if cfg.pool > 1 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.shape[-1]
        branches = cat_channels([b(x)[..., :t] for b in self.branches])
        out = self.attention(self.fuse(branches)) + self.residual(x)
        return self.pool(self.act(out))


class ConcatPool(nn.Module):
    """Global average and maximum over time, concatenated: (n, C, T) → (n, 2C)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x.mean(dim=-1), x.amax(dim=-1)], dim=1)


def head(features: int, hidden: int, dropout: float, out: int = 1) -> nn.Sequential:
    """The fastai-style head of the PTB-XL benchmark: BN, dropout, linear, ReLU, BN, dropout, linear."""
    return nn.Sequential(
        nn.BatchNorm1d(features),
        nn.Dropout(dropout / 2),
        nn.Linear(features, hidden),
        nn.ReLU(inplace=True),
        nn.BatchNorm1d(hidden),
        nn.Dropout(dropout),
        nn.Linear(hidden, out),
    )


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
