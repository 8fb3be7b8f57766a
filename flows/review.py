"""`msaic review --out OUT [--store STORE] [--port 8765] [--reviewer NAME]`: the clinician's review
of a scored archive in the browser.

A small web server on 127.0.0.1 (standard library, one thread per request) serves the worklist page
(`tasks.review.worklist`), the ECG of a record (`tasks.review.ecg_render`: rendered on first request from the
archive named in OUT/score_run.json, decoded and harmonized as scoring does, then cached as
OUT/ecg/<record_id>.svg; with a store that holds features, with the median beats), and records
each decision (`tasks.review.adjudication`) in STORE/adjudications/ (OUT/adjudications/ without
--store) under the store lock, the reviewer as a keyed hash of the name. OUT, the store and the
archive may each be a path or an s3:// location (`tasks.store.location`).

The server answers only requests addressed to 127.0.0.1 or localhost (a page of another site cannot
reach it through a name it controls), and a decision only from the page itself (a JSON POST with
the page's own header, which a cross-site form cannot send). It runs without Prefect: it is a
session with a person, not a batch run, and starts in a second.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import threading
from datetime import datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

import pyarrow.dataset as ds

from flows.args import existing_store
from tasks import store as st
from tasks.ingest.errors import RecordError
from tasks.review import (
    AdjudicationError,
    CallInfo,
    Decision,
    StoreBusy,
    adjudication_row,
    append_decisions,
    decisions_by_row,
    latest_decisions,
    page_data,
    render_page,
    render_record,
    reviewer_key,
    worklist,
)
from tasks.scoring import RUN_FILE
from tasks.settings import Settings
from tasks.store.location import Location, location
from tasks.store.pseudonym import KEY_FILE, PseudonymKeyError, load_key

DEFAULT_PORT = 8765
ECG_DIR = "ecg"
MAX_BODY = 4096  # bytes of one decision request
PAGE_CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'"
)
SVG_CSP = "default-src 'none'; style-src 'unsafe-inline'"


def store_key(store: Location, settings: Settings) -> bytes:
    """The store's pseudonym key. A store that holds tables but no key file was written with
    MSAIC_PSEUDONYM_KEY: without it, a new key file would give its next ingest other record ids."""
    configured = settings.pseudonym_key.get_secret_value() if settings.pseudonym_key else None
    written = any(st.dataset(store, t) is not None for t in ("records", "scores"))
    if configured is None and written and not (store / KEY_FILE).exists():
        raise PseudonymKeyError(
            f"{store} holds records but no {KEY_FILE}: it was written with MSAIC_PSEUDONYM_KEY; set it again"
        )
    return load_key(store, configured)


class Review:
    """What the server serves: OUT's worklist, its records by id, and where decisions go."""

    def __init__(self, out: Location, store: Location | None, reviewer: str, settings: Settings) -> None:
        self.out = out.resolve()
        self.store = (store or out).resolve()
        self.settings = settings
        run_file = self.out / RUN_FILE
        if not run_file.is_file():
            raise FileNotFoundError(f"{out} holds no scoring run ({RUN_FILE}): run `msaic score` first")
        self.archive = location(json.loads(run_file.read_text())["archive"])
        self.frame = worklist(self.out, store.resolve() if store else None)
        self.index = {rid: i for i, rid in enumerate(self.frame["record_id"])}
        self.reviewer = reviewer_key(store_key(self.store, settings), reviewer)
        self.features = store is not None and st.dataset(self.store, "features") is not None
        self.page = render_page(page_data(self.frame, self.out, {}, serving=True)).encode()
        self._append = threading.Lock()  # one decision at a time from this server

    def row(self, record_id: str) -> dict[str, Any]:
        """A worklist row by the scores' record id (KeyError when it is not on the worklist)."""
        return self.frame.iloc[self.index[record_id]].to_dict()

    def decisions(self) -> dict[str, list[str | None]]:
        return decisions_by_row(self.frame, latest_decisions(self.store))

    def _features_row(self, row: dict[str, Any]) -> dict[str, Any] | None:
        """The record's features/ row in the store ({} when the store has none for it)."""
        if not self.features:
            return None
        if row["store_record_id"] is None:
            return {}
        found = st.read_table(self.store, "features", filter=ds.field("record_id") == row["store_record_id"])
        rows = [r for r in found.to_pylist() if r["skip_reason"] is None]
        return rows[0] if rows else {}

    def ecg(self, record_id: str) -> bytes:
        """The record's SVG: from OUT/ecg/ when it was rendered with what is available now (with or
        without the feature store), else rendered and cached (raises RecordError, KeyError)."""
        row = self.row(record_id)
        variant = f'data-features="{"with" if self.features else "without"}"'.encode()
        path = self.out / ECG_DIR / f"{record_id}.svg"
        if path.is_file():
            data = path.read_bytes()
            if variant in data[:2000]:
                return data
        features = self._features_row(row)
        svg = render_record(
            self.archive, CallInfo.from_scores(row), row["content_sha256"], self.settings, features
        )
        data = svg.replace("<svg ", f"<svg {variant.decode()} ", 1).encode()
        path.parent.mkdir(exist_ok=True)
        st.write_atomic(path, data)
        return data

    def adjudicate(self, record_id: str, decision: str, territory: str | None) -> datetime:
        """Append one decision on a worklist record; returns when it was recorded."""
        row = self.row(record_id)
        target = row["store_record_id"] or record_id
        choice = Decision(target, row["source_path"], row["site"], decision, territory, row["model_id"])
        new = adjudication_row(choice, self.reviewer)
        with self._append:
            append_decisions(self.store, [new])
        return new["decided_at"]


