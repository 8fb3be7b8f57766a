"""Typed model and training configuration, loaded from versioned JSON files.

A `ModelConfig` holds everything a network and its training need: the architecture (MSAIC-Net,
`resnet1d_wang`, InceptionTime), the input (sampling rate, rhythm crops or median beats,
normalization, augmentation), the loss and the optimizer. The packaged files live in
`msaic_model/model/configs/<name>.json`; any other JSON file with the same layout can be loaded by path.
A config is saved beside registered weights (`config.model_dump_json()`), so a model is rebuilt
from data alone.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from data_contracts import load_json

CONFIG_DIR = Path(__file__).parent / "configs"
WEIGHTS_DIR = Path(__file__).parent / "weights"  # pretrained weights that packaged configs start from


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AtrousBlockConfig(_Strict):
    """One MSAIC block: parallel dilated convolutions (one branch per dilation), concatenated,
    fused by a 1×1 convolution, re-weighted by feature-channel attention, with a residual path."""

    width: int = Field(ge=1, description="output channels of the block")
    branch_width: int = Field(ge=1, description="channels of each dilated branch")
    dilations: list[int] = Field(min_length=1, description="one branch per dilation")
    kernel_size: int = Field(default=7, ge=1)
    pool: int = Field(default=1, ge=1, description="max-pool factor after the block (1 = none)")

    @model_validator(mode="after")
    def _positive_dilations(self) -> AtrousBlockConfig:
        if any(d < 1 for d in self.dilations):
            raise ValueError(f"dilations must be >= 1, got {self.dilations}")
        return self


class FusionConfig(_Strict):
    """Late fusion of the feature store into MSAIC-Net: a second input, the record's feature-store
    measurements and MI criteria (`fusion_columns`), goes through its own small head to a logit
    that is added to the network's (both branches train together, the contrastive loss stays on
    the waveform branch's projection). Values are imputed and standardized with the training
    set's medians and scales, kept in the weights."""

    columns: Literal["measurements", "measurements_and_criteria"] = Field(
        default="measurements_and_criteria",
        description="the numeric feature columns, and with criteria the boolean criterion columns as 0/1",
    )
    hidden: int = Field(default=32, ge=1, description="hidden units of the feature head")
    dropout: float = Field(default=0.2, ge=0, lt=1)
    clip: float = Field(default=5.0, gt=0, description="standardized values are clipped to ±clip")
    stack: Literal["gbm"] | None = Field(
        default=None,
        description="gradient boosting on the feature store's measurements (the `gbm` baseline), fitted on "
        "the training set after the network; its log-odds and the network's are averaged "
        "(`msaic_model.model.stacked`)",
    )


class MsaicNetConfig(_Strict):
    """MSAIC-Net: per-lead stem → lead attention → lead mixing → atrous blocks → pooling → heads;
    with `fusion`, a feature head whose logit is added to the classifier's."""

    architecture: Literal["msaic"] = "msaic"
    lead_width: int = Field(ge=1, description="channels per lead in the lead-wise stem")
    lead_kernel: int = Field(default=7, ge=1)
    lead_attention_hidden: int = Field(default=6, ge=1, description="hidden units of the lead gate")
    stem_width: int = Field(ge=1, description="channels after mixing the leads")
    stem_pool: int = Field(default=1, ge=1)
    blocks: list[AtrousBlockConfig] = Field(min_length=1)
    channel_attention: Literal["se", "eca"] = "se"
    se_reduction: int = Field(default=8, ge=1)
    eca_kernel: int = Field(default=3, ge=1)
    projection_hidden: int = Field(default=64, ge=1)
    projection_dim: int = Field(default=32, ge=1)
    dropout: float = Field(default=0.2, ge=0, lt=1)
    fusion: FusionConfig | None = None


def fusion_columns(fusion: FusionConfig) -> list[str]:
    """The feature-store columns a fused network reads, in order."""
    from data_contracts.feature_columns import CRITERIA_COLUMNS, FEATURE_COLUMNS

    if fusion.columns == "measurements":
        return list(FEATURE_COLUMNS)
    return [*FEATURE_COLUMNS, *CRITERIA_COLUMNS]


