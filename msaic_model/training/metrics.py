"""Binary classification metrics with stratified bootstrap intervals, vectorized.

Every metric is computed from per-record weights: the point estimate uses weight 1 for every
record, bootstrap replicate b uses how many times each record was drawn (a stratified bootstrap:
positives and negatives are resampled separately, so each replicate keeps the sample's class
counts). One (B × n) weight matrix therefore gives all replicates of all metrics at once.

Definitions (a record is called positive when its probability >= threshold):
- AUROC: P(score of a positive > score of a negative) + ½ P(tie) (the Mann–Whitney form).
- AUPRC: average precision, Σ_k (R_k − R_{k−1}) P_k over the distinct scores, high to low
  (scikit-learn's `average_precision_score`).
- sensitivity TP/P, specificity TN/N, F1 2TP/(2TP+FP+FN), Brier mean (p − y)².
- ECE: Σ_bins |Σ_{i∈bin} (y_i − p_i)| / n over equal-width bins of p (a value on an inner edge
  belongs to the lower bin, as in `sklearn.calibration.calibration_curve`).
A metric that a subset cannot define (AUROC with one class, sensitivity without positives, ...)
is None, not an error.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

METRICS: tuple[str, ...] = ("auroc", "auprc", "sensitivity", "specificity", "f1", "brier", "ece")
_CHUNK_CELLS = 4_000_000  # replicates × records handled at once (bounds memory on large sets)


@dataclass(frozen=True)
class MetricConfig:
    bootstrap_resamples: int
    confidence: float
    ece_bins: int


@dataclass(frozen=True)
class MetricResult:
    """Point estimates and bootstrap replicates (NaN where undefined) of every metric."""

    n: int
    positives: int
    point: dict[str, float]
    replicates: dict[str, np.ndarray]
    confidence: float

    def interval(self, name: str) -> tuple[float | None, float | None]:
        return _percentiles(self.replicates[name], self.confidence)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready: {n, positives, <metric>: {value, low, high}} with None where undefined."""
        out: dict[str, object] = {"n": self.n, "positives": self.positives}
        for name in METRICS:
            low, high = self.interval(name)
            out[name] = {"value": _finite(self.point[name]), "low": low, "high": high}
        return out


def compute_metrics(
    y: np.ndarray, p: np.ndarray, threshold: float, config: MetricConfig, seed: int = 0
) -> MetricResult:
    """All metrics of probabilities `p` against labels `y` (0/1), with bootstrap replicates."""
    y = np.asarray(y, dtype=np.int64)
    p = np.asarray(p, dtype=np.float64)
    if y.shape != p.shape or y.ndim != 1:
        raise ValueError(f"labels {y.shape} and probabilities {p.shape} must be two equal 1-D arrays")
    if not np.isin(y, (0, 1)).all() or np.isnan(p).any():
        raise ValueError("labels must be 0/1 and probabilities must not be NaN")
    point = {
        k: float(v[0]) for k, v in weighted_metrics(y, p, threshold, np.ones((1, y.size)), config).items()
    }
    rng = np.random.default_rng(seed)
    parts = [
        weighted_metrics(y, p, threshold, w, config)
        for w in _bootstrap_weights(y, config.bootstrap_resamples, rng)
    ]
    replicates = {k: np.concatenate([part[k] for part in parts]) for k in METRICS}
    return MetricResult(int(y.size), int(y.sum()), point, replicates, config.confidence)


def difference(a: MetricResult, b: MetricResult) -> dict[str, dict[str, float | None]]:
    """a − b per metric, with the interval of the replicate differences: independent bootstraps
    of two disjoint sets (held-out sites minus in-distribution test), or a paired bootstrap when
    both were computed on the same records with the same seed (two models' scores of the same
    patients: `compute_metrics` then draws the same resamples for both)."""
    out = {}
    for name in METRICS:
        low, high = _percentiles(a.replicates[name] - b.replicates[name], a.confidence)
        out[name] = {"value": _finite(a.point[name] - b.point[name]), "low": low, "high": high}
    return out


