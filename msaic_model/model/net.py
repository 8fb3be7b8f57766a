"""MSAIC-Net (multi-scale atrous convolution with lead and channel attention) and `build_model`,
the one constructor for every architecture of the package.

MSAIC-Net, for input (n, 12, T):
1. lead-wise stem: a grouped convolution (groups = 12) gives `lead_width` channels per lead, so
   channels still correspond to leads;
2. lead attention: one gate per lead from that lead's channels (`LeadAttention`), so the model can
   weigh leads (a noisy V1, the inferior leads for an inferior MI);
3. lead mixing: a 1×1 convolution to `stem_width` channels (optionally max-pooled);
4. atrous blocks: parallel dilated branches concatenated and fused, SE/ECA on feature channels;
5. global average + max pooling; a classifier head (one logit) and a projection head (the
   embedding for the supervised contrastive loss).
"""

from __future__ import annotations

import torch
from torch import nn

from data_contracts.leads import CANONICAL_LEADS
from msaic_model.model.baselines import Inception1d, ResNet1dWang
from msaic_model.model.blocks import (
    AtrousBlock,
    ConcatPool,
    ConvBnAct,
    LeadAttention,
    NetOutput,
    channel_attention,
)
from msaic_model.model.config import Inception1dConfig, ModelConfig, MsaicNetConfig, NetConfig, ResNet1dConfig

N_LEADS = len(CANONICAL_LEADS)


class MsaicNet(nn.Module):
    def __init__(self, cfg: MsaicNetConfig, in_leads: int = N_LEADS) -> None:
        super().__init__()
        per_lead = in_leads * cfg.lead_width
        self.lead_stem = ConvBnAct(in_leads, per_lead, cfg.lead_kernel, groups=in_leads)
        self.lead_attention = LeadAttention(in_leads, cfg.lead_width, cfg.lead_attention_hidden)
        self.mix = nn.Sequential(
            ConvBnAct(per_lead, cfg.stem_width, 1),
            nn.MaxPool1d(cfg.stem_pool) if cfg.stem_pool > 1 else nn.Identity(),
        )
        blocks, width = [], cfg.stem_width
        for block in cfg.blocks:
            attention = channel_attention(
                cfg.channel_attention, block.width, cfg.se_reduction, cfg.eca_kernel
            )
            blocks.append(AtrousBlock(width, block, attention))
            width = block.width
        self.blocks = nn.Sequential(*blocks)
        self.pool = ConcatPool()
        self.classifier = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(2 * width, 1))
        self.projection = nn.Sequential(
            nn.Linear(2 * width, cfg.projection_hidden),
            nn.ReLU(inplace=True),
            nn.Linear(cfg.projection_hidden, cfg.projection_dim),
        )

    def forward(self, x: torch.Tensor) -> NetOutput:
        x, lead_weights = self.lead_attention(self.lead_stem(x))
        pooled = self.pool(self.blocks(self.mix(x)))
        return NetOutput(self.classifier(pooled).squeeze(-1), self.projection(pooled), lead_weights)


def build_model(config: ModelConfig | NetConfig) -> nn.Module:
    """A freshly initialized network for a model config (or its `net` part); forward returns `NetOutput`."""
    net = config.net if isinstance(config, ModelConfig) else config
    if isinstance(net, MsaicNetConfig):
        return MsaicNet(net)
    if isinstance(net, ResNet1dConfig):
        return ResNet1dWang(net)
    if isinstance(net, Inception1dConfig):
        return Inception1d(net)
    raise TypeError(f"unknown network config {type(net).__name__}")
