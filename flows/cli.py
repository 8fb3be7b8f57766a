"""`msaic`: the command line. Each sub-command lives in the flow module it runs and registers
itself through `register(subparsers)`; this module only picks the module, dispatches, and keeps
the CLI's error convention:
- exit 0: the run finished (quarantined inputs included);
- exit 2, one line on stderr, no traceback: bad usage, a path that cannot serve (missing archive,
  store or model, a file given for a directory, a read-only output), an invalid MSAIC_* setting;
  found while parsing, before the temporary Prefect API starts, so it comes at once;
- exit 1, one line: the run failed; the line names the log file that holds the traceback
  (`msaic-<command>-<time>-<pid>.log` in the temporary directory), and `--debug` prints it;
- exit 130: interrupted (Ctrl-C).
A watchdog process (`flows.watchdog`) stops the run's helper processes if the CLI is killed.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import re
import subprocess
import sys
import tempfile
import threading
import traceback
from collections.abc import Sequence
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError

# Sub-command → the flow module that registers it, in the order `msaic --help` lists them.
COMMANDS: dict[str, str] = {
    "synth": "flows.synth",
    "ingest": "flows.ingest",
    "qc": "flows.quality",
    "features": "flows.features",
    "train": "flows.train",
    "evaluate": "flows.train",
    "score": "flows.score",
    "review": "flows.review",
    "report": "flows.report",
    "serve": "flows.serve",
    "demo": "flows.demo",
    "store": "flows.store",
}
MESSAGE_CHARS = 400  # the one line of an error stays readable


class Parser(argparse.ArgumentParser):
    """argparse with a one-line usage error (exit 2) instead of the usage block."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def quiet_prefect_defaults() -> None:
    """Offline-friendly Prefect defaults, unless the user set them: no telemetry, terse logs."""
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "error")
    # Prefect's own 20 s is too short for its temporary API on a busy 2-core machine
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")


class TemporaryApi(threading.Thread):
    """Without PREFECT_API_URL, Prefect starts a temporary local API at the first flow call, which
    takes seconds; start it now, in a background thread, so that it boots while the command warms
    up. Prefect keeps one such server per process and the flow call reuses it. `join` re-raises a
    failed start in the calling thread (one line, not a thread's traceback)."""

    def __init__(self) -> None:
        super().__init__(name="prefect-temporary-api", daemon=True)
        self.error: BaseException | None = None

    def run(self) -> None:
        from prefect.server.api.server import SubprocessASGIServer

        try:
            SubprocessASGIServer().start()
        except BaseException as exc:  # handed to the main thread by `join`
            self.error = exc

    def join(self, timeout: float | None = None) -> None:
        super().join(timeout)
        if self.error is not None:
            raise self.error


def start_temporary_api() -> TemporaryApi | None:
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_ENABLED

    if PREFECT_API_URL.value() or not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
        return None
    api = TemporaryApi()
    api.start()
    return api