def mean_of(results: list[MetricResult]) -> MetricResult:
    """The mean of several results on the same records with the same bootstrap draws (the same
    labels in the same order and the same seed: repeated cross-validations of one model, each
    record scored once per repeat), point by point and replicate by replicate, so that its
    interval is the patient-sampling interval of the mean over repeats."""
    first = results[0]
    if any((r.n, r.positives, r.confidence) != (first.n, first.positives, first.confidence) for r in results):
        raise ValueError("results to average must come from the same records and confidence")
    point = {k: float(np.mean([r.point[k] for r in results])) for k in METRICS}
    replicates = {k: np.mean([r.replicates[k] for r in results], axis=0) for k in METRICS}
    return MetricResult(first.n, first.positives, point, replicates, first.confidence)


def _bootstrap_weights(y: np.ndarray, resamples: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Stratified bootstrap counts, in chunks of replicates: (b, n) arrays of draws per record."""
    if y.size == 0:
        yield np.zeros((resamples, 0))
        return
    classes = [np.flatnonzero(y == c) for c in (0, 1)]
    step = max(1, _CHUNK_CELLS // y.size)
    for start in range(0, resamples, step):
        b = min(step, resamples - start)
        w = np.zeros((b, y.size))
        for idx in classes:
            if idx.size:
                w[:, idx] = rng.multinomial(idx.size, np.full(idx.size, 1.0 / idx.size), size=b)
        yield w


def weighted_metrics(
    y: np.ndarray, p: np.ndarray, threshold: float, w: np.ndarray, config: MetricConfig
) -> dict[str, np.ndarray]:
    """Every metric for each row of the weight matrix `w` (b × n); NaN where undefined."""
    pos, neg = w * y, w * (1 - y)
    n_pos, n_neg, total = pos.sum(1), neg.sum(1), w.sum(1)
    values, inverse = np.unique(p, return_inverse=True)  # ascending distinct scores
    pos_u, neg_u = _per_value(pos, inverse, values.size), _per_value(neg, inverse, values.size)
    neg_below = np.cumsum(neg_u, axis=1) - neg_u
    auroc = _ratio((pos_u * (neg_below + 0.5 * neg_u)).sum(1), n_pos * n_neg)
    tp_cum, fp_cum = np.cumsum(pos_u[:, ::-1], axis=1), np.cumsum(neg_u[:, ::-1], axis=1)
    precision = _ratio(tp_cum, tp_cum + fp_cum, empty=0.0)
    recall_step = np.diff(tp_cum, axis=1, prepend=0.0)
    auprc = _ratio((recall_step * precision).sum(1), n_pos)
    called = p >= threshold
    tp, fp = (pos * called).sum(1), (neg * called).sum(1)
    fn, tn = n_pos - tp, n_neg - fp
    gap = _per_value(w * (y - p), calibration_bin(p, config.ece_bins), config.ece_bins)
    return {
        "auroc": auroc,
        "auprc": auprc,
        "sensitivity": _ratio(tp, n_pos),
        "specificity": _ratio(tn, n_neg),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "brier": _ratio((w * (p - y) ** 2).sum(1), total),
        "ece": _ratio(np.abs(gap).sum(1), total),
    }


def calibration_bin(p: np.ndarray, bins: int) -> np.ndarray:
    """The equal-width bin (0 … bins − 1) of each probability, as ECE counts them: a value on an
    inner edge belongs to the lower bin."""
    return np.searchsorted(np.linspace(0.0, 1.0, bins + 1)[1:-1], p, side="left")


def _per_value(w: np.ndarray, index: np.ndarray, size: int) -> np.ndarray:
    """Sum the columns of `w` (b × n) into `size` groups given by `index` (n,): a (b × size) array."""
    rows = w.shape[0]
    flat = (np.arange(rows)[:, None] * size + index[None, :]).ravel()
    return np.bincount(flat, weights=w.ravel(), minlength=rows * size).reshape(rows, size)


def _ratio(num: np.ndarray, den: np.ndarray, empty: float = np.nan) -> np.ndarray:
    num, den = np.broadcast_arrays(np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64))
    return np.divide(num, den, out=np.full(num.shape, empty), where=den > 0)


def _percentiles(values: np.ndarray, confidence: float) -> tuple[float | None, float | None]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return None, None
    tail = (1.0 - confidence) / 2 * 100
    low, high = np.percentile(finite, [tail, 100 - tail])
    return float(low), float(high)


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None
