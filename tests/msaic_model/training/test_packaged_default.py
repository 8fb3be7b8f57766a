"""The packaged MSAIC-Net default: the config that bench/real.py's rule chose on real data
(`packaged_default` of data_contracts/real_benchmark.json) is what `msaic train` trains without
--config, and the pretrained weights a packaged config names ship with the package intact (and
start a fused network's waveform branch)."""

from __future__ import annotations

import hashlib

import pytest
import torch

from data_contracts import load_json
from msaic_model.model.config import WEIGHTS_DIR, available_configs, load_config, weights_provenance
from msaic_model.model.net import build_model
from msaic_model.training.fit import initial_weights, load_initial_weights
from msaic_model.training.run import network_config, packaged_config


def test_msaic_trains_the_config_the_real_benchmark_chose() -> None:
    chosen = load_json("real_benchmark.json")["packaged_default"]
    assert chosen in available_configs()
    assert packaged_config("msaic") == chosen == network_config("msaic", None, None, 3).name
    assert network_config("msaic", None, None, 3).train.seed == 3
    assert packaged_config("resnet1d") == "resnet1d"  # other networks keep their own config


def test_packaged_pretrained_weights_are_intact_and_fit_their_network() -> None:
    start_only = {"name": True, "train": {"init_weights"}}
    pretrained = [c for c in map(load_config, available_configs()) if c.train.init_weights is not None]
    assert [c.name for c in pretrained] == ["msaic_fused_pretrained", "msaic_pretrained", "msaic_stacked"]
    for config in pretrained:
        path = WEIGHTS_DIR / config.train.init_weights
        provenance = weights_provenance(config)
        assert hashlib.sha256(path.read_bytes()).hexdigest() == provenance["sha256"]
        load_initial_weights(build_model(config), initial_weights(config))
        # the network and training of the config it was pretrained with (a fused config: with its
        # feature head beside, as msaic_fused); only the start differs
        waveform = {**start_only, "net": {"fusion"}}
        pretrained_with = load_config(provenance["config"])
        assert config.model_dump(exclude=waveform) == pretrained_with.model_dump(exclude=waveform)
        plain = pretrained_with if config.net.fusion is None else load_config("msaic_fused")
        trees = {**start_only, "net": {"fusion": {"stack"}}}  # stacked trees are fitted after training
        assert config.model_dump(exclude=trees) == plain.model_dump(exclude=trees)


@pytest.mark.parametrize("name", ["msaic_fused_pretrained", "msaic_stacked"])
def test_fused_pretrained_starts_its_waveform_branch_from_the_file_and_its_feature_head_fresh(
    name: str,
) -> None:
    """The feature head (and the stacked trees, empty until fitted after training) stay fresh."""
    config = load_config(name)
    weights = initial_weights(config)
    torch.manual_seed(0)
    fresh = build_model(config).state_dict()
    torch.manual_seed(0)
    net = build_model(config)
    load_initial_weights(net, weights)
    loaded = net.state_dict()
    head = {k for k in loaded if k.startswith("features.")}
    assert head and not head & set(weights)  # the file holds the waveform network only
    assert set(loaded) == set(weights) | head
    for key, value in weights.items():
        torch.testing.assert_close(loaded[key], value, rtol=0, atol=0)
    for key in head:
        torch.testing.assert_close(loaded[key], fresh[key], rtol=0, atol=0)
    # the file differs from a fresh start, so the equality above is the file's doing
    assert any(not torch.equal(fresh[k], v) for k, v in weights.items() if v.is_floating_point())


def test_weights_that_do_not_fit_the_waveform_branch_are_refused() -> None:
    config = load_config("msaic_fused_pretrained")
    weights = initial_weights(config)
    lacking = {k: v for k, v in weights.items() if not k.startswith("classifier.")}
    with pytest.raises(RuntimeError, match="classifier"):
        load_initial_weights(build_model(config), lacking)
    stranger = {**weights, "extra.weight": torch.zeros(1)}
    with pytest.raises(RuntimeError, match=r"extra\.weight"):
        load_initial_weights(build_model(config), stranger)
    with pytest.raises(RuntimeError):  # an unfused network takes exactly the file's tensors
        load_initial_weights(build_model(load_config("msaic")), lacking)
