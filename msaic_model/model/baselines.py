"""Baselines of the PTB-XL benchmark (Strodthoff et al. 2020), rebuilt in this harness so that
they train on the same splits, input and loop as MSAIC-Net:

- `resnet1d_wang`: stem conv (kernel 7, stride 1, no pooling), basic blocks with kernel sizes
  (5, 3) at a fixed width of 128, stride 2 from the second stage on, concat-pooling head;
- `inception1d` (InceptionTime): modules of a 1×1 bottleneck then three convolutions
  (39/19/9) plus a max-pool branch, concatenated, with a residual shortcut every third module.
"""

from __future__ import annotations

import torch
from torch import nn

from msaic_model.model.blocks import ConcatPool, NetOutput, head, same_padding
from msaic_model.model.config import Inception1dConfig, ResNet1dConfig


def _conv(cin: int, cout: int, kernel_size: int, stride: int = 1) -> nn.Conv1d:
    return nn.Conv1d(cin, cout, kernel_size, stride=stride, padding=same_padding(kernel_size), bias=False)


class BasicBlock1d(nn.Module):
    def __init__(self, cin: int, cout: int, kernel_sizes: list[int], stride: int) -> None:
        super().__init__()
        k1, k2 = kernel_sizes[0], kernel_sizes[-1]
        self.body = nn.Sequential(
            _conv(cin, cout, k1, stride),
            nn.BatchNorm1d(cout),
            nn.ReLU(inplace=True),
            _conv(cout, cout, k2),
            nn.BatchNorm1d(cout),
        )
        self.shortcut = (
            nn.Identity()
            if stride == 1 and cin == cout
            else nn.Sequential(_conv(cin, cout, 1, stride), nn.BatchNorm1d(cout))
        )
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.shortcut(x))


class ResNet1dWang(nn.Module):
    def __init__(self, cfg: ResNet1dConfig, in_channels: int = 12) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            _conv(in_channels, cfg.width, cfg.stem_kernel),
            nn.BatchNorm1d(cfg.width),
            nn.ReLU(inplace=True),
        ]
        for stage, count in enumerate(cfg.layers):
            for i in range(count):
                stride = 2 if stage > 0 and i == 0 else 1
                layers.append(BasicBlock1d(cfg.width, cfg.width, cfg.kernel_sizes, stride))
        self.features = nn.Sequential(*layers, ConcatPool())
        self.classifier = head(2 * cfg.width, cfg.head_hidden, cfg.dropout)

    def forward(self, x: torch.Tensor) -> NetOutput:
        return NetOutput(self.classifier(self.features(x)).squeeze(-1))


class InceptionModule1d(nn.Module):
    def __init__(self, cin: int, filters: int, kernels: list[int], bottleneck: int) -> None:
        super().__init__()
        self.bottleneck = _conv(cin, bottleneck, 1)
        self.convs = nn.ModuleList(_conv(bottleneck, filters, k) for k in kernels)
        self.pool_branch = nn.Sequential(nn.MaxPool1d(3, stride=1, padding=1), _conv(cin, filters, 1))
        self.bn_act = nn.Sequential(nn.BatchNorm1d((len(kernels) + 1) * filters), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bottled = self.bottleneck(x)
        return self.bn_act(torch.cat([c(bottled) for c in self.convs] + [self.pool_branch(x)], dim=1))


class Inception1d(nn.Module):
    def __init__(self, cfg: Inception1dConfig, in_channels: int = 12) -> None:
        super().__init__()
        kernels = [cfg.kernel_size // 2**i for i in range(3)]
        kernels = [k - 1 if k % 2 == 0 else k for k in kernels]  # odd kernels keep the length
        width = 4 * cfg.filters
        self.modules_ = nn.ModuleList(
            InceptionModule1d(in_channels if d == 0 else width, cfg.filters, kernels, cfg.bottleneck)
            for d in range(cfg.depth)
        )
        n_short = cfg.depth // 3 if cfg.residual else 0
        self.shortcuts = nn.ModuleList(
            nn.Sequential(_conv(in_channels if i == 0 else width, width, 1), nn.BatchNorm1d(width))
            for i in range(n_short)
        )
        self.act = nn.ReLU(inplace=True)
        self.pool = ConcatPool()
        self.classifier = head(2 * width, cfg.head_hidden, cfg.dropout)

    def forward(self, x: torch.Tensor) -> NetOutput:
        residual = x
        for d, module in enumerate(self.modules_):
            x = module(x)
            if d % 3 == 2 and d // 3 < len(self.shortcuts):
                x = self.act(x + self.shortcuts[d // 3](residual))
                residual = x
        return NetOutput(self.classifier(self.pool(x)).squeeze(-1))
