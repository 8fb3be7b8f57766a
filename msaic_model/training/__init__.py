"""Training: fitting, losses, splits, metrics, evaluation, calibration, importance, the registry,
the model card and promotion.

Modules: `eligible` (the windows a training may use), `splits`, `fit` (the training loop),
`distributed` (its data-parallel form under torchrun), `losses`,
`metrics`, `evaluate`, `calibration`, `importance`, `run` (one fold: fit, evaluate, register),
`registry` (model directories: register, load and validate), `model_card`, `promotion`,
`pretrain` (a network trained on a synthetic store, whose weights a config can start from).
"""

from __future__ import annotations

from msaic_model._lazy import lazy_exports

# public name → the module that holds it; imported on first use (torch takes seconds to import).
# Not `fit`: the submodule of that name shadows it once imported.
_EXPORTS = {
    "FitResult": "msaic_model.training.fit",
    "MsaicLoss": "msaic_model.training.losses",
    "imbalance_aware_supcon": "msaic_model.training.losses",
    "lead_groups": "msaic_model.training.importance",
    "permutation_importance": "msaic_model.training.importance",
    "make_split": "msaic_model.training.splits",
    "LoadedModel": "msaic_model.training.registry",
    "load_model": "msaic_model.training.registry",
    "register": "msaic_model.training.registry",
    "gate": "msaic_model.training.promotion",
    "promoted_model": "msaic_model.training.promotion",
}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
