"""The model registry: `STORE/models/<model_id>/`, and `load_model`, the one way to get a model back.

A registered directory holds only data, nothing that executes on load:
- `weights.safetensors`: the network's state dict, or a feature baseline's arrays;
- `config.json`: kind (`net`, `logreg`, `gbm`), the model config, the split, the feature columns;
- `thresholds.json`: the decision threshold and how it was chosen, the calibration of the
  log-odds into a risk with its bands and how it was chosen (validation only, both);
- `metrics.json`: evaluation with intervals, training history, permutation importance;
- `snapshot.json`: what data trained it (hash and count of the record ids of each part, the
  store part files read); `split.parquet`: the record → part assignment itself;
- `qc_profile.json`: the QC profile of the store it was trained on (when the store keeps one),
  which `msaic score` applies unless given another;
- `model_card.html`.
The directory is published whole (`tasks.store.model_files.write_model_dir`: staged and renamed
in a local store, claimed and then written config last on S3), so a reader never sees a
half-registered model. A store, and a model directory, may be a path or an s3:// location.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import safetensors.numpy
import safetensors.torch
import torch
from pydantic import ValidationError
from scipy.special import expit

from data_contracts.feature_columns import FEATURE_COLUMNS
from data_contracts.schemas import FS
from msaic_model.model.config import ModelConfig
from msaic_model.model.feature_baselines import (
    FeatureModel,
    LogisticModel,
    TreeEnsemble,
    feature_model_from_arrays,
)
from msaic_model.model.inference import CropOcclusion, WindowScores, predict_proba, resolve_device
from msaic_model.model.net import TREES, build_model
from tasks.quality.profile_file import PROFILE_FILE, ProfileId, recorded_profile
from tasks.store.location import Location, location
from tasks.store.model_files import (
    CONFIG,
    METRICS,
    MODEL_CARD,
    MODELS,
    NET,
    SNAPSHOT,
    THRESHOLDS,
    WEIGHTS,
    Calibration,
    ModelError,
    ModelFiles,
    read_model_files,
    write_model_dir,
)

if TYPE_CHECKING:
    from tasks.quality.gate import QualityResult

SPLIT_FILE = "split.parquet"
Demographics = Sequence[tuple[str | None, float | None]]  # (sex, age) per window
FEATURE_CLASSES: dict[str, type] = {"logreg": LogisticModel, "gbm": TreeEnsemble}
SNAPSHOT_TABLES: tuple[str, ...] = ("records", "waveforms", "quality", "features", "adjudications")


def new_model_id(name: str, split: str, fold: int | None = None) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    fold_tag = f"-fold{fold}" if fold is not None else ""
    return f"{name}-{split}{fold_tag}-{stamp}-{uuid.uuid4().hex[:6]}"


def model_dir(store: Location, model_id: str) -> Location:
    return location(store) / MODELS / model_id


def sha256_of(values: list[str]) -> str:
    return hashlib.sha256("\n".join(values).encode()).hexdigest()


def data_snapshot(store: Location, assignment: pd.DataFrame) -> dict[str, Any]:
    """Identifiers of the data a model saw: per part and fold, the count and hash of its sorted
    record ids; per table, the store part files present (their relative paths and hash); the QC
    profile its quality rows were checked with (version and hash; None for a store checked
    before the profile was kept)."""
    parts = {
        f"{part}/fold{fold}": {"records": len(g), "record_ids_sha256": sha256_of(sorted(g["record_id"]))}
        for (fold, part), g in assignment.groupby(["fold", "part"], sort=True)
    }
    files = {}
    store = location(store)
    for table in SNAPSHOT_TABLES:
        found = sorted(str(p.relative_to(store)) for p in (store / table).rglob("*.parquet"))  # type: ignore[arg-type]
        if found:
            files[table] = {"files": len(found), "files_sha256": sha256_of(found), "paths": found}
    profile = recorded_profile(store)
    qc = asdict(ProfileId.of(profile.read_bytes())) if profile else None
    return {"parts": parts, "store_files": files, "qc_profile": qc}


@dataclass(frozen=True)
class Registration:
    """Everything `register` writes (weights as numpy arrays or torch tensors)."""

    model_id: str
    config: dict[str, Any]
    weights: dict[str, Any]
    thresholds: dict[str, Any]
    metrics: dict[str, Any]
    snapshot: dict[str, Any]
    split: pd.DataFrame
    card_html: str


def register(store: Location, reg: Registration) -> Location:
    """Write the model directory whole (`write_model_dir`); refuses an existing id."""
    metadata = {"model_id": reg.model_id}
    if reg.config["kind"] == NET:
        tensors = {k: v.detach().cpu().contiguous() for k, v in reg.weights.items()}
        weights = safetensors.torch.save(tensors, metadata=metadata)
    else:
        weights = safetensors.numpy.save(reg.weights, metadata=metadata)
    files = {WEIGHTS: weights}
    for name, payload in (
        (CONFIG, reg.config),
        (THRESHOLDS, reg.thresholds),
        (METRICS, reg.metrics),
        (SNAPSHOT, reg.snapshot),
    ):
        files[name] = json.dumps(payload, indent=2, default=_json_default).encode()
    split = io.BytesIO()
    reg.split.to_parquet(split, index=False)
    files[SPLIT_FILE] = split.getvalue()
    profile = recorded_profile(store)
    if profile is not None:  # the QC profile of the store it was trained on: what scoring applies
        files[PROFILE_FILE] = profile.read_bytes()
    files[MODEL_CARD] = reg.card_html.encode("utf-8")
    return write_model_dir(store, reg.model_id, files)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


@dataclass
class LoadedModel:
    """A model ready to score: `predict_proba(signals)` for (n, 12, 5000) float32 mV at 500 Hz
    (NaN allowed) returns (n,) MI probabilities, batching internally; `threshold` is the saved
    decision threshold (probability >= threshold is positive); `calibration` maps log-odds to a
    risk (None for a model registered before calibration). A feature baseline first measures its
    features from the windows (quality gate + median-beat measurement, tens of ms a record)."""

    model_id: str
    threshold: float | None
    config: dict[str, Any]
    net: torch.nn.Module | None = None
    feature_model: FeatureModel | None = None
    calibration: Calibration | None = None

    @property
    def kind(self) -> str:
        return str(self.config["kind"])

    @property
    def model_config(self) -> ModelConfig:
        return ModelConfig.model_validate(self.config["model"])

    @property
    def feature_columns(self) -> list[str]:
        return list(self.config["feature_columns"])

    def predict_proba(self, signals: np.ndarray, demographics: Demographics | None = None) -> np.ndarray:
        """`demographics`: (sex, age) per window, which a fused network's criteria read."""
        signals = np.asarray(signals, dtype=np.float32)
        if self.net is not None:
            features = self.net_features(signals, demographics)
            return predict_proba(self.net, self.model_config, signals, features=features).astype(np.float64)
        return self.predict_features(self.measured_features(signals))

    def net_features(
        self,
        signals: np.ndarray,
        demographics: Demographics | None = None,
        quality: QualityResult | None = None,
    ) -> np.ndarray | None:
        """A fused network's second input measured on stored windows as the features stage
        measures them, with each window's (sex, age) for the criteria whose cut-points depend on
        them (None for any other network); `quality`: the gate's result on these windows, when the
        caller has it (`extract_features`)."""
        columns = self.model_config.feature_columns
        if not columns:
            return None
        return extract_features(signals, columns, demographics, quality).to_numpy(np.float64)

    def measured_features(self, signals: np.ndarray, quality: QualityResult | None = None) -> np.ndarray:
        """Feature baselines: the model's feature columns measured on stored windows (NaN where
        not measurable)."""
        return extract_features(signals, quality=quality)[self.feature_columns].to_numpy(np.float64)

    def occlusion(
        self,
        signals: np.ndarray,
        demographics: Demographics | None = None,
        quality: QualityResult | None = None,
    ) -> CropOcclusion | SignalOcclusion:
        """The windows' probabilities and what score explanations mask leads on: a network's
        strongest crop of each window (`CropOcclusion`; a fused network's features stay whole), a
        feature baseline's whole window (`SignalOcclusion`). `quality`: the gate's result on these
        windows, which scoring has already assessed (the features' usable leads come from it
        instead of a second pass of the gate)."""
        signals = np.asarray(signals, dtype=np.float32)
        if self.net is not None:
            features = self.net_features(signals, demographics, quality)
            return CropOcclusion.of(self.net, self.model_config, signals, features)
        if quality is None:
            from tasks.quality.gate import assess, load_profile

            quality = assess(signals, load_profile())  # the gate extract_features would run
        features = self.measured_features(signals, quality)
        scores = self.feature_scores(features)
        return SignalOcclusion(
            self,
            signals,
            scores.probability,
            scores.logit,
            scores.logit,
            np.isnan(features).all(axis=1),
            quality,
        )

    def feature_scores(self, x: np.ndarray) -> WindowScores:
        """Feature baselines: probabilities and log-odds from a (n, feature_columns) matrix (NaN
        allowed), both float64."""
        if self.feature_model is None:
            raise ValueError(f"model {self.model_id} is a network; it scores signals, not features")
        logit = np.asarray(self.feature_model.logit(x), dtype=np.float64)
        return WindowScores(expit(logit), logit)

    def predict_features(self, x: np.ndarray) -> np.ndarray:
        """Feature baselines: probabilities from a (n, feature_columns) matrix (NaN allowed)."""
        return self.feature_scores(x).probability


