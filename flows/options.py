"""The options the `msaic` commands share, declared once, and their resolution into `Settings`.

Each command adds the shared options it takes (`add_store`, `add_workers`, `add_profile`,
`add_site`, `add_dask`) and builds its one run configuration with `settings_of(args)`: the typed
`Settings` (defaults, then `MSAIC_*` environment variables, then these flags), which its flow
receives whole; `cluster_of(args)` says where its shards run (None: local processes).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from flows.args import existing_path, existing_store, positive_int, store_location
from flows.cluster import DaskCluster, cluster_threads
from tasks.runner import start_worker_server
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


def add_dask(p: argparse.ArgumentParser) -> None:
    """`--dask-address tcp://host:8786` or `--dask-local [N]`: the command's shards run as Prefect
    tasks on that Dask cluster, or on a local one of N single-threaded worker processes."""
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        "--dask-address",
        metavar="ADDR",
        help="run shards on this Dask scheduler (tcp://host:8786); shards in flight: 2 x --workers "
        "(default: the cluster's worker threads)",
    )
    group.add_argument(
        "--dask-local",
        metavar="N",
        type=positive_int,
        nargs="?",
        const=0,
        help="run shards on a local Dask cluster of N worker processes, one thread each "
        "(default N: --workers, else the CPU count)",
    )


def cluster_of(args: argparse.Namespace, settings: Settings) -> DaskCluster | None:
    """The Dask cluster the flags ask for (None: the local process pool)."""
    if getattr(args, "dask_address", None):
        return DaskCluster(address=args.dask_address)
    if getattr(args, "dask_local", None) is not None:
        return DaskCluster(local_workers=args.dask_local or settings.workers)
    return None


def settings_of(args: argparse.Namespace) -> Settings:
    """The run's `Settings`: defaults and `MSAIC_*` variables, overridden by the shared flags given.
    On Dask, `workers` (shards in flight: twice as many) is the local cluster's N, or the
    threads of the cluster at --dask-address, unless --workers says otherwise; a local cluster's
    workers read the archive themselves (`workers_see_archive`)."""
    given = {field: getattr(args, dest) for dest, field in _FIELDS.items() if getattr(args, dest, None)}
    if getattr(args, "dask_local", None) is not None:
        given["workers_see_archive"] = True  # its workers run on this machine
    if "workers" not in given:
        if getattr(args, "dask_local", None):
            given["workers"] = args.dask_local
        elif getattr(args, "dask_address", None):
            given["workers"] = cluster_threads(args.dask_address)
    return Settings(**given)


def start_local_workers(args: argparse.Namespace) -> None:
    """A stage command's `warm_up`, called by the CLI while Prefect's temporary API still boots:
    start the forkserver of the local pool, whose imports (every stage's code, torch included)
    then overlap the boot instead of following it. Nothing on Dask or with one worker; invalid
    settings are left for the command to report."""
    if getattr(args, "dask_address", None) or getattr(args, "dask_local", None) is not None:
        return
    try:
        workers = settings_of(args).workers
    except ValueError:
        return
    if workers > 1:
        start_worker_server()
