"""Training: runs, losses, metrics, calibration, evaluation, registry, model card, promotion."""

from __future__ import annotations
