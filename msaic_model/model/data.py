"""Model input, shared by training and inference, and a streaming reader of the waveform store.

`prepare` turns stored windows (float32 (n, 12, 5000), mV, 500 Hz, NaN where a lead is missing)
into network input: NaN → 0, values clipped to ±`clip_mv`, an optional zero-phase high-pass
against baseline wander, polyphase resampling to the model rate (`tasks.ingest.harmonize.resample_poly_fast`,
the ingest's resampler: 3× faster than scipy's loop at 500 → 100 Hz), for `median_beat` input one
median beat per lead (the feature store's beat pipeline, run at the model rate), then the
normalization the config names. Training and scoring both call it, so a model sees the same input
in both.

`WaveformStream` reads `waveforms/` fragment by fragment (pyarrow scans filtered on the wanted
record ids, pruned by site partition), so memory holds one read batch and the shuffle buffer, never
the store. Training streams shuffle (fragment order, then a buffer), crop, augment and can sample
classes in balance; evaluation streams yield every window once, whole, with its row position.
A training set whose prepared windows (at the model rate, 5× smaller than stored at 100 Hz) fit
under `data.cache_mb` is read once and then served from memory, since decoding the store costs
about as much as a training step on CPU.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from functools import lru_cache
from math import gcd
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import torch
from scipy.signal import butter, sosfiltfilt
from torch.utils.data import IterableDataset

from data_contracts.schemas import FS, N_LEADS, WINDOW_SAMPLES
from msaic_model.model.config import AugmentConfig, DataConfig, ModelConfig
from tasks.features.beats import FeatureSkip, beat_span, clean, median_beats
from tasks.features.measure import criteria_config
from tasks.ingest.harmonize import resample_poly_fast
from tasks.store import dataset, signals_of
from tasks.store.location import Location, location


def _data_config(config: ModelConfig | DataConfig) -> DataConfig:
    return config.data if isinstance(config, ModelConfig) else config


def model_samples(config: ModelConfig | DataConfig) -> int:
    """Samples of one prepared window: the whole stored window, or one median beat, at the model rate."""
    cfg = _data_config(config)
    return beat_samples(cfg.fs) if cfg.input == "median_beat" else round(WINDOW_SAMPLES * cfg.fs / FS)


def crop_samples(config: ModelConfig | DataConfig) -> int:
    """Samples of one training crop at the model rate: `crop_s` of the window, or the whole prepared
    window when training uses no crop (median beats, or `crop_s` null)."""
    cfg = _data_config(config)
    whole = model_samples(cfg)
    return whole if cfg.crop_s is None else min(whole, round(cfg.crop_s * cfg.fs))


def beat_samples(fs: int) -> int:
    """Length of a median beat at `fs` (beat_pre_s before the R fiducial, beat_post_s after)."""
    return sum(beat_span(criteria_config()["signal"], fs))


def median_beat_array(x: np.ndarray, usable: np.ndarray, fs: int) -> np.ndarray:
    """One median beat per lead for each window of x (n, 12, T) at `fs`, through the feature store's
    beat pipeline (zero-phase band-pass, R peaks on all leads together, beats unlike the dominant
    morphology left out). Unlike the feature store, which leaves the beats a lead's NaN gap
    touches out of that lead's median and cuts a padded tail, x arrives with NaN already 0 (as
    for rhythm input; the median over the beats keeps the few a gap touches from showing), and
    `usable` is only "not all missing": leads the quality gate flags still take part. An unusable
    lead, and every lead of a window in which no median beat can be formed (fewer than three
    matching beats), is 0: the network reads that as no evidence, and scoring reports such a
    window as unscored (`CropOcclusion.no_input`)."""
    cfg = criteria_config()["signal"]
    out = np.zeros((*x.shape[:2], beat_samples(fs)), np.float32)
    for i in range(x.shape[0]):
        if not usable[i].any():
            continue
        try:
            filtered, leads, _ = clean(x[i], usable[i], cfg, fs)  # x holds no NaN: no gaps
            out[i] = np.nan_to_num(median_beats(filtered, leads, cfg, fs).median)
        except FeatureSkip:
            continue
    return out


@lru_cache(maxsize=8)
def _highpass(cutoff_hz: float) -> np.ndarray:
    """Second-order Butterworth high-pass at the stored rate (run forwards and backwards: zero phase)."""
    return butter(2, cutoff_hz, btype="highpass", fs=FS, output="sos")


def prepare_array(signals: np.ndarray, config: ModelConfig | DataConfig) -> np.ndarray:
    """`prepare` as a float32 numpy array (n, 12, T) at the model rate."""
    cfg = _data_config(config)
    if signals.ndim != 3 or signals.shape[1] != N_LEADS:
        raise ValueError(f"expected signals of shape (n, {N_LEADS}, samples), got {signals.shape}")
    usable = ~np.isnan(signals).all(axis=-1) if cfg.input == "median_beat" else None
    x = np.nan_to_num(np.asarray(signals, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    np.clip(x, -cfg.clip_mv, cfg.clip_mv, out=x)  # nan_to_num made x a copy
    if cfg.highpass_hz is not None:
        x = sosfiltfilt(_highpass(cfg.highpass_hz), x, axis=-1)
    if cfg.fs != FS:
        g = gcd(cfg.fs, FS)
        x = resample_poly_fast(x, cfg.fs // g, FS // g)
    if usable is not None:
        x = median_beat_array(x, usable, cfg.fs)
    if cfg.normalize != "none":
        x = x - x.mean(axis=-1, keepdims=True)
    if cfg.normalize == "lead_zscore":
        sd = x.std(axis=-1, keepdims=True)
        x = np.divide(x, sd, out=np.zeros_like(x), where=sd > 1e-6)  # a flat or missing lead stays 0
    return np.ascontiguousarray(x, dtype=np.float32)


def prepare(signals: np.ndarray, config: ModelConfig | DataConfig) -> torch.Tensor:
    """Stored windows (n, 12, 5000) mV at 500 Hz (NaN allowed) → model input tensor (n, 12, T)."""
    return torch.from_numpy(prepare_array(signals, config))


def random_crop(x: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    """One random crop of `length` samples per window of a batch (n, leads, T)."""
    n, _, t = x.shape
    if length >= t:
        return x
    starts = rng.integers(0, t - length + 1, size=n)
    idx = starts[:, None] + np.arange(length)[None, :]
    return np.take_along_axis(x, idx[:, None, :], axis=-1)


def augment(x: np.ndarray, cfg: AugmentConfig, fs: int, rng: np.random.Generator) -> np.ndarray:
    """Light augmentation of a batch (n, leads, T): a time shift per window (edges repeated),
    amplitude scale per window, Gaussian noise and a slow baseline sine per lead (random amplitude,
    frequency up to `baseline_hz`, phase)."""
    n, leads, t = x.shape
    reach = round(cfg.shift_s * fs)
    if reach:
        idx = np.clip(np.arange(t)[None, :] - rng.integers(-reach, reach + 1, size=(n, 1)), 0, t - 1)
        x = np.take_along_axis(x, idx[:, None, :], axis=-1)
    out = x * rng.uniform(1 - cfg.scale, 1 + cfg.scale, size=(n, 1, 1)).astype(np.float32)
    if cfg.noise_mv > 0:
        out = out + rng.normal(0, cfg.noise_mv, size=x.shape).astype(np.float32)
    if cfg.baseline_mv > 0:
        time = np.arange(t, dtype=np.float32) / fs
        amp = rng.uniform(0, cfg.baseline_mv, size=(n, leads, 1))
        freq = rng.uniform(0, cfg.baseline_hz, size=(n, leads, 1))
        phase = rng.uniform(0, 2 * np.pi, size=(n, leads, 1))
        out = out + (amp * np.sin(2 * np.pi * freq * time + phase)).astype(np.float32)
    return out.astype(np.float32, copy=False)


class Batch(NamedTuple):
    x: torch.Tensor  # (b, 12, T) model input
    y: torch.Tensor  # (b,) labels, -1 where none was given
    position: torch.Tensor  # (b,) row of each window in the `record_ids` the stream was made with
    features: torch.Tensor | None = None  # (b, F) feature-store values for a fused network


class WaveformStream(IterableDataset):
    """Batches of windows streamed from `STORE/waveforms` for the given record ids.

    train=True: every epoch draws its windows (each once in random order, or `windows_per_epoch`
    of them: more than the set holds are whole passes plus a random remainder; with
    `balanced_sampling` drawn with replacement, classes equally likely), reads
    fragments in random order, mixes through a shuffle buffer, crops and augments.
    train=False: every window once, whole, in store order; a record id missing from the store is an
    error (KeyError), so that evaluation never silently skips windows.
    `cache` (default: on for training) keeps the prepared windows in memory after the first pass
    when they fit under `data.cache_mb`, for a stream iterated many times.
    `features` (n, F), aligned with `record_ids`, travel with their windows (a fused network's
    second input; `msaic_model.training.eligible.feature_matrix`).
    Deterministic for a given (seed, epoch); call `set_epoch` between epochs.
    """

    def __init__(
        self,
        store: Location,
        record_ids: Sequence[str],
        labels: Sequence[int] | np.ndarray | None,
        config: ModelConfig,
        train: bool,
        batch_size: int | None = None,
        sites: Sequence[str] | None = None,
        seed: int | None = None,
        windows_per_epoch: int | None = None,
        cache: bool | None = None,
        features: np.ndarray | None = None,
    ) -> None:
        super().__init__()
        self.store = location(store)
        self.record_ids = [str(r) for r in record_ids]
        if len(set(self.record_ids)) != len(self.record_ids):
            raise ValueError("record_ids must be unique (one row per stored window)")
        self.labels = (
            np.full(len(self.record_ids), -1, np.int64) if labels is None else np.asarray(labels, np.int64)
        )
        if self.labels.shape != (len(self.record_ids),):
            raise ValueError("labels must align with record_ids")
        self.features = None if features is None else torch.from_numpy(np.asarray(features, np.float32))
        if self.features is not None and len(self.features) != len(self.record_ids):
            raise ValueError("features must align with record_ids")
        self.config = config
        self.train = train
        self.batch_size = batch_size or (config.train.batch_size if train else config.train.eval_batch_size)
        self.sites = sorted(set(sites)) if sites is not None else None
        self.seed = config.train.seed if seed is None else seed
        self.windows_per_epoch = windows_per_epoch  # None: one pass (`fit` applies TrainConfig's rule)
        self.epoch = 0
        cache_bytes = len(self.record_ids) * N_LEADS * model_samples(config) * 4
        wants_cache = train if cache is None else cache  # a one-pass evaluation gains nothing from it
        self._use_cache = wants_cache and cache_bytes <= config.data.cache_mb * 2**20
        self._cache: np.ndarray | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        """Windows per epoch (not batches)."""
        return (self.train and self.windows_per_epoch) or len(self.record_ids)

    def _draws(self, rng: np.random.Generator) -> np.ndarray:
        """Positions (rows of record_ids) to emit this epoch; a position may repeat."""
        n = len(self.record_ids)
        if not self.train:
            return np.arange(n)
        k = len(self)
        if self.config.data.balanced_sampling:
            classes, inverse, counts = np.unique(self.labels, return_inverse=True, return_counts=True)
            p = 1.0 / (len(classes) * counts[inverse])
            return rng.choice(n, size=k, replace=True, p=p / p.sum())
        if k <= n:
            return rng.choice(n, size=k, replace=False)
        # several passes: every window k // n times, the remainder drawn without replacement
        passes = [rng.permutation(n) for _ in range(k // n)]
        return np.concatenate([*passes, rng.choice(n, size=k % n, replace=False)])

    def _fragments(self, filter_: ds.Expression | None, rng: np.random.Generator | None) -> list[ds.Fragment]:
        dset = dataset(self.store, "waveforms")
        if dset is None:
            raise FileNotFoundError(f"no waveforms in store {self.store}")
        fragments = sorted(dset.get_fragments(filter=filter_), key=lambda f: f.path)
        if rng is not None:
            fragments = [fragments[i] for i in rng.permutation(len(fragments))]
        return fragments

    def _windows(self, rng: np.random.Generator) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(prepared signals, positions) per read batch; a window drawn k times appears k times."""
        draws = self._draws(rng)
        if self._use_cache:
            if self._cache is None:
                self._cache = self._read_all()
            draws = rng.permutation(draws) if self.train else draws
            for start in range(0, len(draws), self.config.data.read_batch):
                positions = draws[start : start + self.config.data.read_batch]
                yield self._cache[positions], positions
            return
        yield from self._scan(draws, rng if self.train else None)

    def _read_all(self) -> np.ndarray:
        """Every window's prepared signal, indexed by position (one streamed pass over the store)."""
        cache = np.empty((len(self.record_ids), N_LEADS, model_samples(self.config)), np.float32)
        for x, positions in self._scan(np.arange(len(self.record_ids)), None):
            cache[positions] = x
        return cache

    def _scan(
        self, draws: np.ndarray, rng: np.random.Generator | None
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Stream the store for the drawn positions; fragments in random order when `rng` is given."""
        wanted: dict[str, list[int]] = {}
        for pos in draws.tolist():
            wanted.setdefault(self.record_ids[pos], []).append(pos)
        by_id = ds.field("record_id").isin(pa.array(list(wanted), pa.string()))
        by_site = ds.field("site").isin(self.sites) if self.sites is not None else None
        seen = 0
        for fragment in self._fragments(by_site, rng):  # the site filter prunes whole partitions
            for rb in fragment.to_batches(
                columns=["record_id", "signal"], filter=by_id, batch_size=self.config.data.read_batch
            ):
                if rb.num_rows == 0:
                    continue
                ids = rb.column("record_id").to_pylist()
                rows = [(row, pos) for row, rid in enumerate(ids) for pos in wanted[rid]]
                x = prepare_array(signals_of(rb.column("signal")), self.config)
                seen += rb.num_rows
                yield x[[r for r, _ in rows]], np.array([p for _, p in rows], np.int64)
        if seen < len(wanted):
            raise KeyError(
                f"{len(wanted) - seen} of {len(wanted)} record ids have no waveform in {self.store}"
            )

    def _batch(self, x: np.ndarray, positions: np.ndarray, rng: np.random.Generator) -> Batch:
        if self.train:
            data = self.config.data
            x = random_crop(x, crop_samples(data), rng)
            x = augment(x, data.augment, data.fs, rng)
        return Batch(
            torch.from_numpy(np.ascontiguousarray(x)),
            torch.from_numpy(self.labels[positions]),
            torch.from_numpy(positions),
            None if self.features is None else self.features[positions],
        )

    def __iter__(self) -> Iterator[Batch]:
        """Fill the buffer, shuffle it (training), hand out whole batches, keep the remainder."""
        rng = np.random.default_rng([self.seed, self.epoch])
        fill = max(self.config.data.shuffle_buffer if self.train else 1, self.batch_size)
        buffer_x: list[np.ndarray] = []
        buffer_p: list[np.ndarray] = []
        held = 0
        for x, positions in self._windows(rng):
            buffer_x.append(x)
            buffer_p.append(positions)
            held += len(positions)
            if held >= fill:
                yield from self._drain(buffer_x, buffer_p, rng, keep_remainder=True)
                held = sum(len(p) for p in buffer_p)
        if held:
            yield from self._drain(buffer_x, buffer_p, rng, keep_remainder=False)

    def _drain(
        self,
        buffer_x: list[np.ndarray],
        buffer_p: list[np.ndarray],
        rng: np.random.Generator,
        keep_remainder: bool,
    ) -> Iterator[Batch]:
        """Batches out of the buffer (shuffled when training); the lists are left holding the rest."""
        all_x, all_p = np.concatenate(buffer_x), np.concatenate(buffer_p)
        order = rng.permutation(len(all_p)) if self.train else np.arange(len(all_p))
        full = len(order) // self.batch_size * self.batch_size if keep_remainder else len(order)
        for start in range(0, full, self.batch_size):
            take = order[start : min(start + self.batch_size, full)]
            yield self._batch(all_x[take], all_p[take], rng)
        rest = order[full:]
        buffer_x[:] = [all_x[rest]] if len(rest) else []
        buffer_p[:] = [all_p[rest]] if len(rest) else []
