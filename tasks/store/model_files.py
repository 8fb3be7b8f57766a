"""The files of a registered model directory (`STORE/models/<model_id>/`) and their reading
without torch: what a process that only checks or names a model needs (the scoring parent, the
promotion gate), so that it does not pay PyTorch's import. `msaic_model.training.registry` writes these
files and loads the weights.

`thresholds.json` holds the decision threshold and, from calibration/1 on, the calibration of the
model's log-odds into a risk with its bands (`Calibration`, fitted by `msaic_model.training.calibration`);
both are checked here, so that a tampered calibration is refused like a tampered threshold.

`write_model_dir` publishes a model directory whole, in a local store or on S3 (its docstring
says how), and `read_model_files` reads one from either."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from tasks.store import conditional, remote
from tasks.store.location import Location, ObjectPath, location
from tasks.store.tables import staging_dir

MODELS = "models"  # STORE/models/<model_id>/
WEIGHTS = "weights.safetensors"
CONFIG = "config.json"
THRESHOLDS = "thresholds.json"
METRICS = "metrics.json"  # training history and the evaluation
SNAPSHOT = "snapshot.json"  # what the model was trained on (store, QC profile, adjudications)
MODEL_CARD = "model_card.html"
CLAIM = ".registered"  # on object storage: the first object of a model directory (who, when)
NET = "net"
FEATURE_MODELS: tuple[str, ...] = ("logreg", "gbm")
MODEL_KINDS: tuple[str, ...] = (NET, *FEATURE_MODELS)


class ModelError(ValueError):
    """A registered model directory that cannot be used (tampered, damaged or out of bounds): a
    model is refused before any work rather than scoring NaN or nonsense."""


class Thresholded(Protocol):
    """A registered model's id and saved decision threshold (`ModelFiles`, `LoadedModel`)."""

    model_id: str
    threshold: float | None


def decision_threshold(model: Thresholded) -> float:
    """The model's saved threshold; a model registered without one cannot flag, so it is refused."""
    if model.threshold is None:
        raise ValueError(f"model {model.model_id} has no decision threshold (thresholds.json)")
    return float(model.threshold)


CALIBRATION_METHODS: tuple[str, ...] = ("platt", "isotonic")


@dataclass(frozen=True)
class RiskBands:
    """Named bands of a calibrated risk: below cuts[0] is names[0], from cuts[i - 1] up to (not
    including) cuts[i] is names[i], from the last cut on the last name (data_contracts/calibration.json)."""

    cuts: tuple[float, ...]
    names: tuple[str, ...]

    def of(self, risk: np.ndarray) -> np.ndarray:
        """The band name of each risk (object array)."""
        index = np.searchsorted(np.asarray(self.cuts), np.asarray(risk, dtype=np.float64), side="right")
        return np.asarray(self.names, dtype=object)[index]

    def to_json(self) -> dict[str, Any]:
        return {"cuts": list(self.cuts), "names": list(self.names)}


@dataclass(frozen=True)
class Calibration:
    """A model's log-odds → calibrated risk: Platt (`a`, `b`: risk = σ(a·logit + b), a >= 0) or
    isotonic (breakpoints `logit_knots` → `risk_knots`, linear between them, flat beyond); both
    are non-decreasing in the logit, hence in the probability."""

    method: str
    bands: RiskBands
    a: float = 1.0
    b: float = 0.0
    logit_knots: tuple[float, ...] = ()
    risk_knots: tuple[float, ...] = ()

    def risk(self, logit: np.ndarray) -> np.ndarray:
        """Calibrated risk (float64) of log-odds; NaN stays NaN."""
        z = np.asarray(logit, dtype=np.float64)
        if self.method == "platt":
            with np.errstate(invalid="ignore"):  # NaN in, NaN out
                return np.exp(-np.logaddexp(0.0, -(self.a * z + self.b)))  # σ without overflow
        return np.interp(z, self.logit_knots, self.risk_knots)

    def to_json(self) -> dict[str, Any]:
        """The `calibration` entry of thresholds.json (fitting details are added by the caller)."""
        parameters: dict[str, Any] = (
            {"a": self.a, "b": self.b}
            if self.method == "platt"
            else {"logit": list(self.logit_knots), "risk": list(self.risk_knots)}
        )
        return {
            "method": self.method,
            "input": "logit",
            "parameters": parameters,
            "bands": self.bands.to_json(),
        }


