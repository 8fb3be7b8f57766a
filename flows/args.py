"""Argument types of the `msaic` commands: paths and counts checked while the command line is
parsed, so that a wrong path is a usage error (exit 2, one line) given at once, before the
temporary Prefect API starts, instead of a traceback seconds later."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from tasks.store.location import SCHEME, Location, location
from tasks.store.model_files import CONFIG, WEIGHTS


def local_path(value: str) -> Path:
    """A path on this machine: an s3:// URL is refused in one line where only files are read or
    written (configs, QC profiles, the synthetic archive, the demo's folder)."""
    if value.startswith(SCHEME):
        raise argparse.ArgumentTypeError(
            f"{value}: this option takes a local path (s3:// is for stores, archives, OUT and models)"
        )
    return Path(value)


def existing_path(value: str) -> Path:
    """An input that must exist: an archive (folder, zip or tar), a config or profile file."""
    path = local_path(value)
    if not path.exists():
        raise argparse.ArgumentTypeError(f"{value} does not exist")
    return path


def model_config(value: str) -> Path:
    """A model config: a packaged one by name (`msaic`, `msaic_fused`, `resnet1d`, ...), else a
    JSON file that must exist."""
    from msaic_model.model.config import available_configs

    if value in available_configs():
        return Path(value)
    path = local_path(value)
    if not path.exists():
        raise argparse.ArgumentTypeError(
            f"{value} is neither a packaged config ({', '.join(available_configs())}) nor a file"
        )
    return path


def existing_dir(value: str) -> Path:
    """A directory that must exist already (a store that a command reads)."""
    path = existing_path(value)
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{value} is not a directory")
    return path


def output_dir(value: str) -> Path:
    """A directory that a command writes, created if missing: it may not be a file, and it (or
    the nearest folder above it that exists) must be a writable directory."""
    path = local_path(value)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{value} is a file, not a directory")
    existing = next(p for p in (path.absolute(), *path.absolute().parents) if p.exists())
    if not existing.is_dir():
        raise argparse.ArgumentTypeError(f"{value} cannot be created: {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"{value} is not writable ({existing} is read-only)")
    return path


def _remote(value: str, want_dir: bool) -> Location:
    """An s3:// location that must exist (a prefix holding objects when `want_dir`)."""
    loc = location(value)
    try:
        found = loc.is_dir() if want_dir else loc.exists()
    except OSError as exc:  # no such bucket, no credentials, no endpoint: the client's words
        raise argparse.ArgumentTypeError(f"{value}: {exc}") from None
    if not found:
        under = " (no objects under it)" if want_dir else ""
        raise argparse.ArgumentTypeError(f"{value} does not exist{under}")
    return loc


def existing_location(value: str) -> Location:
    """An archive that must exist: a local path, or s3://bucket/prefix (a prefix, zip or tar)."""
    return _remote(value, want_dir=False) if value.startswith(SCHEME) else existing_path(value)


def existing_store(value: str) -> Location:
    """A store a command reads: an existing local directory, or an s3:// prefix holding objects."""
    return _remote(value, want_dir=True) if value.startswith(SCHEME) else existing_dir(value)


def store_location(value: str) -> Location:
    """A store a command writes: a local directory (see `output_dir`), or s3://bucket/prefix (its
    bucket must exist; it is met at the first write)."""
    return location(value) if value.startswith(SCHEME) else output_dir(value)


def model_dir(value: str) -> Location:
    """A registered model directory (STORE/models/<model_id>, a path or an s3:// location): its
    contents are checked when the run loads it (`msaic_model.training.registry.load_model`)."""
    path = existing_store(value)
    if not (path / CONFIG).is_file() or not (path / WEIGHTS).is_file():
        raise argparse.ArgumentTypeError(
            f"{value} is not a registered model ({CONFIG} and {WEIGHTS} expected)"
        )
    return path


def positive_int(value: str) -> int:
    """A count of at least 1 (workers, records, epochs)."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value} is below 1")
    return number
