"""The options the `msaic` commands share, declared once, and their resolution into `Settings`.

Each command adds the shared options it takes (`add_store`, `add_workers`, `add_profile`,
`add_site`) and builds its one run configuration with `settings_of(args)`: the typed `Settings`
(defaults, then `MSAIC_*` environment variables, then these flags), which its flow receives whole.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from flows.args import existing_path, existing_store, positive_int, store_location
from tasks.settings import Settings
from tasks.store.location import Location

# option destination → the Settings field it sets
_FIELDS = {"workers": "workers", "profile": "qc_profile"}


def add_store(p: argparse.ArgumentParser, help: str, writes: bool = False, required: bool = True) -> None:
    """`--store STORE`: an existing store a command reads, or (`writes`) one created if missing."""
    kind: Callable[[str], Location] = store_location if writes else existing_store
    p.add_argument("--store", type=kind, required=required, help=help)


def add_workers(p: argparse.ArgumentParser, help: str = "worker processes (default: CPU count)") -> None:
    """`--workers N` → `Settings.workers` (also `MSAIC_WORKERS`)."""
    p.add_argument("--workers", type=positive_int, help=help)


def add_profile(p: argparse.ArgumentParser, help: str) -> None:
    """`--profile P` → `Settings.qc_profile` (also `MSAIC_QC_PROFILE`)."""
    p.add_argument("--profile", type=existing_path, help=help)


def add_site(p: argparse.ArgumentParser) -> None:
    """`--site NAME`: the site of every record, instead of the metadata or folder rule."""
    p.add_argument("--site", help="site name for every record (default: metadata, else subfolder name)")


def settings_of(args: argparse.Namespace) -> Settings:
    """The run's `Settings`: defaults and `MSAIC_*` variables, overridden by the shared flags given."""
    given = {field: getattr(args, dest) for dest, field in _FIELDS.items() if getattr(args, dest, None)}
    return Settings(**given)
