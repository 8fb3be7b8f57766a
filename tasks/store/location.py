"""Where a store or an archive lives: a local path, or an object on S3-compatible storage.

`location("s3://bucket/prefix")` is an `ObjectPath`; a plain path or a `file://` URL is a
`pathlib.Path`. `ObjectPath` offers the part of pathlib's API the store and the archive walker
use, on top of pyarrow's `S3FileSystem`, so that they handle both kinds with the same code; what
differs on object storage (no rename, no flock, no empty folders) is decided in `tables`.

The filesystem is built from the environment in each process (AWS_ENDPOINT_URL_S3 or
AWS_ENDPOINT_URL, AWS_REGION, credentials through the AWS SDK's default chain: AWS_ACCESS_KEY_ID
and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, ~/.aws/config). An `ObjectPath` pickles as its URL only, so
no credential travels to a worker, a log or the store.
"""

from __future__ import annotations

import fnmatch
import os
import posixpath
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pyarrow.fs as pafs

SCHEME = "s3://"


@cache
def _s3(endpoint: str | None, region: str | None) -> pafs.S3FileSystem:
    """The S3 filesystem of this process for an endpoint and region (credentials: the SDK's chain)."""
    options: dict[str, Any] = {"region": region or "us-east-1"}
    if endpoint:
        parts = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
        options.update(endpoint_override=parts.netloc, scheme=parts.scheme)
    return pafs.S3FileSystem(**options)


def s3_filesystem() -> pafs.S3FileSystem:
    """The S3 filesystem the environment names (see the module docstring)."""
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    return _s3(endpoint, region)


