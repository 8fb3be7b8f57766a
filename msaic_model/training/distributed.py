"""Data-parallel training over the processes `torchrun` starts (DistributedDataParallel).

Under `torchrun` (RANK, WORLD_SIZE, LOCAL_RANK in the environment, world size > 1) `fit` joins a
process group (gloo for CPU tensors, NCCL for CUDA ones), wraps the network in
`DistributedDataParallel` (gradients averaged over the ranks at every step) and trains each rank on
its share of every epoch's windows (`ShardedStream`). Rank 0 alone validates; its scores are
broadcast so that early stopping decides the same epoch on every rank. Only rank 0 writes (model,
card, registry: `flows.train`). One process (world size 1, or no torchrun) takes none of these
paths, so it trains exactly as before.

Two choices, and why:
- BatchNorm stays per rank (no SyncBatchNorm): SyncBatchNorm refuses CPU tensors (GPUs only), a
  rank's batch is the configured `batch_size` (statistics as stable as on one process), and CPU
  and GPU runs then train the same network; DDP copies rank 0's running statistics to the other
  ranks at each forward (`broadcast_buffers`) and once more after each epoch, so the statistics
  validated and saved are rank 0's.
- The supervised contrastive loss compares the windows of a rank's own batch: positives and
  negatives come from the local batch, as on one process with that batch size; embeddings are
  not gathered across ranks. The effective batch of the gradient is `batch_size` × world size,
  with the learning rate left as configured.
"""

from __future__ import annotations

import atexit
import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data.distributed import DistributedSampler

from msaic_model.model.data import WaveformStream

# rank 0 evaluates and registers a fold while the other ranks wait for the next one
TIMEOUT = timedelta(hours=1)


@dataclass(frozen=True)
class Ranks:
    """This process's place among the training processes (one process: rank 0 of 1)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """The rank that validates and writes."""
        return self.rank == 0

    @property
    def parallel(self) -> bool:
        return self.world > 1


def launched() -> Ranks:
    """The ranks `torchrun` gave this process (RANK, WORLD_SIZE, LOCAL_RANK); rank 0 of 1 without it."""
    env = os.environ
    return Ranks(int(env.get("RANK", "0")), int(env.get("WORLD_SIZE", "1")), int(env.get("LOCAL_RANK", "0")))


def process_group() -> Ranks:
    """The ranks, after joining the process group when there are several (once per process; left at
    exit). gloo carries CPU tensors, NCCL CUDA ones when a GPU is present."""
    ranks = launched()
    if ranks.parallel and not dist.is_initialized():
        backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend, timeout=TIMEOUT)
        atexit.register(dist.destroy_process_group)
    return ranks


def rank_device(device: torch.device, ranks: Ranks) -> torch.device:
    """The GPU of this rank (LOCAL_RANK) when training on CUDA with several ranks, else `device`."""
    if device.type != "cuda" or not ranks.parallel:
        return device
    mine = torch.device("cuda", ranks.local_rank)
    torch.cuda.set_device(mine)
    return mine


def data_parallel(model: nn.Module, device: torch.device, ranks: Ranks, unused_parameters: bool) -> nn.Module:
    """`model` wrapped in DistributedDataParallel (which starts every rank from rank 0's weights);
    `model` itself with one rank. `unused_parameters`: some parameters get no gradient (a
    projection head with the contrastive term off)."""
    if not ranks.parallel:
        return model
    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=unused_parameters)


class ShardedStream(WaveformStream):
    """A training stream that yields one rank's share of every epoch.

    Every rank draws the same windows for an epoch (same seed, same epoch); a `DistributedSampler`
    over those draws (no shuffle, `drop_last`) gives rank r the draws r, r + W, r + 2W, ...: the
    shares are disjoint and equal in size (at most W − 1 draws of an epoch are left out), so every
    rank takes the same number of steps, which DDP needs. The draws change with the epoch
    (`set_epoch`), so a window's rank does too. Crops and augmentation are reseeded per rank, so
    that ranks do not repeat each other's noise.
    """

    def __init__(self, *args: Any, ranks: Ranks, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ranks = ranks

    def _draws(self, rng: np.random.Generator) -> np.ndarray:
        draws = super()._draws(rng)
        share = DistributedSampler(
            draws, num_replicas=self.ranks.world, rank=self.ranks.rank, shuffle=False, drop_last=True
        )
        rng.bit_generator.state = np.random.default_rng(
            [self.seed, self.epoch, self.ranks.rank]
        ).bit_generator.state
        return draws[list(share)]


def rank0_buffers(model: nn.Module, ranks: Ranks) -> None:
    """Give every rank rank 0's buffers (BatchNorm running statistics): DDP copies them at the start
    of each forward, so after an epoch's last step each rank still holds its own."""
    if ranks.parallel:
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)


def sum_over_ranks(values: np.ndarray, ranks: Ranks) -> np.ndarray:
    """The element-wise sum of `values` (float64) over all ranks; `values` itself with one rank."""
    if not ranks.parallel:
        return values
    total = torch.from_numpy(np.asarray(values, np.float64).copy())
    dist.all_reduce(total)
    return total.numpy()


def gathered(value: Any, ranks: Ranks) -> list[Any]:
    """Every rank's `value` (picklable), in rank order."""
    if not ranks.parallel:
        return [value]
    out: list[Any] = [None] * ranks.world
    dist.all_gather_object(out, value)
    return out


def from_main(value: Any, ranks: Ranks) -> Any:
    """Rank 0's `value` (picklable) on every rank."""
    if not ranks.parallel:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def digest(arrays: Iterable[np.ndarray | torch.Tensor]) -> str:
    """A SHA-256 of arrays, for what the ranks must agree on (their data, their weights)."""
    out = hashlib.sha256()
    for array in arrays:
        data = array.detach().cpu().numpy() if isinstance(array, torch.Tensor) else np.asarray(array)
        out.update(np.ascontiguousarray(data).tobytes())
    return out.hexdigest()


def require_same(what: str, value: str, ranks: Ranks) -> None:
    """Fail on every rank when the ranks disagree on `value` (different data, unsynchronised weights)."""
    values = gathered(value, ranks)
    if len(set(values)) > 1:
        raise RuntimeError(f"the {ranks.world} training ranks disagree on {what}")


def shared_windows(positions: np.ndarray, n: int, ranks: Ranks) -> int:
    """How many of the `n` windows more than one rank trained on in an epoch (0: disjoint shares)."""
    counts = sum_over_ranks((np.bincount(positions, minlength=n) > 0).astype(np.float64), ranks)
    return int((counts > 1).sum())