@dataclass(frozen=True)
class ModelFiles:
    """A registered model's id, saved decision threshold (None when registered without one),
    config (`kind`, the model config, the split, the feature columns) and calibration (None when
    registered before calibration/1: such a model scores without a risk)."""

    model_id: str
    threshold: float | None
    config: dict[str, Any]
    calibration: Calibration | None = None

    @property
    def kind(self) -> str:
        return str(self.config["kind"])


def write_model_dir(store: Location, model_id: str, files: Mapping[str, bytes]) -> Location:
    """Publish STORE/models/<model_id>/ holding `files` (name → bytes, `CONFIG` among them) so that
    a reader sees the whole model or none of it; refuses an id that is already registered.

    In a local store the files are written under STORE/.staging and the folder is renamed into
    place. On object storage, where nothing can be renamed, the id is first claimed by creating
    `CLAIM` with a conditional PUT (If-None-Match: *, so of two registrations of one id only one
    goes on), then every file is PUT, `CONFIG` last: a model is only a model with its config and
    weights (`read_model_files`), and with read-after-write consistency a reader that finds the
    config finds every other file. A writer killed half-way leaves a directory without a config,
    which no reader takes for a model and whose id stays claimed."""
    final = location(store) / MODELS / model_id
    if CONFIG not in files:
        raise ValueError(f"a model directory needs its {CONFIG}")
    if _taken(final):
        raise FileExistsError(f"model {model_id} is already registered in {store}")
    if isinstance(final, ObjectPath):
        _claim(final, store)
        for name in sorted(files, key=lambda n: n == CONFIG):
            (final / name).write_bytes(files[name])
        return final
    staged = staging_dir(store) / f"model-{model_id}"
    staged.mkdir()
    for name, data in files.items():
        (staged / name).write_bytes(data)
    final.parent.mkdir(parents=True, exist_ok=True)
    staged.replace(final)
    return final


def _taken(final: Location) -> bool:
    """Whether a model id is registered or being registered (on object storage its claim or its
    config: an emptied prefix may still be listed as a folder by some servers)."""
    if isinstance(final, ObjectPath):
        return (final / CLAIM).exists() or (final / CONFIG).exists()
    return final.exists()


def _claim(final: ObjectPath, store: Location) -> None:
    """Create final/CLAIM only if it does not exist (a conditional PUT when the keys are in the
    environment; else after the existence check of the caller, which two registrations of one id
    at the same instant could both pass)."""
    body = json.dumps({"by": remote.process_tag(), "at": time.time()}).encode()
    if not conditional.available():
        (final / CLAIM).write_bytes(body)
    elif conditional.create(final / CLAIM, body) is None:
        raise FileExistsError(f"model {final.name} is already registered in {store}")


def incomplete_models(store: Location) -> list[Location]:
    """Model directories on object storage that a registration left without their config or
    weights (it died half-way: see `write_model_dir`) and that nothing has written to for
    `remote.ORPHAN_AGE_S`; in a local store the rename leaves none."""
    if not isinstance(store, ObjectPath):
        return []
    return [
        folder
        for folder in remote.orphan_folders(store, MODELS, None)
        if not ((folder / CONFIG).is_file() and (folder / WEIGHTS).is_file()) and folder.files()
    ]