class ObjectPath:
    """An object or a prefix ("folder") in a bucket: `s3://bucket/key`. Folders exist only while
    they hold objects, so `mkdir` does nothing; `replace` is a server-side copy and a delete (not
    atomic: the store's commit journal is what makes publishing safe)."""

    __slots__ = ("key",)

    def __init__(self, url: str) -> None:
        if not url.startswith(SCHEME):
            raise ValueError(f"{url} is not an s3:// URL")
        key = posixpath.normpath("/" + url[len(SCHEME) :]).strip("/")
        if not key:
            raise ValueError(f"{url} names no bucket")
        self.key = key  # "bucket/prefix/name", as pyarrow's S3FileSystem takes it

    # --- naming -------------------------------------------------------------------------------
    def __str__(self) -> str:
        return SCHEME + self.key

    def __repr__(self) -> str:
        return f"ObjectPath({str(self)!r})"

    def __reduce__(self) -> tuple[type, tuple[str]]:
        return ObjectPath, (str(self),)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ObjectPath) and other.key == self.key

    def __lt__(self, other: ObjectPath) -> bool:
        return self.key < other.key

    def __hash__(self) -> int:
        return hash((SCHEME, self.key))

    def __truediv__(self, name: str | Path) -> ObjectPath:
        return ObjectPath(f"{self}/{name}")

    @property
    def name(self) -> str:
        return posixpath.basename(self.key)

    @property
    def stem(self) -> str:
        return Path(self.name).stem

    @property
    def suffix(self) -> str:
        return Path(self.name).suffix

    @property
    def parent(self) -> ObjectPath:
        head = posixpath.dirname(self.key)
        return ObjectPath(SCHEME + head) if head else self

    def with_name(self, name: str) -> ObjectPath:
        return self.parent / name

    def with_suffix(self, suffix: str) -> ObjectPath:
        return self.with_name(self.stem + suffix)

    def resolve(self) -> ObjectPath:
        return self

    absolute = resolve

    def is_relative_to(self, other: object) -> bool:
        return isinstance(other, ObjectPath) and (self.key + "/").startswith(other.key + "/")

    def relative_to(self, other: ObjectPath) -> str:
        if not self.is_relative_to(other):
            raise ValueError(f"{self} is not under {other}")
        return self.key[len(other.key) + 1 :]

    # --- the filesystem -----------------------------------------------------------------------
    @property
    def fs(self) -> pafs.S3FileSystem:
        return s3_filesystem()

    def info(self) -> pafs.FileInfo:
        return self.fs.get_file_info(self.key)

    def exists(self) -> bool:
        return self.info().type != pafs.FileType.NotFound

    def is_dir(self) -> bool:
        return self.info().type == pafs.FileType.Directory

    def is_file(self) -> bool:
        return self.info().type == pafs.FileType.File

    def is_symlink(self) -> bool:
        return False

    def stat(self) -> os.stat_result:
        """An object's size and modification time as pathlib's `stat` gives them (a regular,
        read-only file; the other fields zero); FileNotFoundError when there is no such object."""
        info = self.info()
        if info.type != pafs.FileType.File:
            raise FileNotFoundError(f"{self} is no object")
        mtime = int(info.mtime.timestamp()) if info.mtime is not None else 0
        return os.stat_result((0o100444, 0, 0, 1, 0, 0, info.size, mtime, mtime, mtime))

    def mkdir(self, parents: bool = False, exist_ok: bool = False) -> None:
        """Nothing to do: a prefix exists once an object is written under it."""

    def files(self) -> list[pafs.FileInfo]:
        """Every object under this prefix (recursively), in key order; none when there is none."""
        selector = pafs.FileSelector(self.key, recursive=True, allow_not_found=True)
        found = self.fs.get_file_info(selector)
        return sorted((i for i in found if i.type == pafs.FileType.File), key=lambda i: i.path)

    def iterdir(self) -> Iterator[ObjectPath]:
        selector = pafs.FileSelector(self.key, recursive=False, allow_not_found=True)
        for info in sorted(self.fs.get_file_info(selector), key=lambda i: i.path):
            yield ObjectPath(SCHEME + info.path)

    def glob(self, pattern: str) -> Iterator[ObjectPath]:
        """Direct children whose name matches `pattern` (fnmatch; no `**`)."""
        return (p for p in self.iterdir() if fnmatch.fnmatchcase(p.name, pattern))

    def rglob(self, pattern: str) -> Iterator[ObjectPath]:
        """Objects at any depth whose name matches `pattern`."""
        for info in self.files():
            if fnmatch.fnmatchcase(posixpath.basename(info.path), pattern):
                yield ObjectPath(SCHEME + info.path)

    def read_bytes(self) -> bytes:
        with self.fs.open_input_stream(self.key, compression=None) as fh:
            return fh.read()

    def read_text(self, encoding: str = "utf-8") -> str:
        return self.read_bytes().decode(encoding)

    def write_bytes(self, data: bytes) -> int:
        """One PUT: readers see the whole object or none of it."""
        with self.fs.open_output_stream(self.key, compression=None) as fh:
            fh.write(data)
        return len(data)

    def write_text(self, text: str, encoding: str = "utf-8") -> int:
        return self.write_bytes(text.encode(encoding))

    def open(self, mode: str = "rb") -> Any:
        """A seekable binary reader ('rb', ranged GETs), or a writer ('wb', one upload)."""
        if mode == "rb":
            return self.fs.open_input_file(self.key)
        if mode == "wb":
            return self.fs.open_output_stream(self.key, compression=None)
        raise ValueError(f"mode {mode!r}: object storage files open as 'rb' or 'wb'")

    def stream(self, buffer_bytes: int = 1 << 20) -> Any:
        """A forward-only buffered reader (one GET): for tar streams."""
        return self.fs.open_input_stream(self.key, compression=None, buffer_size=buffer_bytes)

    def unlink(self, missing_ok: bool = False) -> None:
        try:
            self.fs.delete_file(self.key)
        except FileNotFoundError:
            if not missing_ok:
                raise

    def replace(self, target: ObjectPath) -> ObjectPath:
        """Copy on the server, then delete this object (safe to repeat after a crash between)."""
        self.fs.copy_file(self.key, target.key)
        self.unlink(missing_ok=True)
        return target

    def move(self, target: ObjectPath) -> None:
        """Move an object, or every object under this prefix, to `target` (copy, then delete)."""
        infos = self.files() if self.is_dir() else [self.info()]
        for info in infos:
            rel = info.path[len(self.key) :].lstrip("/")
            ObjectPath(SCHEME + info.path).replace(target / rel if rel else target)

    def rmtree(self) -> None:
        """Delete every object under this prefix."""
        self.fs.delete_dir_contents(self.key, missing_dir_ok=True)

    @classmethod
    def __get_pydantic_core_schema__(cls, _source: Any, _handler: Any) -> Any:
        """Flow parameters typed `Location` accept an ObjectPath as it is (or its URL)."""
        from pydantic_core import core_schema

        from_str = core_schema.no_info_plain_validator_function(lambda v: v if isinstance(v, cls) else cls(v))
        return core_schema.json_or_python_schema(
            json_schema=from_str,
            python_schema=from_str,
            serialization=core_schema.plain_serializer_function_ser_schema(str),
        )


Location = Path | ObjectPath


def location(value: str | os.PathLike[str] | ObjectPath) -> Location:
    """A store or archive location from a command line or a setting: `s3://bucket/prefix`, a
    `file://` URL or a plain path."""
    if isinstance(value, ObjectPath | Path):
        return value
    text = os.fspath(value)
    if text.startswith(SCHEME):
        return ObjectPath(text)
    if text.startswith("file://"):
        return Path(unquote(urlsplit(text).path))
    return Path(text)


def is_remote(loc: object) -> bool:
    return isinstance(loc, ObjectPath)


def filesystem_path(loc: Location) -> tuple[pafs.FileSystem, str]:
    """(pyarrow filesystem, path in it) of a location, for pyarrow's readers and writers."""
    if isinstance(loc, ObjectPath):
        return loc.fs, loc.key
    return pafs.LocalFileSystem(), str(loc)


def inside(inner: Location, outer: Location) -> bool:
    """Whether `inner` lies under `outer` (never across a local path and an object store)."""
    if type(inner) is not type(outer) and not (isinstance(inner, Path) and isinstance(outer, Path)):
        return False
    return inner.is_relative_to(outer)  # type: ignore[arg-type]