class Watchdog:
    """The run's reaper process (`flows/watchdog.py`), told goodbye when the CLI ends normally."""

    def __init__(self) -> None:
        read, self._write = os.pipe()
        script = Path(__file__).with_name("watchdog.py")
        self._proc = subprocess.Popen(
            [sys.executable, "-I", "-S", str(script), str(os.getpid())],
            stdin=read,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(read)

    def stop(self) -> None:
        with suppress(OSError):  # it is gone already
            os.write(self._write, b".")
        os.close(self._write)
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of one command, importing only its flow module (so that `msaic ingest` does
    not import torch); of every command for help or an unknown command."""
    parser = Parser(
        prog="msaic",
        description="Screen 12-lead ECG archives for myocardial infarction: ingest, quality, features, "
        "training, evaluation and archive scoring, each a Prefect flow.",
    )
    parser.add_argument("--debug", action="store_true", help="print the traceback of a failed run")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    modules = [COMMANDS[command]] if command in COMMANDS else COMMANDS.values()
    for name in dict.fromkeys(modules):
        importlib.import_module(name).register(sub)
    _add_debug(sub)
    return parser


def _add_debug(sub: argparse._SubParsersAction) -> None:
    """`--debug` after the command too (`msaic ingest ... --debug`), in nested commands as well."""
    for parser in sub.choices.values():
        parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                _add_debug(action)


def settings_problem() -> str | None:
    """Why the MSAIC_* environment cannot serve (one line), or None."""
    from tasks.settings import Settings
    from tasks.store.pseudonym import PseudonymKeyError, check_configured

    try:
        settings = Settings()
        if settings.pseudonym_key is not None:
            check_configured(settings.pseudonym_key.get_secret_value())
    except ValidationError as exc:
        first = exc.errors()[0]
        name = "MSAIC_" + "_".join(str(p) for p in first["loc"]).upper()
        return f"invalid setting {name}: {first['msg']}"
    except PseudonymKeyError as exc:
        return str(exc)
    return None


def one_line(exc: BaseException) -> str:
    """An exception as one readable line: its message, with the type unless it is self-explaining."""
    text = re.sub(r"\s+", " ", str(exc)).strip()
    if not text or not isinstance(exc, OSError | ValueError | RuntimeError):
        text = f"{type(exc).__name__}: {text}".rstrip(": ")
    return text if len(text) <= MESSAGE_CHARS else text[: MESSAGE_CHARS - 1] + "…"


def write_log(command: str, words: list[str], exc: BaseException) -> Path | None:
    """The traceback of a failed run, in a log file only its owner reads (paths in it may name
    patients); None when even that cannot be written (a full disk)."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = Path(tempfile.gettempdir()) / f"msaic-{command}-{stamp}-{os.getpid()}.log"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(f"msaic {' '.join(words)}\n")
            fh.write("".join(traceback.format_exception(exc)))
    except OSError:
        return None
    return path


def report_failure(command: str, words: list[str], exc: BaseException, debug: bool) -> int:
    if debug:
        traceback.print_exception(exc)
    log = write_log(command, words, exc)
    where = f"traceback in {log}" if log else "run again with --debug for the traceback"
    print(f"msaic {command}: {one_line(exc)} ({where})", file=sys.stderr)
    return 1


class _RunFailureFilter(logging.Filter):
    """Keeps Prefect's own report of a failed flow or task run (a traceback) off the console: the
    CLI prints its one line instead, and `--debug` lets it through."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            record.levelno >= logging.ERROR
            and record.name.startswith(("prefect.flow_runs", "prefect.task_runs"))
        )


RUN_FAILURE_FILTER = _RunFailureFilter()


def _command(words: list[str]) -> str | None:
    return next((w for w in words if w in COMMANDS), None)


def main(argv: Sequence[str] | None = None) -> int:
    quiet_prefect_defaults()
    words = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(_command(words)).parse_args(words)  # bad usage: one line, exit 2
    problem = settings_problem() or (args.usage_problem(args) if hasattr(args, "usage_problem") else None)
    if problem:
        print(f"msaic {args.command}: error: {problem}", file=sys.stderr)
        return 2
    debug = bool(getattr(args, "debug", False))
    console = [] if debug else list(logging.getLogger().handlers)
    for handler in console:
        handler.addFilter(RUN_FAILURE_FILTER)
    watchdog = Watchdog() if Path("/proc/self/stat").exists() else None
    try:
        api = start_temporary_api() if getattr(args, "prefect", True) else None
        try:
            if getattr(args, "warm_up", None) is not None:
                args.warm_up(args)  # a command's own start-up work, overlapping the API's boot
        finally:
            if api is not None:
                api.join()
        return int(args.func(args))
    except KeyboardInterrupt:
        print(f"msaic {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        return report_failure(args.command, words, exc, debug)
    finally:
        for handler in console:
            handler.removeFilter(RUN_FAILURE_FILTER)
        if watchdog is not None:
            watchdog.stop()


if __name__ == "__main__":
    sys.exit(main())