class ResNet1dConfig(_Strict):
    """`resnet1d_wang` of the PTB-XL benchmark (Strodthoff et al. 2020): basic blocks with kernel
    sizes (5, 3), stem kernel 7 without pooling, concat pooling head."""

    architecture: Literal["resnet1d"] = "resnet1d"
    width: int = Field(default=128, ge=1)
    layers: list[int] = Field(default=[1, 1, 1], min_length=1)
    kernel_sizes: list[int] = Field(default=[5, 3], min_length=1)
    stem_kernel: int = Field(default=7, ge=1)
    head_hidden: int = Field(default=128, ge=1)
    dropout: float = Field(default=0.5, ge=0, lt=1)


class Inception1dConfig(_Strict):
    """`inception1d` (InceptionTime, Ismail Fawaz et al. 2020) as in the PTB-XL benchmark:
    depth 6, kernel 40 (branches 39/19/9), 32 filters, bottleneck 32, residual every 3 modules."""

    architecture: Literal["inception1d"] = "inception1d"
    depth: int = Field(default=6, ge=1)
    kernel_size: int = Field(default=40, ge=3)
    filters: int = Field(default=32, ge=1)
    bottleneck: int = Field(default=32, ge=1)
    residual: bool = True
    head_hidden: int = Field(default=128, ge=1)
    dropout: float = Field(default=0.5, ge=0, lt=1)


NetConfig = Annotated[
    MsaicNetConfig | ResNet1dConfig | Inception1dConfig, Field(discriminator="architecture")
]


class AugmentConfig(_Strict):
    """Light training augmentation, applied per window after the crop."""

    scale: float = Field(default=0.1, ge=0, description="amplitude scale drawn from 1 ± scale")
    noise_mv: float = Field(default=0.02, ge=0, description="sd of added Gaussian noise, mV")
    baseline_mv: float = Field(default=0.1, ge=0, description="amplitude of a slow baseline sine, mV")
    baseline_hz: float = Field(default=0.3, gt=0, description="highest baseline-wander frequency")
    shift_s: float = Field(
        default=0.0,
        ge=0,
        description="largest time shift of a window, s (edge samples repeated); for median beats, "
        "whose fiducial lands on the nearest sample, as random crops shift rhythm input",
    )