@dataclass
class SignalOcclusion:
    """Occlusion for a feature baseline: removed leads become missing (NaN) in the stored windows,
    whose features are then measured again; log-odds (the model's own, unbounded) as `CropOcclusion`."""

    model: LoadedModel
    signals: np.ndarray
    probability: np.ndarray  # (n,) probability of each window
    logit: np.ndarray  # (n,) its log-odds
    base_logit: np.ndarray  # (n,) the same: occlusion looks at the whole window
    no_input: np.ndarray  # (n,) no feature could be measured (no median beat)
    quality: QualityResult  # the gate's result on `signals`, whose usable leads the features follow

    def masked_logit(self, rows: np.ndarray, masks: np.ndarray) -> np.ndarray:
        """Log-odds of the windows `rows` with the leads where `masks` (m, 12) is True removed:
        measured again with those leads missing and every other lead as the gate judged it (the
        gate is not run again: four leads gone would reject the window, and every removal would
        read as all features missing)."""
        masks = np.asarray(masks, dtype=bool)
        occluded = self.signals[rows]
        occluded[masks] = np.nan
        quality = self.quality.without_leads(rows, masks)
        return self.model.feature_scores(self.model.measured_features(occluded, quality)).logit


def extract_features(
    signals: np.ndarray,
    columns: list[str] | None = None,
    demographics: Demographics | None = None,
    quality: QualityResult | None = None,
) -> pd.DataFrame:
    """The feature-store columns (default: the numeric `FEATURE_COLUMNS`; criteria come as 0/1)
    of raw windows, measured as the features stage measures them: the quality gate says which
    leads are usable (and rejects records, whose features stay NaN), then `feature_row` with each
    window's (sex, age) when given (the ST-elevation criteria's cut-points depend on them; unknown
    otherwise); values rounded to float32 as the store keeps them. `quality`: the gate's result
    on these very windows when the caller has it (scoring: its own gate, under its profile), else
    the packaged profile's gate is run here."""
    from tasks.features.measure import criteria_config
    from tasks.features.run import RecordMeta, feature_row
    from tasks.quality.gate import assess, load_profile

    if quality is None:
        quality = assess(signals, load_profile())
    elif len(quality.verdict) != len(signals):
        raise ValueError(f"quality of {len(quality.verdict)} windows given for {len(signals)}")
    unusable = [quality.masks[f] for f in criteria_config()["signal"]["unusable_flags"] if f in quality.masks]
    usable = ~np.any(unusable, axis=0) if unusable else np.ones(signals.shape[:2], bool)
    people = demographics if demographics is not None else [(None, None)] * len(signals)
    rows = [
        feature_row(signal, RecordMeta(str(i), "", verdict, tuple(lead_ok.tolist()), sex, age))
        for i, (signal, verdict, lead_ok, (sex, age)) in enumerate(
            zip(signals, quality.verdict, usable, people, strict=True)
        )
    ]
    frame = pd.DataFrame(rows).reindex(columns=columns or FEATURE_COLUMNS)
    return frame.apply(pd.to_numeric, errors="coerce").astype(np.float32)