def read_model_files(model_dir: Location) -> ModelFiles:
    """Read and check a registered model directory (a path or an s3:// location): weights
    present, a known kind, an id, a threshold that is null or a finite probability strictly
    between 0 and 1, and a calibration that is absent or valid (`read_calibration`); raises
    FileNotFoundError or ModelError with the directory named."""
    model_dir = location(model_dir)
    if not (model_dir / CONFIG).is_file() or not (model_dir / WEIGHTS).is_file():
        raise FileNotFoundError(f"{model_dir} is not a registered model ({CONFIG} and {WEIGHTS} expected)")
    config = _read_json(model_dir / CONFIG)
    if not isinstance(config, dict) or config.get("kind") not in MODEL_KINDS:
        kind = config.get("kind") if isinstance(config, dict) else None
        raise ModelError(f"{model_dir}: unknown model kind {kind!r}")
    if not isinstance(config.get("model_id"), str) or not config["model_id"]:
        raise ModelError(f"{model_dir}: {CONFIG} names no model_id")
    thresholds = _read_json(model_dir / THRESHOLDS)
    threshold = thresholds.get("threshold") if isinstance(thresholds, dict) else None
    if threshold is not None and not _is_probability(threshold):
        raise ModelError(
            f"{model_dir}: threshold {threshold!r} is not a probability strictly between 0 and 1"
        )
    raw = thresholds.get("calibration") if isinstance(thresholds, dict) else None
    calibration = None if raw is None else read_calibration(raw, model_dir)
    return ModelFiles(config["model_id"], threshold, config, calibration)


def read_calibration(raw: Any, model_dir: Location) -> Calibration:
    """The `calibration` entry of thresholds.json, checked: a known method on the logit, Platt's
    a >= 0 and b finite, or isotonic breakpoints (finite, strictly increasing logits; risks
    non-decreasing within [0, 1]; as many of each), and bands whose cuts rise strictly within
    (0, 1) with one name more than cuts; anything else is a one-line ModelError."""

    def refuse(why: str) -> ModelError:
        return ModelError(f"{model_dir}: calibration {why}")

    if (
        not isinstance(raw, dict)
        or raw.get("method") not in CALIBRATION_METHODS
        or raw.get("input") != "logit"
    ):
        raise refuse(f"is not one of {', '.join(CALIBRATION_METHODS)} on the logit")
    parameters, bands = raw.get("parameters"), raw.get("bands")
    if not isinstance(parameters, dict) or not isinstance(bands, dict):
        raise refuse("lacks its parameters or bands")
    cuts, names = _numbers(bands.get("cuts")), bands.get("names")
    if cuts is None or not all(0 < c < 1 for c in cuts) or not _rising(cuts, strict=True):
        raise refuse("band cuts are not rising probabilities strictly between 0 and 1")
    if (
        not isinstance(names, list)
        or len(names) != len(cuts) + 1
        or not all(isinstance(n, str) and n for n in names)
    ):
        raise refuse(f"bands need {len(cuts) + 1} names for {len(cuts)} cuts")
    risk_bands = RiskBands(tuple(cuts), tuple(names))
    if raw["method"] == "platt":
        a, b = _numbers([parameters.get("a"), parameters.get("b")]) or (None, None)
        if a is None or b is None or a < 0:
            raise refuse("Platt parameters need a finite a >= 0 and a finite b")
        return Calibration("platt", risk_bands, a=a, b=b)
    logits, risks = _numbers(parameters.get("logit")), _numbers(parameters.get("risk"))
    if logits is None or risks is None or not logits or len(logits) != len(risks):
        raise refuse("isotonic breakpoints need as many finite logits as risks")
    if (
        not _rising(logits, strict=True)
        or not _rising(risks, strict=False)
        or not 0 <= risks[0] <= risks[-1] <= 1
    ):
        raise refuse("isotonic breakpoints are not increasing logits with non-decreasing risks in [0, 1]")
    return Calibration("isotonic", risk_bands, logit_knots=tuple(logits), risk_knots=tuple(risks))


def _numbers(values: Any) -> list[float] | None:
    """A list of finite numbers as floats, or None when it is anything else."""
    if not isinstance(values, list) or not all(_is_finite_number(v) for v in values):
        return None
    return [float(v) for v in values]


def _rising(values: list[float], strict: bool) -> bool:
    steps = np.diff(values)
    return bool((steps > 0).all() if strict else (steps >= 0).all())


def _read_json(path: Location) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(f"{path} is unreadable: {exc}") from None


def _is_finite_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_probability(value: Any) -> bool:
    return _is_finite_number(value) and 0 < value < 1
