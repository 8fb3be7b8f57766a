"""Gradient boosting on the feature store stacked on a fused MSAIC-Net (`fusion.stack = "gbm"`).

The trees are the `gbm` baseline (`feature_baselines.TreeEnsemble`, the same hyper-parameters),
fitted on the training set after the network has trained, and kept as buffers of the network
(`features.trees.*` in its state dict), so that a stacked model is saved, checked, loaded and
scored as one network. Until they are fitted the module is empty and the network scores alone
(training and early stopping see the network alone); once fitted, a crop's log-odds is the mean of
the network's and the trees' (equal weights, nothing fitted on top). The trees read the feature
store's measurements, the first columns of the fused network's second input; they have no
gradient and are evaluated by the baseline's own traversal.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from msaic_model.model.feature_baselines import TreeEnsemble

# dtype of each TreeEnsemble array as a buffer (empty until fitted)
_DTYPES = {
    "used": torch.int64,
    "feature": torch.int64,
    "threshold": torch.float64,
    "missing_left": torch.bool,
    "left": torch.int64,
    "right": torch.int64,
    "is_leaf": torch.bool,
    "value": torch.float64,
    "roots": torch.int64,
    "baseline": torch.float64,
}
assert set(_DTYPES) == set(TreeEnsemble.array_fields())


class StackedTrees(nn.Module):
    """A `TreeEnsemble` as buffers: `fit` state via `set_trees`, log-odds of features (n, F)."""

    def __init__(self) -> None:
        super().__init__()
        for name, dtype in _DTYPES.items():
            self.register_buffer(name, torch.zeros(0, dtype=dtype))

    @property
    def fitted(self) -> bool:
        return self.get_buffer("roots").numel() > 0

    def set_trees(self, trees: TreeEnsemble) -> None:
        """Keep a fitted ensemble (its arrays copied into the buffers, on the module's device)."""
        device = self.get_buffer("roots").device
        for name, dtype in _DTYPES.items():
            array = np.ascontiguousarray(getattr(trees, name))
            setattr(self, name, torch.from_numpy(array).to(device=device, dtype=dtype))

    def trees(self) -> TreeEnsemble:
        return TreeEnsemble.from_arrays({k: self.get_buffer(k).cpu().numpy() for k in _DTYPES})

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Log-odds (n,) of features (n, F) whose first columns are the trees' feature columns: the
        baseline's own traversal in float64 on the given values, returned in their dtype (float32
        from the network's callers, where it is averaged with the network's log-odds)."""
        logit = self.trees().logit(features.detach().double().cpu().numpy())
        return torch.from_numpy(np.asarray(logit)).to(device=features.device, dtype=features.dtype)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[no-untyped-def]
        """Buffers take the sizes of the loaded arrays (fitted trees have any number of nodes)."""
        for name, dtype in _DTYPES.items():
            if prefix + name in state_dict:
                device = self.get_buffer(name).device
                setattr(self, name, torch.empty(state_dict[prefix + name].shape, dtype=dtype, device=device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