# Bounds of what `load_model` accepts. No trained parameter comes near WEIGHT_LIMIT (batch-norm
# variances of mV-scale inputs are a few units): larger ones are tampering or a training that blew
# up, and overflow float32 within a few layers. NET_INT_LIMIT bounds every integer of a network
# config (widths, kernels, depths), so that a tampered config cannot make the build itself huge.
WEIGHT_LIMIT = 1e6
NET_INT_LIMIT = 4096
EVAL_BATCH_LIMIT = 4096
# Feature-baseline arrays in feature units (imputation medians, scaler means and scales, split
# thresholds) may exceed WEIGHT_LIMIT; a split threshold may even be +inf (every value goes left).
FEATURE_UNIT_ARRAYS = frozenset({"median", "mean", "scale", "threshold"})


def load_model(model_dir: Location, device: str = "auto") -> LoadedModel:
    """A registered model from its directory, without executing anything stored in it (a network
    in eval mode, exactly as evaluated; score workers rewrite it, `inference.for_cpu_scoring`).
    Everything it relies on is checked first and refused with a one-line `ModelError`: the files
    and threshold (`read_model_files`), weights without NaN and within WEIGHT_LIMIT, a network
    config within bounds whose parameter shapes match the weights, and feature-baseline arrays
    consistent with their feature columns. The calibration comes checked with the files."""
    files = read_model_files(model_dir)
    arrays = _read_weights(location(model_dir) / WEIGHTS)
    _check_values(files.model_id, arrays)
    if files.kind == NET:
        config = _net_config(files)
        _check_shapes(files.model_id, config, arrays)
        net = build_model(config)
        net.load_state_dict({k: torch.from_numpy(v) for k, v in arrays.items()})
        net = net.to(resolve_device(device)).eval()
        return LoadedModel(
            files.model_id, files.threshold, files.config, net=net, calibration=files.calibration
        )
    _check_feature_arrays(files, arrays)
    model = feature_model_from_arrays(files.kind, arrays)
    return LoadedModel(
        files.model_id, files.threshold, files.config, feature_model=model, calibration=files.calibration
    )


