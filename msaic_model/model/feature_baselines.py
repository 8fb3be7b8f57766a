"""Baselines on the feature store: logistic regression and gradient boosting (scikit-learn's
HistGradientBoosting), fitted with scikit-learn and kept as plain arrays.

A fitted model becomes a set of numeric arrays (`to_arrays`), stored as safetensors, and is
rebuilt from them (`from_arrays`) without unpickling anything (feature columns missing in every
training record are left out; `used` holds the indices of the columns a model reads):
- logistic regression: training medians (imputation), scaler mean and scale, coefficients,
  intercept; p = σ(((x̃ − mean) / scale) · coef + b) with x̃ = x, or the median where x is NaN;
- gradient boosting: every tree's nodes (feature, threshold, NaN direction, children, leaf value)
  and the baseline; the raw score is baseline + Σ_trees leaf value, p = σ(raw). Traversal follows
  scikit-learn's predictor (x <= threshold goes left, NaN goes where the tree learned).
Hyper-parameters come from the versioned `data_contracts/feature_models.json`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
from scipy.special import expit

from data_contracts import load_json
from tasks.store.model_files import FEATURE_MODELS


def load_feature_model_config() -> dict[str, Any]:
    return load_json("feature_models.json")


class FeatureModel:
    """What both baselines share: the log-odds of a (n, feature columns) matrix (NaN allowed) from
    the model's own arrays, its probabilities, and the arrays themselves (its dataclass fields
    but `kind`), from which `from_arrays` rebuilds it."""

    kind: str

    def logit(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return expit(self.logit(x))

    @classmethod
    def array_fields(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls) if f.name != "kind")  # the subclasses are dataclasses

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {k: getattr(self, k) for k in self.array_fields()}


@dataclass(frozen=True)
class LogisticModel(FeatureModel):
    used: np.ndarray
    median: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: np.ndarray
    kind: str = "logreg"

    def logit(self, x: np.ndarray) -> np.ndarray:
        """Log-odds ((x̃ − mean) / scale) · coef + b of a (n, feature columns) matrix."""
        x = np.asarray(x, dtype=np.float64)[:, self.used]
        filled = np.where(np.isnan(x), self.median, x)
        return ((filled - self.mean) / self.scale) @ self.coef + self.intercept[0]

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> LogisticModel:
        return cls(**{k: arrays[k] for k in cls.array_fields()})


@dataclass(frozen=True)
class TreeEnsemble(FeatureModel):
    """All trees' nodes in flat arrays (children as global node indices; `roots` per tree)."""

    used: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    missing_left: np.ndarray
    left: np.ndarray
    right: np.ndarray
    is_leaf: np.ndarray
    value: np.ndarray
    roots: np.ndarray
    baseline: np.ndarray
    kind: str = "gbm"

    def logit(self, x: np.ndarray) -> np.ndarray:
        """The raw score baseline + Σ_trees leaf value of a (n, feature columns) matrix."""
        x = np.asarray(x, dtype=np.float64)[:, self.used]
        node = np.broadcast_to(self.roots, (x.shape[0], self.roots.size)).copy()  # (records, trees)
        rows = np.arange(x.shape[0])[:, None]
        active = ~self.is_leaf[node]
        while active.any():
            value = x[rows, self.feature[node]]
            go_left = np.where(np.isnan(value), self.missing_left[node], value <= self.threshold[node])
            node = np.where(active, np.where(go_left, self.left[node], self.right[node]), node)
            active = ~self.is_leaf[node]
        return self.baseline[0] + self.value[node].sum(axis=1)

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> TreeEnsemble:
        out = {k: arrays[k] for k in cls.array_fields()}
        return cls(**out | {k: out[k].astype(bool) for k in ("missing_left", "is_leaf")})


def _measured(x: np.ndarray) -> np.ndarray:
    """Indices of the columns with at least one value (a column missing everywhere carries nothing)."""
    used = np.flatnonzero(~np.isnan(np.asarray(x, dtype=np.float64)).all(axis=0))
    if used.size == 0:
        raise ValueError("every feature is missing in every training record")
    return used


def fit_logreg(x: np.ndarray, y: np.ndarray, params: dict[str, Any], seed: int = 0) -> LogisticModel:
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    used = _measured(x)
    x = np.asarray(x, dtype=np.float64)[:, used]
    imputer = SimpleImputer(strategy="median").fit(x)
    filled = imputer.transform(x)
    scaler = StandardScaler().fit(filled)
    clf = LogisticRegression(class_weight="balanced", random_state=seed, **params)
    clf.fit(scaler.transform(filled), y)
    return LogisticModel(
        used=used,
        median=imputer.statistics_,
        mean=scaler.mean_,
        scale=scaler.scale_,
        coef=clf.coef_[0].astype(np.float64),
        intercept=clf.intercept_.astype(np.float64),
    )


def fit_gbm(x: np.ndarray, y: np.ndarray, params: dict[str, Any], seed: int = 0) -> TreeEnsemble:
    from sklearn.ensemble import HistGradientBoostingClassifier

    used = _measured(x)
    clf = HistGradientBoostingClassifier(
        class_weight="balanced", early_stopping=False, random_state=seed, **params
    ).fit(np.asarray(x, dtype=np.float64)[:, used], y)
    return export_trees(clf, used)


def export_trees(clf: Any, used: np.ndarray) -> TreeEnsemble:
    """The node arrays of a fitted binary HistGradientBoostingClassifier (numeric features only)."""
    trees = [predictors[0].nodes for predictors in clf._predictors]
    if any(t["is_categorical"].any() for t in trees):
        raise ValueError("categorical splits cannot be exported; the feature store is numeric")
    sizes = np.array([t.size for t in trees])
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    nodes = np.concatenate(trees)
    shift = np.repeat(offsets, sizes)
    return TreeEnsemble(
        used=used,
        feature=nodes["feature_idx"].astype(np.int64),
        threshold=nodes["num_threshold"].astype(np.float64),
        missing_left=nodes["missing_go_to_left"].astype(bool),
        left=nodes["left"].astype(np.int64) + shift,
        right=nodes["right"].astype(np.int64) + shift,
        is_leaf=nodes["is_leaf"].astype(bool),
        value=nodes["value"].astype(np.float64),
        roots=offsets.astype(np.int64),
        baseline=np.asarray(clf._baseline_prediction, dtype=np.float64).ravel(),
    )


_KINDS: dict[str, tuple[Callable[..., FeatureModel], Callable[[dict[str, np.ndarray]], FeatureModel]]] = {
    "logreg": (fit_logreg, LogisticModel.from_arrays),
    "gbm": (fit_gbm, TreeEnsemble.from_arrays),
}


def _kind(kind: str) -> tuple[Callable[..., FeatureModel], Callable[[dict[str, np.ndarray]], FeatureModel]]:
    if kind not in _KINDS:
        raise ValueError(f"unknown feature model {kind!r}; choose one of {', '.join(FEATURE_MODELS)}")
    return _KINDS[kind]


def fit_feature_model(kind: str, x: np.ndarray, y: np.ndarray, seed: int = 0) -> FeatureModel:
    """Fit `logreg` or `gbm` with the versioned hyper-parameters."""
    return _kind(kind)[0](x, y, load_feature_model_config()[kind], seed)


def feature_model_from_arrays(kind: str, arrays: dict[str, np.ndarray]) -> FeatureModel:
    return _kind(kind)[1](arrays)
