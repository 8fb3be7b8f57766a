"""Store and archive locations: the URL forms, path arithmetic on s3:// URLs, and what an
ObjectPath carries to a worker (its URL, never a credential)."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from tasks.store.location import ObjectPath, inside, location


def test_plain_paths_and_file_urls_are_local_paths() -> None:
    assert location("/data/store") == Path("/data/store")
    assert location("store") == Path("store")
    assert location("file:///data/my%20store") == Path("/data/my store")
    assert location(Path("/x")) == Path("/x")


def test_s3_urls_are_object_paths_with_path_arithmetic() -> None:
    store = location("s3://bucket/pre/fix/")
    assert isinstance(store, ObjectPath) and str(store) == "s3://bucket/pre/fix"
    part = store / "records" / "site=a" / "part-1.parquet"
    assert part.key == "bucket/pre/fix/records/site=a/part-1.parquet"
    assert (part.name, part.stem, part.parent.parent.name) == ("part-1.parquet", "part-1", "records")
    assert part.is_relative_to(store) and part.relative_to(store) == "records/site=a/part-1.parquet"
    assert not inside(part, Path("/bucket")) and not inside(Path("/bucket/pre"), store)
    assert location(str(part)) == part and sorted([part, store]) == [store, part]
    assert str(part.with_suffix(".json")) == "s3://bucket/pre/fix/records/site=a/part-1.json"
    with pytest.raises(ValueError, match="names no bucket"):
        ObjectPath("s3://")


def test_an_object_path_pickles_as_its_url_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-to-be-shipped")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "key-id-not-to-be-shipped")
    path = ObjectPath("s3://bucket/store")
    _ = path.fs  # the client is built, and stays in this process
    data = pickle.dumps(path)
    assert b"not-to-be-shipped" not in data and pickle.loads(data) == path
