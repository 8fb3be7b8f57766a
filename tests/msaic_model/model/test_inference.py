"""Inference-only rewrites (msaic_model/model/inference.py): the same outputs as the trained network."""

from __future__ import annotations

import copy

import pytest
import torch

from msaic_model.model.config import load_config
from msaic_model.model.inference import ChannelsLastConv1d, for_cpu_scoring
from msaic_model.model.net import build_model


def _trained_like(name: str) -> torch.nn.Module:
    """A network of the packaged config whose batch norms hold non-trivial running statistics."""
    torch.manual_seed(0)
    net = build_model(load_config(name))
    net.train()
    with torch.no_grad():
        for _ in range(3):
            net(torch.randn(8, 12, 250) * 0.5 + 0.1)
    return net.eval()


@pytest.mark.parametrize("name", ["msaic", "resnet1d", "inception1d"])
def test_scoring_rewrite_gives_the_same_outputs(name: str) -> None:
    net = _trained_like(name)
    fast = for_cpu_scoring(copy.deepcopy(net))
    assert any(isinstance(m, ChannelsLastConv1d) for m in fast.modules())
    assert not any(isinstance(m, torch.nn.Conv1d) for m in fast.modules())
    x = torch.randn(5, 12, 250)
    with torch.inference_mode():
        expected, got = net(x), fast(x)
    torch.testing.assert_close(got.logits, expected.logits, rtol=1e-4, atol=1e-4)
    if expected.projection is not None:
        torch.testing.assert_close(got.projection, expected.projection, rtol=1e-4, atol=1e-4)


def test_msaic_blocks_keep_the_channels_last_layout() -> None:
    """Past the stem, every convolution of the rewritten MSAIC-Net receives its input already
    stored time by time, so none pays a layout copy."""
    fast = for_cpu_scoring(_trained_like("msaic"))
    seen: list[bool] = []
    for module in fast.blocks.modules():
        if isinstance(module, ChannelsLastConv1d):
            module.register_forward_pre_hook(lambda _m, args: seen.append(args[0].stride(1) == 1))
    with torch.inference_mode():
        fast(torch.randn(4, 12, 250))
    assert seen and all(seen)
