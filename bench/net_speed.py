"""Training and inference speed of MSAIC-Net against the PTB-XL baselines on this machine.

Prints JSON: for each packaged config, parameters, training windows/s (AdamW steps on batches of
prepared input at the config's rate, random crops of rhythm input, loss included) and inference
windows/s (whole 10-s windows from stored-format signals, `prepare` (resampling, median beats) and
crop aggregation included), per wall-clock second and per
CPU second of this process (the CPU figure holds up when other jobs share the machine; with
`--threads 1` it is the speed of one core), and the CPU figures as ratios to `resnet1d_wang`
measured in the same run on the same input.

The input is real: the 10-s LUDB records of the shared data (12 leads, 500 Hz, mV), repeated to
256 windows, so that median beats are found as on an archive.

    .venv/bin/python bench/net_speed.py [--steps 8] [--threads 2] [--batch 64] [--ludb DIR]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import wfdb

from msaic_model.model.blocks import parameter_count
from msaic_model.model.config import load_config
from msaic_model.model.data import crop_samples, prepare_array, random_crop
from msaic_model.model.inference import predict_proba
from msaic_model.model.net import build_model
from msaic_model.training.losses import MsaicLoss

ROOT = Path(__file__).resolve().parents[1]


class Clock:
    """Wall-clock and process CPU seconds since the last `lap`."""

    def __init__(self) -> None:
        self._t = (time.perf_counter(), time.process_time())

    def lap(self) -> tuple[float, float]:
        now = (time.perf_counter(), time.process_time())
        spent = (now[0] - self._t[0], now[1] - self._t[1])
        self._t = now
        return spent


def measure(name: str, steps: int, batch: int, signals: np.ndarray, labels: torch.Tensor) -> dict[str, float]:
    config = load_config(name)
    torch.manual_seed(0)
    model = build_model(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.train.lr)
    loss = MsaicLoss(config.loss)
    rng = np.random.default_rng(0)
    prepared = prepare_array(signals[:batch], config)
    crop = crop_samples(config)
    model.train()
    clock = Clock()
    for step in range(steps + 1):  # the first step warms up and is not timed
        if step == 1:
            clock.lap()
        x = torch.from_numpy(random_crop(prepared, crop, rng))
        parts = loss(model(x), labels)
        optimizer.zero_grad()
        parts.total.backward()
        optimizer.step()
    train_wall, train_cpu = clock.lap()
    predict_proba(model, config, signals[:8])
    clock.lap()
    predict_proba(model, config, signals)
    infer_wall, infer_cpu = clock.lap()
    return {
        "parameters": parameter_count(model),
        "fs": config.data.fs,
        "crop_samples": crop,
        "train_windows_per_s": round(steps * batch / train_wall, 1),
        "train_windows_per_cpu_s": round(steps * batch / train_cpu, 1),
        "inference_windows_per_s": round(len(signals) / infer_wall, 1),
        "inference_windows_per_cpu_s": round(len(signals) / infer_cpu, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument(
        "--configs", nargs="+", default=["resnet1d", "msaic", "msaic_rhythm", "inception1d", "msaic500"]
    )
    parser.add_argument("--ludb", type=Path, default=ROOT.parent / "shared" / "data" / "ludb" / "data")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    records = [
        wfdb.rdrecord(str(h.with_suffix(""))).p_signal.T[:, :5000] for h in sorted(args.ludb.glob("*.hea"))
    ]
    signals = np.resize(np.stack(records).astype(np.float32), (256, 12, 5000))  # stored format, mV at 500 Hz
    labels = torch.from_numpy((rng.random(args.batch) < 0.3).astype(np.int64))
    names = ["resnet1d", *[c for c in args.configs if c != "resnet1d"]]
    results = {name: measure(name, args.steps, args.batch, signals, labels) for name in names}
    ref = results["resnet1d"]
    for r in results.values():
        for kind in ("train", "inference"):
            key = f"{kind}_windows_per_cpu_s"
            r[f"{kind}_cpu_speed_vs_resnet1d"] = round(r[key] / ref[key], 2)
    out = {"threads": args.threads, "batch": args.batch, "steps": args.steps, "models": results}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
