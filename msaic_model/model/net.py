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
   embedding for the supervised contrastive loss);
6. with `fusion` (late fusion), the record's feature-store values (n, F): NaN → the training
   median, standardized with the training scale, clipped, then a small head to a second logit
   added to the classifier's. The medians and scales are buffers, set once from the training set
   (`set_feature_normalization`) and saved with the weights;
7. with `fusion.stack`, gradient boosting on the same measurements, fitted after training
   (`msaic_model.model.stacked`): the log-odds is then the mean of the network's and the trees'.
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
from msaic_model.model.config import (
    FusionConfig,
    Inception1dConfig,
    ModelConfig,
    MsaicNetConfig,
    NetConfig,
    ResNet1dConfig,
    fusion_columns,
)
from msaic_model.model.stacked import StackedTrees

N_LEADS = len(CANONICAL_LEADS)
FEATURE_HEAD = "features."  # the state-dict prefix of a fused MSAIC-Net's feature head
TREES = "features.trees."  # ... and of its stacked trees (`fusion.stack`), fitted after training


class FeatureHead(nn.Module):
    """The feature branch of a fused MSAIC-Net: imputed, standardized, clipped features → one logit."""

    def __init__(self, cfg: FusionConfig) -> None:
        super().__init__()
        n = len(fusion_columns(cfg))
        self.clip = cfg.clip
        self.register_buffer("center", torch.zeros(n))
        self.register_buffer("scale", torch.ones(n))
        self.head = nn.Sequential(
            nn.Linear(n, cfg.hidden), nn.ReLU(inplace=True), nn.Dropout(cfg.dropout), nn.Linear(cfg.hidden, 1)
        )
        self.trees = StackedTrees() if cfg.stack is not None else None

    def set_normalization(self, features: torch.Tensor) -> None:
        """Medians and scales (sd; 1 where a column is constant or never measured) of training
        features (n, F), NaN where not measured."""
        center = torch.nan_to_num(torch.nanmedian(features, dim=0).values)
        filled = torch.where(torch.isnan(features), center, features)
        scale = filled.std(dim=0)
        self.center.copy_(center)
        self.scale.copy_(torch.where(torch.isfinite(scale) & (scale > 1e-6), scale, torch.ones_like(scale)))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        z = (torch.where(torch.isnan(features), self.center, features) - self.center) / self.scale
        return self.head(z.clamp(-self.clip, self.clip)).squeeze(-1)


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
        self.features = FeatureHead(cfg.fusion) if cfg.fusion is not None else None

    def forward(self, x: torch.Tensor, features: torch.Tensor | None = None) -> NetOutput:
        """Logits of windows x (n, 12, T); a fused network also reads their features (n, F)."""
        if (self.features is None) != (features is None):
            raise ValueError("a fused MSAIC-Net needs features, an unfused one takes none")
        x, lead_weights = self.lead_attention(self.lead_stem(x))
        pooled = self.pool(self.blocks(self.mix(x)))
        logits = self.classifier(pooled).squeeze(-1)
        if self.features is not None:
            logits = logits + self.features(features.to(logits.dtype))
            trees = self.features.trees
            if trees is not None and trees.fitted:  # raw features: the trees split on stored values
                logits = (logits + trees(features).to(logits.dtype)) / 2
        return NetOutput(logits, self.projection(pooled), lead_weights)


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