def _read_weights(path: Location) -> dict[str, np.ndarray]:
    try:
        return safetensors.numpy.load(path.read_bytes())
    except Exception as exc:  # safetensors raises its own error types for a damaged file
        raise ModelError(f"{path} is unreadable: {exc}") from None


def _check_values(model_id: str, arrays: dict[str, np.ndarray]) -> None:
    """No NaN anywhere; infinities only in split thresholds; magnitudes within WEIGHT_LIMIT except
    in arrays of feature units."""
    for name, a in arrays.items():
        if not np.issubdtype(a.dtype, np.floating):
            continue
        unit = name.removeprefix(TREES)  # stacked trees: the baseline's arrays in feature units
        finite = np.isfinite(a) | (np.isinf(a) & (unit == "threshold"))
        if not finite.all():
            raise ModelError(
                f"model {model_id}: weight {name} holds {int((~finite).sum())} NaN or infinite values"
            )
        largest = float(np.abs(a).max()) if a.size else 0.0
        if unit not in FEATURE_UNIT_ARRAYS and largest > WEIGHT_LIMIT:
            raise ModelError(
                f"model {model_id}: weight {name} reaches {largest:.3g} (at most {WEIGHT_LIMIT:g})"
            )


def _net_config(files: ModelFiles) -> ModelConfig:
    """The network's config, validated and within the bounds that scoring can afford."""
    try:
        config = ModelConfig.model_validate(files.config.get("model"))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ModelError(f"model {files.model_id}: config {where}: {first['msg']}") from None
    largest = _largest_int(files.config["model"]["net"])
    if largest > NET_INT_LIMIT:
        raise ModelError(f"model {files.model_id}: network config holds {largest} (at most {NET_INT_LIMIT})")
    if config.data.fs > FS:
        raise ModelError(f"model {files.model_id}: data.fs {config.data.fs} Hz is above the stored {FS} Hz")
    if config.train.eval_batch_size > EVAL_BATCH_LIMIT:
        raise ModelError(
            f"model {files.model_id}: train.eval_batch_size {config.train.eval_batch_size} "
            f"(at most {EVAL_BATCH_LIMIT})"
        )
    return config


def _largest_int(node: Any) -> int:
    """The largest integer anywhere in a JSON value (0 when none)."""
    if isinstance(node, dict):
        return max(map(_largest_int, node.values()), default=0)
    if isinstance(node, list):
        return max(map(_largest_int, node), default=0)
    return node if isinstance(node, int) and not isinstance(node, bool) else 0