class DataConfig(_Strict):
    """Model input: stored windows (12 × 5000, mV, 500 Hz) → resampled, cut into crops or reduced to
    one median beat per lead, normalized."""

    fs: int = Field(default=100, ge=1, description="model sampling rate; a divisor-friendly rate of 500")
    input: Literal["rhythm", "median_beat"] = Field(
        default="rhythm",
        description="rhythm: the whole window at the model rate, cut into crops; median_beat: one "
        "median beat per lead (tasks.features.beats at the model rate), crops do not apply",
    )
    crop_s: float | None = Field(default=5.0, gt=0, description="training crop; None = whole window")
    highpass_hz: float | None = Field(
        default=None, gt=0, description="zero-phase high-pass (baseline wander) before resampling; None = off"
    )
    normalize: Literal["none", "center", "lead_zscore"] = "center"
    clip_mv: float = Field(
        default=50.0,
        gt=0,
        description="stored values beyond ±clip_mv are clipped: no ECG reaches them, and a corrupt "
        "window's huge values would overflow the resampling filter into NaN",
    )
    augment: AugmentConfig = AugmentConfig()
    balanced_sampling: bool = False
    read_batch: int = Field(default=256, ge=1, description="windows read from the store at once")
    shuffle_buffer: int = Field(default=1024, ge=1, description="windows held for shuffling")
    cache_mb: float = Field(
        default=1024,
        ge=0,
        description="keep a training set's prepared windows in memory when under this size",
    )

    @model_validator(mode="before")
    @classmethod
    def _beats_take_no_crop_by_default(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("input") == "median_beat" and "crop_s" not in data:
            return {**data, "crop_s": None}
        return data

    @model_validator(mode="after")
    def _median_beat_input(self) -> DataConfig:
        if self.input != "median_beat":
            return self
        if self.crop_s is not None:
            raise ValueError("median_beat input is one beat per lead: crop_s must be null")
        beat = load_json("feature_criteria.json")["signal"]
        highest = max(beat["lowpass_hz"], *beat["detect_band_hz"])
        if self.fs <= 2 * highest:
            raise ValueError(
                f"median_beat input needs fs above {2 * highest:g} Hz (the beat pipeline's filters)"
            )
        return self


class LossConfig(_Strict):
    """Classification loss on the classifier head plus λ × imbalance-aware SupCon on the projection."""

    classification: Literal["ce", "focal"] = "ce"
    class_weighted: bool = True
    focal_gamma: float = Field(default=2.0, ge=0)
    supcon_weight: float = Field(default=0.5, ge=0, description="λ; 0 disables the contrastive term")
    temperature: float = Field(default=0.1, gt=0)
    majority_pair_weight: float = Field(default=0.5, ge=0, le=1, description="β of majority pairs")


class TrainConfig(_Strict):
    """Optimization (AdamW at a constant learning rate). An epoch is `windows_per_epoch` windows
    when set, else one pass over the training set or `min_windows_per_epoch` windows, whichever is
    more, so that a small training set still gets enough optimizer steps between two validations
    (at 200 records one pass is 3 steps; early stopping then ended training after a few dozen)."""

    epochs: int = Field(default=30, ge=1)
    batch_size: int = Field(default=64, ge=2)
    lr: float = Field(default=1e-3, gt=0)
    weight_decay: float = Field(default=1e-2, ge=0)
    patience: int = Field(default=5, ge=1, description="epochs without a better val AUPRC")
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    num_threads: int | None = Field(default=None, ge=1, description="torch CPU threads; None = default")
    windows_per_epoch: int | None = Field(
        default=None, ge=1, description="None = max(training set size, min_windows_per_epoch)"
    )
    min_windows_per_epoch: int | None = Field(
        default=None, ge=1, description="floor of an epoch when windows_per_epoch is None; None = no floor"
    )
    eval_batch_size: int = Field(default=64, ge=1, description="windows per inference batch (× crops)")
    init_weights: str | None = Field(
        default=None,
        description="start from the weights of this safetensors file, a path or an s3:// URL (the same "
        "network, e.g. pretrained on a synthetic archive: `msaic_model.training.pretrain`) instead of "
        "a random initialization",
    )

    def epoch_windows(self, training_windows: int) -> int:
        """Windows drawn per epoch from a training set of `training_windows` (see the class docstring)."""
        return self.windows_per_epoch or max(training_windows, self.min_windows_per_epoch or 0)


class ModelConfig(_Strict):
    """Everything needed to build and train one model; `version` tracks the file layout."""

    version: str
    name: str
    net: NetConfig
    data: DataConfig = DataConfig()
    loss: LossConfig = LossConfig()
    train: TrainConfig = TrainConfig()

    @property
    def architecture(self) -> str:
        return self.net.architecture

    @property
    def feature_columns(self) -> list[str]:
        """The feature-store columns the network reads beside the waveforms (empty without fusion)."""
        fusion = getattr(self.net, "fusion", None)
        return fusion_columns(fusion) if fusion is not None else []

    @property
    def stack(self) -> str | None:
        """The feature model stacked on the network after training (`fusion.stack`), if any."""
        fusion = getattr(self.net, "fusion", None)
        return fusion.stack if fusion is not None else None


def init_weights_path(value: str) -> str:
    """Where `train.init_weights` points: a packaged weights file by name (`WEIGHTS_DIR`, as
    `msaic_pretrained` names its own), else the path or s3:// URL as given."""
    packaged = WEIGHTS_DIR / value
    return str(packaged) if "/" not in value and packaged.is_file() else value


def weights_provenance(config: ModelConfig) -> dict[str, Any] | None:
    """How a config's packaged start was made (the JSON beside its weights file in `WEIGHTS_DIR`:
    SHA-256, pretraining config, archive seed); None for a random start or weights of your own."""
    if config.train.init_weights is None:
        return None
    path = Path(init_weights_path(config.train.init_weights)).with_suffix(".json")
    return json.loads(path.read_text()) if path.parent == WEIGHTS_DIR and path.is_file() else None


def available_configs() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.json"))


def load_config(name_or_path: str | Path) -> ModelConfig:
    """A packaged config by name (`msaic`, `resnet1d`, `inception1d`) or any JSON file by path."""
    path = Path(name_or_path)
    if not path.suffix and not path.exists():
        path = CONFIG_DIR / f"{name_or_path}.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"no model config {name_or_path!r} (packaged: {', '.join(available_configs())})"
        )
    return ModelConfig.model_validate(json.loads(path.read_text()))


def with_overrides(config: ModelConfig, overrides: dict[str, Any]) -> ModelConfig:
    """A copy with dotted-path overrides (`{"train.epochs": 2, "net.blocks": [...]}`), validated again."""
    data = config.model_dump()
    for dotted, value in overrides.items():
        node = data
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node[key]
        if leaf not in node:
            raise KeyError(f"unknown config field {dotted!r}")
        node[leaf] = value
    return ModelConfig.model_validate(data)
