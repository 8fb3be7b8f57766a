"""`msaic`: the command line. Each sub-command lives in the flow module it runs and registers
itself here through `register(subparsers)`; this module only dispatches and maps failures to the
exit statuses of the CLI contract (0 finished, 1 failed, 2 bad usage)."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

# Flow modules that provide a sub-command, in the order `msaic --help` lists them.
COMMAND_MODULES: tuple[str, ...] = ("flows.synth", "flows.ingest", "flows.demo")


def quiet_prefect_defaults() -> None:
    """Offline-friendly Prefect defaults, unless the user set them: no telemetry, terse logs."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "error")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="msaic", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    quiet_prefect_defaults()
    parser = build_parser()
    args = parser.parse_args(argv)  # exits with status 2 on bad usage
    try:
        return int(args.func(args))
    except (FileNotFoundError, ValueError) as exc:
        print(f"msaic {args.command}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