def _check_shapes(model_id: str, config: ModelConfig, arrays: dict[str, np.ndarray]) -> None:
    """The weights hold exactly the parameters the config builds, with the same shapes (built on
    the meta device: nothing is allocated until they match); stacked trees, whose size the fit
    decides, hold consistent node arrays over the network's measurement columns."""
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in build_model(config).state_dict().items()}
    if arrays.keys() != expected.keys():
        odd = sorted(arrays.keys() ^ expected.keys())
        raise ModelError(
            f"model {model_id}: weights and config differ in {len(odd)} parameters ({odd[0]}, ...)"
        )
    trees = {k.removeprefix(TREES): a for k, a in arrays.items() if k.startswith(TREES)}
    if trees:
        if all(a.size == 0 for a in trees.values()):  # never fitted: it would score as the network alone
            raise ModelError(
                f"model {model_id}: its config stacks {config.stack}, but the weights hold no trees"
            )
        _check_tree_arrays(model_id, trees, len(FEATURE_COLUMNS))
    for name, shape in expected.items():
        if name.startswith(TREES):
            continue
        if arrays[name].shape != shape:
            raise ModelError(
                f"model {model_id}: weight {name} has shape {arrays[name].shape}, the config builds {shape}"
            )


def _check_feature_arrays(files: ModelFiles, arrays: dict[str, np.ndarray]) -> None:
    """A feature baseline's arrays index only what exists: `used` columns among the model's
    feature columns, per-column arrays as long as `used`, and for trees, consistent nodes
    (`_check_tree_arrays`)."""
    model_id, n_columns = files.model_id, len(files.config.get("feature_columns") or [])
    if files.kind == "gbm":
        _check_tree_arrays(model_id, arrays, n_columns)
        return
    used = _checked_used(model_id, files.kind, arrays, n_columns)
    per_column = ("median", "mean", "scale", "coef")
    if any(arrays[f].size != used.size for f in per_column) or arrays["intercept"].size != 1:
        raise ModelError(f"model {model_id}: logreg arrays do not match its {used.size} columns")
    if not (arrays["scale"] > 0).all():
        raise ModelError(f"model {model_id}: logreg scale is not positive")


def _checked_used(model_id: str, kind: str, arrays: dict[str, np.ndarray], n_columns: int) -> np.ndarray:
    """Every array of a feature model of `kind` present and 1-d, and its `used` columns a set of
    indices among `n_columns`; returns `used`."""
    fields = [f.name for f in dataclasses.fields(FEATURE_CLASSES[kind]) if f.name != "kind"]
    missing = [f for f in fields if f not in arrays or arrays[f].ndim != 1]
    if missing:
        raise ModelError(f"model {model_id}: {kind} weights lack a 1-d array {missing[0]}")
    used = arrays["used"]
    if not _indices(used, n_columns) or np.unique(used).size != used.size:
        raise ModelError(f"model {model_id}: `used` is not a set of its {n_columns} feature columns")
    return used


def _check_tree_arrays(model_id: str, arrays: dict[str, np.ndarray], n_columns: int) -> None:
    """Gradient-boosting arrays (a `gbm` baseline's, or a network's stacked trees) over `n_columns`
    feature columns: nodes whose children come after them (so that every path ends in a leaf) and
    whose indices stay in range."""
    used = _checked_used(model_id, "gbm", arrays, n_columns)
    nodes = arrays["feature"].size
    per_node = ("threshold", "missing_left", "left", "right", "is_leaf", "value")
    internal = np.flatnonzero(arrays["is_leaf"] == 0) if arrays["is_leaf"].size == nodes else np.array([])
    ok = (
        all(arrays[f].size == nodes for f in per_node)
        and arrays["baseline"].size == 1
        and _indices(arrays["feature"], used.size)
        and all(_indices(arrays[f], nodes) for f in ("left", "right", "roots"))
        and (arrays["left"][internal] > internal).all()
        and (arrays["right"][internal] > internal).all()
    )
    if not ok:
        raise ModelError(f"model {model_id}: gbm node arrays are inconsistent (sizes, indices or cycles)")


def _indices(a: np.ndarray, n: int) -> bool:
    """Whether an array holds integers that index a length-n axis."""
    return bool(np.issubdtype(a.dtype, np.integer) and ((a >= 0) & (a < n)).all())
