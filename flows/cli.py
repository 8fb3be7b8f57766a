"""`msaic`: the command line. Each sub-command lives in the flow module it runs and registers
itself through `register(subparsers)`; this module only picks the module, dispatches, and maps
failures to the exit statuses of the CLI contract (0 finished, 1 failed, 2 bad usage)."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import threading
from collections.abc import Sequence

# Sub-command → the flow module that registers it, in the order `msaic --help` lists them.
COMMANDS: dict[str, str] = {
    "synth": "flows.synth",
    "ingest": "flows.ingest",
    "qc": "flows.quality",
    "features": "flows.features",
    "train": "flows.train",
    "evaluate": "flows.train",
    "score": "flows.score",
    "report": "flows.report",
    "serve": "flows.serve",
    "demo": "flows.demo",
}


def quiet_prefect_defaults() -> None:
    """Offline-friendly Prefect defaults, unless the user set them: no telemetry, terse logs."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "error")
    # Prefect's own 20 s is too short for its temporary API on a busy 2-core machine
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")


def start_temporary_api() -> threading.Thread | None:
    """Without PREFECT_API_URL, Prefect starts a temporary local API at the first flow call, which
    takes seconds; start it now, in a background thread, so that it boots while the flow modules
    import. Prefect keeps one such server per process and the flow call reuses it."""
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_ENABLED

    if PREFECT_API_URL.value() or not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
        return None

    def start() -> None:
        from prefect.server.api.server import SubprocessASGIServer

        SubprocessASGIServer().start()

    thread = threading.Thread(target=start, name="prefect-temporary-api", daemon=True)
    thread.start()
    return thread


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of one command, importing only its flow module (so that `msaic ingest` does
    not import torch); of every command for help or an unknown command."""
    parser = argparse.ArgumentParser(
        prog="msaic",
        description="Screen 12-lead ECG archives for myocardial infarction: ingest, quality, features, "
        "training, evaluation and archive scoring, each a Prefect flow.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    modules = [COMMANDS[command]] if command in COMMANDS else COMMANDS.values()
    for name in dict.fromkeys(modules):
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    quiet_prefect_defaults()
    words = list(sys.argv[1:] if argv is None else argv)
    api = start_temporary_api() if words and not {"-h", "--help"} & set(words) else None
    try:
        args = build_parser(words[0] if words else None).parse_args(words)  # exits with status 2 on bad usage
        if getattr(args, "warm_up", None) is not None:
            args.warm_up(args)  # a command's own start-up work, overlapping the API's boot
    finally:
        if api is not None:
            api.join()  # also on bad usage, so that Prefect's exit hook stops the server it started
    try:
        return int(args.func(args))
    except (FileNotFoundError, ValueError) as exc:
        print(f"msaic {args.command}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
