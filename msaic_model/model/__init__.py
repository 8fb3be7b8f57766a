"""The model: MSAIC-Net and baselines, their configs, input preparation and inference."""

from __future__ import annotations
