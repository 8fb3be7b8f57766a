"""Pretraining a network on a large synthetic archive, to fine-tune on small real data.

`pretrain` trains a model config (the packaged MSAIC-Net, with its classification and imbalance-
aware supervised contrastive loss) on the usable labelled records of a store, typically one
ingested from `msaic synth`: a stratified patient split's `train` part, early stopping on its
`val` part, exactly the loop of `msaic_model.training.fit.fit`. `save_weights` writes the weights as
safetensors, which a config then names in `train.init_weights` so that `fit` starts from them
instead of a random initialization (fine-tuning: the same loop, every weight trainable). The
synthetic archive builds MI from textbook patterns of the dipole (see README, *The synthetic
archive*); what transfers to real recordings is measured by `bench/real.py`, not assumed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import safetensors.torch

from msaic_model.model.config import ModelConfig
from msaic_model.training.eligible import eligible_records
from msaic_model.training.fit import FitResult, fit
from msaic_model.training.splits import make_split


def pretrain(
    store: Path, config: ModelConfig, seed: int = 0, log: Callable[[str], None] | None = None
) -> FitResult:
    """`config`'s network trained on the usable labelled records of `store` (a patient split drawn
    with `seed`: train, early stopping on val; the test part is left unused)."""
    split = make_split(eligible_records(store).records, "patient", seed)
    return fit(store, split.part("train"), split.part("val"), config, log)


def save_weights(result: FitResult, path: Path) -> Path:
    """The fitted weights as safetensors (loadable without executing code), for `train.init_weights`."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in result.model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    safetensors.torch.save_file(
        tensors, path, metadata={"pretrained_on": "synthetic", "config": result.config.name}
    )
    return path