class Handler(BaseHTTPRequestHandler):
    """The review server's routes: /, /ecg/<record_id>.svg, /api/decisions, POST /api/adjudications."""

    review: Review  # set on the subclass made by `serve`
    server_version = "msaic-review"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: requests are not logged (paths name records); failures are reported apart."""

    def _local(self) -> bool:
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0]
        return host in ("127.0.0.1", "localhost")

    def _send(self, status: HTTPStatus, body: bytes, kind: str, csp: str | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        if csp:
            self.send_header("Content-Security-Policy", csp)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: HTTPStatus, payload: Any) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json")

    def do_GET(self) -> None:
        if not self._local():
            return self._json(HTTPStatus.FORBIDDEN, {"error": "address the review server as 127.0.0.1"})
        path = unquote(urlsplit(self.path).path)
        if path in ("/", "/index.html", "/worklist.html"):
            return self._send(HTTPStatus.OK, self.review.page, "text/html; charset=utf-8", PAGE_CSP)
        if path == "/api/decisions":
            return self._json(HTTPStatus.OK, self.review.decisions())
        if path.startswith(f"/{ECG_DIR}/") and path.endswith(".svg"):
            return self._ecg(path.removeprefix(f"/{ECG_DIR}/").removesuffix(".svg"))
        return self._json(HTTPStatus.NOT_FOUND, {"error": "not found"})

    def _ecg(self, record_id: str) -> None:
        if record_id not in self.review.index:
            return self._json(HTTPStatus.NOT_FOUND, {"error": "no such record on the worklist"})
        try:
            svg = self.review.ecg(record_id)
        except Exception as exc:  # a record that cannot be read must not end the session
            why = f"{exc.reason}: {exc}" if isinstance(exc, RecordError) else f"{type(exc).__name__}: {exc}"
            print(f"msaic review: ECG of record {record_id} not rendered ({why})", file=sys.stderr)
            return self._json(HTTPStatus.UNPROCESSABLE_ENTITY, {"error": why})
        return self._send(HTTPStatus.OK, svg, "image/svg+xml", SVG_CSP)

    def do_POST(self) -> None:
        if not self._local() or self.headers.get("X-MSAIC-Review") != "1":
            return self._json(HTTPStatus.FORBIDDEN, {"error": "decisions are taken on the review page"})
        if urlsplit(self.path).path != "/api/adjudications":
            return self._json(HTTPStatus.NOT_FOUND, {"error": "not found"})
        length = int(self.headers.get("Content-Length") or 0)
        if (
            not self.headers.get("Content-Type", "").startswith("application/json")
            or not 0 < length <= MAX_BODY
        ):
            return self._json(HTTPStatus.BAD_REQUEST, {"error": f"a JSON body of at most {MAX_BODY} bytes"})
        try:
            body = json.loads(self.rfile.read(length))
            at = self.review.adjudicate(str(body["record_id"]), str(body["decision"]), body.get("territory"))
        except (ValueError, KeyError, TypeError) as exc:  # AdjudicationError is a ValueError
            known = isinstance(exc, AdjudicationError)
            message = str(exc) if known else "a record_id of the worklist and a decision are needed"
            return self._json(HTTPStatus.BAD_REQUEST, {"error": message})
        except StoreBusy as exc:
            return self._json(HTTPStatus.SERVICE_UNAVAILABLE, {"error": str(exc)})
        return self._json(HTTPStatus.OK, {"decided_at": at.isoformat(timespec="seconds")})


def serve(review: Review, port: int) -> ThreadingHTTPServer:
    """Start the server on 127.0.0.1:`port` (0: any free port) in a daemon thread; returns it
    (its `server_address` holds the port, `shutdown()` stops it)."""
    handler = type("ReviewHandler", (Handler,), {"review": review})
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="msaic-review", daemon=True).start()
    return server


def port_number(value: str) -> int:
    """A TCP port, 0 for any free one."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a port number") from None
    if not 0 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port number (0-65535)")
    return number


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("review", help="review the worklist of a scored archive in the browser (local server)")
    p.add_argument(
        "--out", type=existing_store, required=True, help="the scored OUT directory (or s3://bucket/prefix)"
    )
    p.add_argument(
        "--store", type=existing_store, help="store that gets the adjudications (default: OUT); its features "
        "add the median beats to the ECG (a directory or s3://…)",
    )  # fmt: skip
    p.add_argument(
        "--port", type=port_number, default=DEFAULT_PORT, help=f"port on 127.0.0.1 ({DEFAULT_PORT})"
    )
    p.add_argument(
        "--reviewer", default=getpass.getuser(), help="your name, stored as a keyed hash (default: login)"
    )
    p.set_defaults(func=run, prefect=False)


def run(args: argparse.Namespace) -> int:
    review = Review(args.out, args.store, args.reviewer, Settings())
    try:
        server = serve(review, args.port)
    except OSError as exc:
        raise OSError(f"cannot serve on 127.0.0.1:{args.port}: {exc.strerror}") from exc
    port = server.server_address[1]
    print(
        f"msaic review: {len(review.frame)} flagged records of {review.out}\n"
        f"  open http://127.0.0.1:{port}/\n"
        f"  decisions go to {review.store / 'adjudications'} (reviewer {review.reviewer[:8]}…)\n"
        "  Ctrl-C stops the server",
        flush=True,
    )
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.shutdown()
        print("msaic review: stopped")
    return 0
