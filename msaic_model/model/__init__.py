"""The model: MSAIC-Net and the baselines, their configs, input preparation and inference.

Modules: `config` (+ `configs/*.json`), `blocks`, `net`, `baselines`, `feature_baselines` (logistic
and gradient-boosting models on the feature store), `data` (input preparation, shared with
training, and the waveform stream), `inference` (how a window is scored, in one place).
"""

from __future__ import annotations

from msaic_model._lazy import lazy_exports

# public name → the module that holds it; imported on first use (torch takes seconds to import)
_EXPORTS = {
    "ModelConfig": "msaic_model.model.config",
    "available_configs": "msaic_model.model.config",
    "load_config": "msaic_model.model.config",
    "with_overrides": "msaic_model.model.config",
    "MsaicNet": "msaic_model.model.net",
    "build_model": "msaic_model.model.net",
    "WaveformStream": "msaic_model.model.data",
    "prepare": "msaic_model.model.data",
    "WindowScores": "msaic_model.model.inference",
    "for_cpu_scoring": "msaic_model.model.inference",
    "predict_proba": "msaic_model.model.inference",
    "predict_store": "msaic_model.model.inference",
    "resolve_device": "msaic_model.model.inference",
    "window_probability": "msaic_model.model.inference",
}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
