"""The training objective: class-weighted cross-entropy (or focal loss) on the classifier head plus
λ × an imbalance-aware supervised contrastive loss on the projection head.

Imbalance-aware SupCon, for a batch of B windows with labels y_i ∈ {0, 1} (1 = MI, the minority
of interest) and projections p_i:

    z_i = p_i / ‖p_i‖,   s_ij = z_i · z_j / τ
    A(i) = {j ≠ i},   P(i) = {j ≠ i : y_j = y_i}                      (positives of anchor i)
    w_c  = B / (K · n_c)           class-balanced anchor weight (n_c windows of class c in the
                                   batch, K classes present; the mean weight over the batch is 1)
    β_ij = 1 if y_i = y_j = 1,  β if y_i = y_j = 0   (majority–majority pairs down-weighted, β ≤ 1)

    ℓ_i = −(1/|P(i)|) Σ_{p∈P(i)} β_ip · [ s_ip − log Σ_{a∈A(i)} exp(s_ia) ]
    L_con = Σ_{i: |P(i)|>0} w_{y_i} ℓ_i  /  Σ_{i: |P(i)|>0} w_{y_i}

An anchor without a positive in the batch contributes nothing (it still serves as a negative for
the others); a batch where no anchor has a positive gives L_con = 0 with zero gradients, never NaN.
Class-balanced anchors keep the few MI anchors from being drowned by normals, and β < 1 lets the
normals spread while the MI windows are pulled into a compact cluster away from them.

Classification, with ω = the positive-class weight (n_negative / n_positive of the training set
when class weighting is on, else 1) and q_i = σ(logit_i):

    ce:    L_cls = mean_i −[ω y_i log q_i + (1 − y_i) log(1 − q_i)]
    focal: L_cls = mean_i −α_i (1 − q_t,i)^γ log q_t,i,   q_t = q if y = 1 else 1 − q,
           α_i = ω/(1 + ω) for positives, 1/(1 + ω) for negatives

    L = L_cls + λ · L_con
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from msaic_model.model.blocks import NetOutput
from msaic_model.model.config import LossConfig


class LossParts(NamedTuple):
    total: torch.Tensor
    classification: torch.Tensor
    contrastive: torch.Tensor


def imbalance_aware_supcon(
    projection: torch.Tensor, labels: torch.Tensor, temperature: float, majority_pair_weight: float
) -> torch.Tensor:
    """L_con of the module docstring for projections (B, d) and 0/1 labels (B,)."""
    labels = labels.long()
    n = labels.shape[0]
    z = F.normalize(projection, dim=1)
    sim = z @ z.T / temperature
    eye = torch.eye(n, dtype=torch.bool, device=z.device)
    log_denominator = torch.logsumexp(sim.masked_fill(eye, float("-inf")), dim=1, keepdim=True)
    log_prob = sim - log_denominator  # (B, B); the diagonal is never used

    positive = (labels[:, None] == labels[None, :]) & ~eye
    n_pos = positive.sum(dim=1)
    pair_weight = torch.where(labels == 1, 1.0, majority_pair_weight).to(
        z.dtype
    )  # β depends on the anchor class
    counts = torch.bincount(labels, minlength=2).to(z.dtype)
    present = (counts > 0).sum()
    class_weight = torch.where(counts > 0, n / (present * counts.clamp(min=1)), torch.zeros_like(counts))
    anchor_weight = class_weight[labels] * (n_pos > 0)

    pair_sum = (log_prob * positive).sum(
        dim=1
    )  # masked entries multiply by 0; log_prob is finite off-diagonal
    per_anchor = -pair_weight * pair_sum / n_pos.clamp(min=1)
    total_weight = anchor_weight.sum()
    if total_weight == 0:
        return (projection * 0).sum()  # defined and differentiable: zero loss, zero gradient
    return (anchor_weight * per_anchor).sum() / total_weight


def classification_loss(
    logits: torch.Tensor, labels: torch.Tensor, kind: str, pos_weight: float, gamma: float
) -> torch.Tensor:
    """L_cls of the module docstring (`kind` "ce" or "focal")."""
    y = labels.to(logits.dtype)
    if kind == "ce":
        return F.binary_cross_entropy_with_logits(
            logits, y, pos_weight=torch.tensor(pos_weight, dtype=logits.dtype, device=logits.device)
        )
    log_q = F.logsigmoid(logits)
    log_not_q = F.logsigmoid(-logits)
    log_qt = torch.where(y == 1, log_q, log_not_q)
    alpha = torch.where(y == 1, pos_weight / (1 + pos_weight), 1 / (1 + pos_weight))
    return (-alpha * (1 - log_qt.exp()) ** gamma * log_qt).mean()


class MsaicLoss(nn.Module):
    """L = L_cls + λ L_con on a `NetOutput`; the contrastive term is skipped for networks without
    a projection head (the baselines) or when λ = 0."""

    def __init__(self, cfg: LossConfig, pos_weight: float = 1.0) -> None:
        super().__init__()
        self.cfg = cfg
        self.pos_weight = pos_weight if cfg.class_weighted else 1.0

    def forward(self, output: NetOutput, labels: torch.Tensor) -> LossParts:
        cls = classification_loss(
            output.logits, labels, self.cfg.classification, self.pos_weight, self.cfg.focal_gamma
        )
        if output.projection is None or self.cfg.supcon_weight == 0:
            con = torch.zeros((), dtype=cls.dtype, device=cls.device)
        else:
            con = imbalance_aware_supcon(
                output.projection, labels, self.cfg.temperature, self.cfg.majority_pair_weight
            )
        return LossParts(cls + self.cfg.supcon_weight * con, cls, con)


def positive_class_weight(labels: torch.Tensor | list[int]) -> float:
    """ω = n_negative / n_positive of a label set (1.0 when a class is absent)."""
    y = torch.as_tensor(labels)
    n_pos = int((y == 1).sum())
    n_neg = int((y == 0).sum())
    return n_neg / n_pos if n_pos and n_neg else 1.0
