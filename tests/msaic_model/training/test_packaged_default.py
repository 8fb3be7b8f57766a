"""The packaged MSAIC-Net default: the config that bench/real.py's rule chose on real data
(`packaged_default` of data_contracts/real_benchmark.json) is what `msaic train` trains without
--config, and the pretrained weights a packaged config names ship with the package intact."""

from __future__ import annotations

import hashlib

from data_contracts import load_json
from msaic_model.model.config import WEIGHTS_DIR, available_configs, load_config, weights_provenance
from msaic_model.model.net import build_model
from msaic_model.training.fit import initial_weights
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
    assert [c.name for c in pretrained] == ["msaic_pretrained"]
    for config in pretrained:
        path = WEIGHTS_DIR / config.train.init_weights
        provenance = weights_provenance(config)
        assert hashlib.sha256(path.read_bytes()).hexdigest() == provenance["sha256"]
        build_model(config).load_state_dict(initial_weights(config), strict=True)
        # the same network and training as the config it was pretrained with; only the start differs
        plain = load_config(provenance["config"])
        assert config.model_dump(exclude=start_only) == plain.model_dump(exclude=start_only)
