"""PyTorch side of the pipeline, in two layers: `msaic_model.model` (MSAIC-Net and the baselines,
their configs, input preparation, inference: how a window is scored) and `msaic_model.training`
(fitting, splits, metrics, evaluation, calibration, the registry, the model card, promotion),
which builds on the model and never the other way round. Each re-exports its public names.

Importing this package imports nothing else, so that `msaic_model.training.splits` (say) costs no
torch import in a process that does not need it.
"""

from __future__ import annotations
