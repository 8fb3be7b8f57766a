"""The imbalance-aware SupCon and the classification losses against hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from msaic_model.model.blocks import NetOutput
from msaic_model.model.config import LossConfig
from msaic_model.training.losses import (
    MsaicLoss,
    classification_loss,
    imbalance_aware_supcon,
    positive_class_weight,
)

TAU = 0.5
BETA = 0.25


def hand_supcon(z: np.ndarray, y: list[int], tau: float, beta: float) -> float:
    """The docstring formula written out with loops, independent of the vectorized code."""
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    n = len(y)
    counts = {c: y.count(c) for c in set(y)}
    weights = {c: n / (len(counts) * k) for c, k in counts.items()}
    num = den = 0.0
    for i in range(n):
        positives = [p for p in range(n) if p != i and y[p] == y[i]]
        if not positives:
            continue
        log_den = math.log(sum(math.exp(z[i] @ z[a] / tau) for a in range(n) if a != i))
        pair_w = 1.0 if y[i] == 1 else beta
        li = -sum(pair_w * (z[i] @ z[p] / tau - log_den) for p in positives) / len(positives)
        num += weights[y[i]] * li
        den += weights[y[i]]
    return num / den if den else 0.0


EMBEDDINGS = np.array([[1.0, 0.2], [0.8, 0.5], [-0.3, 1.0], [0.1, -1.0], [-1.0, -0.4]])


@pytest.mark.parametrize("labels", [[1, 1, 0, 0, 0], [1, 0, 0, 0, 0], [0, 1, 1, 0, 1], [1, 1, 1, 1, 0]])
def test_supcon_matches_hand_computation(labels: list[int]) -> None:
    got = imbalance_aware_supcon(torch.tensor(EMBEDDINGS), torch.tensor(labels), TAU, BETA)
    assert got.item() == pytest.approx(hand_supcon(EMBEDDINGS, labels, TAU, BETA), rel=1e-9)


def test_supcon_reduces_to_plain_supcon_when_balanced_and_beta_one() -> None:
    """Equal class counts give equal anchor weights; β = 1 then gives Khosla et al.'s L_out."""
    z = torch.tensor(EMBEDDINGS[:4])
    y = torch.tensor([1, 0, 1, 0])
    zn = torch.nn.functional.normalize(z, dim=1)
    sim = zn @ zn.T / TAU
    terms = []
    for i in range(4):
        den = torch.logsumexp(torch.cat([sim[i, :i], sim[i, i + 1 :]]), 0)
        terms.append(-torch.stack([sim[i, p] - den for p in range(4) if p != i and y[p] == y[i]]).mean())
    assert imbalance_aware_supcon(z, y, TAU, 1.0).item() == pytest.approx(torch.stack(terms).mean().item())


def test_majority_pairs_are_down_weighted() -> None:
    """Lowering β lowers the loss only through the normal anchors' terms."""
    z, y = torch.tensor(EMBEDDINGS), torch.tensor([1, 1, 0, 0, 0])
    full = imbalance_aware_supcon(z, y, TAU, 1.0).item()
    half = imbalance_aware_supcon(z, y, TAU, 0.5).item()
    assert half < full
    assert half == pytest.approx(hand_supcon(EMBEDDINGS, [1, 1, 0, 0, 0], TAU, 0.5))


@pytest.mark.parametrize(
    "labels",
    [[0, 0, 0, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0], [0, 1, 1, 1, 1], [1, 0]],
    ids=["all-normal", "all-mi", "single-mi", "single-normal", "pair-of-singletons"],
)
def test_supcon_finite_loss_and_gradients(labels: list[int]) -> None:
    z = torch.tensor(EMBEDDINGS[: len(labels)], requires_grad=True)
    loss = imbalance_aware_supcon(z, torch.tensor(labels), TAU, BETA)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(z.grad).all()


def test_batch_without_any_positive_gives_zero_and_zero_gradient() -> None:
    z = torch.tensor(EMBEDDINGS[:2], requires_grad=True)
    loss = imbalance_aware_supcon(z, torch.tensor([1, 0]), TAU, BETA)
    loss.backward()
    assert loss.item() == 0.0
    assert torch.count_nonzero(z.grad) == 0


def test_single_positive_anchor_is_left_out_but_serves_as_negative() -> None:
    """The lone MI window adds no anchor term; moving it changes the normals' denominators."""
    y = torch.tensor([1, 0, 0, 0, 0])
    z = torch.tensor(EMBEDDINGS, requires_grad=True)
    imbalance_aware_supcon(z, y, TAU, BETA).backward()
    assert z.grad[0].abs().sum() > 0  # it acts through the denominators only


def test_weighted_cross_entropy_by_hand() -> None:
    logits = torch.tensor([2.0, -1.0, 0.5])
    y = torch.tensor([1, 0, 0])
    w = 3.0
    sig = 1 / (1 + np.exp(-logits.numpy().astype(float)))
    expected = -(w * np.log(sig[0]) + np.log(1 - sig[1]) + np.log(1 - sig[2])) / 3
    assert classification_loss(logits, y, "ce", w, 2.0).item() == pytest.approx(expected, rel=1e-6)


def test_focal_by_hand() -> None:
    logits = torch.tensor([2.0, -1.0, 0.5])
    y = torch.tensor([1, 0, 0])
    w, gamma = 3.0, 2.0
    q = 1 / (1 + np.exp(-logits.numpy().astype(float)))
    qt = np.where(y.numpy() == 1, q, 1 - q)
    alpha = np.where(y.numpy() == 1, w / (1 + w), 1 / (1 + w))
    expected = np.mean(-alpha * (1 - qt) ** gamma * np.log(qt))
    assert classification_loss(logits, y, "focal", w, gamma).item() == pytest.approx(expected, rel=1e-6)


def test_combined_loss_and_baseline_output() -> None:
    cfg = LossConfig(supcon_weight=0.7, temperature=TAU, majority_pair_weight=BETA)
    y = torch.tensor([1, 1, 0, 0, 0])
    logits = torch.tensor([0.3, -0.2, 0.1, -1.0, 0.4])
    loss = MsaicLoss(cfg, pos_weight=1.5)
    parts = loss(NetOutput(logits, torch.tensor(EMBEDDINGS)), y)
    assert parts.contrastive.item() == pytest.approx(hand_supcon(EMBEDDINGS, [1, 1, 0, 0, 0], TAU, BETA))
    assert parts.total.item() == pytest.approx(parts.classification.item() + 0.7 * parts.contrastive.item())
    baseline = loss(NetOutput(logits), y)  # no projection head: classification only
    assert baseline.contrastive.item() == 0.0
    assert baseline.total.item() == pytest.approx(parts.classification.item())


def test_positive_class_weight() -> None:
    assert positive_class_weight([0, 0, 0, 1]) == 3.0
    assert positive_class_weight([0, 0]) == 1.0
