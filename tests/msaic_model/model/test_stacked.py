"""Gradient boosting stacked on a fused MSAIC-Net (`msaic_stacked`, `fusion.stack = "gbm"`): the
trees held as network buffers score exactly as the `gbm` baseline's own traversal, survive a state
dict round trip whatever their size, leave the network alone until fitted, and once fitted make
the log-odds the mean of the network's and the trees'."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from data_contracts.feature_columns import FEATURE_COLUMNS
from msaic_model.model.config import load_config
from msaic_model.model.feature_baselines import TreeEnsemble, fit_feature_model
from msaic_model.model.net import TREES, build_model
from msaic_model.model.stacked import StackedTrees
from msaic_model.training.fit import load_initial_weights

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def features() -> tuple[np.ndarray, np.ndarray]:
    """Fused-network inputs (measurements, then criteria as 0/1) with scattered NaN, float32 as
    scoring hands them over, and labels that depend on two measurement columns."""
    n_columns = len(load_config("msaic_stacked").feature_columns)
    rng = np.random.default_rng(3)
    x = rng.normal(size=(300, n_columns)).astype(np.float32)
    y = ((x[:, 2] - 0.8 * x[:, 40] + rng.normal(0, 0.7, 300)) > 0.3).astype(int)
    x[rng.random(x.shape) < 0.15] = np.nan
    return x, y


@pytest.fixture(scope="module")
def trees(features: tuple[np.ndarray, np.ndarray]) -> TreeEnsemble:
    """The gbm baseline on the measurement columns, as `stack_trees` fits it."""
    x, y = features
    fitted = fit_feature_model("gbm", x[:, : len(FEATURE_COLUMNS)].astype(np.float64), y, seed=0)
    assert isinstance(fitted, TreeEnsemble) and fitted.feature.size > 100
    return fitted


def test_stacked_trees_score_as_the_baseline(
    features: tuple[np.ndarray, np.ndarray], trees: TreeEnsemble
) -> None:
    x, _ = features
    stacked = StackedTrees()
    assert not stacked.fitted
    stacked.set_trees(trees)
    assert stacked.fitted
    got = stacked(torch.from_numpy(x)).numpy()
    expected = trees.logit(x.astype(np.float64)[:, : len(FEATURE_COLUMNS)])
    assert np.unique(expected).size > 20  # not a constant
    np.testing.assert_array_equal(got, expected.astype(np.float32))

    twin = StackedTrees()  # empty buffers take the saved trees' sizes
    twin.load_state_dict(stacked.state_dict())
    assert twin.fitted and twin.get_buffer("feature").shape == trees.feature.shape
    np.testing.assert_array_equal(twin(torch.from_numpy(x)).numpy(), got)


def test_stacked_network_averages_log_odds_once_fitted(
    features: tuple[np.ndarray, np.ndarray], trees: TreeEnsemble
) -> None:
    x, _ = features
    config = load_config("msaic_stacked")
    torch.manual_seed(0)
    model = build_model(config).eval()
    assert {k for k in model.state_dict() if k.startswith(TREES)} == {
        TREES + name for name in TreeEnsemble.array_fields()
    }
    fused = build_model(load_config("msaic_fused")).eval()  # the same network without trees
    fused.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith(TREES)})
    signals = torch.randn(6, 12, 110)
    f = torch.from_numpy(x[:6])
    with torch.no_grad():
        alone = fused(signals, f).logits
        torch.testing.assert_close(model(signals, f).logits, alone)  # unfitted: the network alone
        model.features.trees.set_trees(trees)
        stacked = model(signals, f).logits
    tree_logit = torch.from_numpy(trees.logit(x[:6].astype(np.float64)[:, : len(FEATURE_COLUMNS)])).float()
    torch.testing.assert_close(stacked, (alone + tree_logit) / 2)
    assert not torch.allclose(stacked, alone)


def test_trees_are_never_started_from_a_file(trees: TreeEnsemble) -> None:
    """`train.init_weights` of a stacked network (trees and all) starts every other weight from
    the file and leaves the trees empty: they are fitted after training, on its own rows."""
    donor = build_model(load_config("msaic_stacked"))
    donor.features.trees.set_trees(trees)
    net = build_model(load_config("msaic_stacked"))
    load_initial_weights(net, donor.state_dict())
    assert not net.features.trees.fitted
    for key, value in net.state_dict().items():
        if not key.startswith(TREES):
            torch.testing.assert_close(value, donor.state_dict()[key], rtol=0, atol=0)
