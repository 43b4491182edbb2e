"""The review web app: stdlib http.server, server-rendered HTML (Jinja2, autoescaped), no JavaScript.

Document text is untrusted, so: every value is escaped by the template engine, and the Content-Security-Policy
forbids scripts outright (defence in depth). State changes are POST-only, carry a per-server random CSRF token and
must come from this server's own origin; the Host header is checked on every request (DNS rebinding). The DuckDB
file is opened per request, so `tnt resume` can run in another terminal between clicks.

Requests are bounded: the header block (MAX_HEAD_BYTES; http.server already caps each line and the header count),
the body (a Content-Length is required and must be 0..MAX_BODY, or the request is refused unread), the time a
connection may sit silent (IDLE_TIMEOUT_S) or take to send one request (REQUEST_TIMEOUT_S), and the number of
connections served at once (MAX_CONNECTIONS); a malformed request gets a short 4xx page, never a traceback.
"""

from __future__ import annotations

import hmac
import http.client
import logging
import secrets
import socket
import sys
import threading
import time
from collections.abc import Callable
from html import escape
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from jinja2 import Environment, FileSystemLoader, select_autoescape

from workflow.review import edits
from workflow.review.edits import ReviewError
from workflow.review.view import EmbedFn, QueueCache, build_view, default_embed
from workflow.store import Store, StoreError

log = logging.getLogger("tnt")

HERE = Path(__file__).parent
MAX_BODY = 64 * 1024
MAX_HEAD_BYTES = 64 * 1024  # all header lines together (the request line has its own 64 KiB cap)
IDLE_TIMEOUT_S = 20.0  # a connection silent this long is dropped and its thread freed
REQUEST_TIMEOUT_S = 60.0  # the whole request (line, headers, body) must arrive within this, however it trickles
MAX_CONNECTIONS = 32  # connections served at once; more are answered 503 at once, without a thread
CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")


class ReviewApp:
    """State of one review server: the run, who edits, the CSRF token, a flash message and the queue cache."""

    def __init__(self, db_path: str, run_id: str, reviewer: str, embed: EmbedFn | None = None):
        self.db_path, self.run_id, self.reviewer = db_path, run_id, reviewer
        self.csrf = secrets.token_urlsafe(32)
        self.embed = embed
        self.cache = QueueCache()
        self.flash: tuple[str, str] | None = None  # (kind, text), shown once
        self.lock = threading.Lock()  # one request at a time touches the database
        self.env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True))
        self.css = (HERE / "static" / "review.css").read_text()
        self.allowed_hosts: set[str] = set()

    def _embedder(self, store: Store) -> EmbedFn:
        if self.embed is None:
            self.embed = default_embed(store.run(self.run_id)["config"].get("embedding_model", "minilm-int8"))
        return self.embed

    def render(self) -> str:
        with self.lock, Store(self.db_path) as store:
            view = build_view(store, self.run_id, self._embedder(store), self.cache)
        flash, self.flash = self.flash, None
        return self.env.get_template("page.html").render(
            **view, csrf=self.csrf, css=self.css, flash=flash, reviewer=self.reviewer
        )

    def apply(self, form: dict[str, str]) -> str:
        """Run one edit from a form; returns the page anchor to go back to."""
        action = form.get("action", "")
        handlers: dict[str, Callable[[Store], object]] = {
            "rename": lambda s: edits.rename(s, self.run_id, form["label_id"], form.get("name", ""), reviewer=self.reviewer),
            "describe": lambda s: edits.describe(s, self.run_id, form["label_id"], form.get("description", ""),
                                                 reviewer=self.reviewer),
            "merge": lambda s: edits.merge(s, self.run_id, form["label_id"], form.get("target", ""), reviewer=self.reviewer),
            "split": lambda s: edits.split(
                s, self.run_id, form["label_id"],
                [(form.get("name1", ""), form.get("description1", "")), (form.get("name2", ""), form.get("description2", ""))],
                reviewer=self.reviewer),
            "add": lambda s: edits.add(s, self.run_id, form.get("name", ""), form.get("description", ""), reviewer=self.reviewer),
            "delete": lambda s: edits.delete(s, self.run_id, form["label_id"], reviewer=self.reviewer),
            "move": lambda s: edits.move(s, self.run_id, form["label_id"], form.get("parent_id", ""), reviewer=self.reviewer),
            "correct": lambda s: edits.correct(s, self.run_id, form["doc_id"], form.get("label_id", ""), reviewer=self.reviewer),
        }
        if action not in handlers:
            raise ReviewError(f"unknown action '{action}'")
        try:
            with self.lock, Store(self.db_path) as store:
                handlers[action](store)
        except KeyError as exc:
            raise ReviewError(f"missing form field {exc}") from None
        self.flash = ("ok", _DONE.get(action, "saved"))
        return {"correct": "#queue", "add": "#taxonomy"}.get(action, f"#label-{form.get('label_id', '')}")


_DONE = {"rename": "Label renamed.", "describe": "Description saved.", "merge": "Labels merged.",
         "split": "Label split: its documents will be re-labeled on resume.", "add": "Label added.",
         "delete": "Label deleted: its documents will be re-labeled on resume.", "correct": "Label corrected.",
         "move": "Label moved to another parent."}


class _HeadTooLarge(http.client.HTTPException):
    """Raised inside http.server's header parsing, which answers it with 431."""


class _HeadReader:
    """The connection's reader while http.server parses headers: one byte budget for all header lines together."""

    def __init__(self, raw: Any, budget: int) -> None:
        self.raw, self.budget, self.left = raw, budget, budget

    def readline(self, limit: int = -1) -> bytes:
        line = self.raw.readline(self.left + 1 if limit < 0 else min(limit, self.left + 1))
        self.left -= len(line)
        if self.left < 0:
            raise _HeadTooLarge(f"request headers larger than {self.budget} bytes")
        return line


class GuardedServer(ThreadingHTTPServer):
    """ThreadingHTTPServer with a cap on connections served at once and a deadline for receiving each request.

    A handler `watch`es its connection while it waits for a request and `unwatch`es it once the request is in;
    `service_actions` (run by serve_forever twice a second) shuts down connections past their deadline, which
    wakes their threads. The handler's socket timeout (`idle_timeout`) catches connections that send nothing.
    """

    daemon_threads = True
    busy_body = b"<!doctype html><title>busy</title><p>too many connections; retry in a moment</p>"
    busy_type = "text/html; charset=utf-8"

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], *,
                 idle_timeout: float = IDLE_TIMEOUT_S, request_timeout: float = REQUEST_TIMEOUT_S,
                 max_connections: int = MAX_CONNECTIONS) -> None:
        self.idle_timeout, self.request_timeout = idle_timeout, request_timeout
        self.slots = threading.BoundedSemaphore(max_connections)
        self._waiting: dict[socket.socket, float] = {}
        self._waiting_lock = threading.Lock()
        super().__init__(address, handler)

    def watch(self, conn: socket.socket) -> None:
        with self._waiting_lock:
            self._waiting[conn] = time.monotonic() + self.request_timeout

    def unwatch(self, conn: socket.socket) -> bool:
        """Stop the clock on `conn`; False if it already ran out (the connection is shut: do not answer)."""
        with self._waiting_lock:
            return self._waiting.pop(conn, None) is not None

    def _drop_waiting(self, only_late: bool) -> None:
        now = time.monotonic()
        with self._waiting_lock:  # under the lock: a watched socket is not closed yet (its handler unwatches first)
            for conn in [c for c, t in self._waiting.items() if not only_late or t < now]:
                del self._waiting[conn]
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def service_actions(self) -> None:
        super().service_actions()
        self._drop_waiting(only_late=True)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.slots.acquire(blocking=False):
            try:
                request.settimeout(1.0)
                request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: " + self.busy_type.encode()
                                + b"\r\nContent-Length: %d\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"
                                % len(self.busy_body) + self.busy_body)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """One log line, never a traceback on the terminal: a client that goes away is not the server's fault."""
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):
            log.debug("connection from %s ended: %s", client_address[0], exc)
        else:
            log.error("request from %s failed: %s: %s", client_address[0], type(exc).__name__, exc)

    def server_close(self) -> None:
        self._drop_waiting(only_late=False)  # idle connections: nothing in progress, do not wait for them
        super().server_close()


class Handler(BaseHTTPRequestHandler):
    app: ReviewApp
    server: GuardedServer
    server_version = "tnt-review"
    sys_version = ""
    _body_read = True  # False while a POST body sits unread on the socket

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - keep the terminal quiet
        pass

    def setup(self) -> None:
        self.timeout = self.server.idle_timeout  # socket timeout on every read and write of this connection
        super().setup()

    def handle_one_request(self) -> None:
        self.server.watch(self.connection)
        try:
            super().handle_one_request()
        finally:
            self.server.unwatch(self.connection)

    def parse_request(self) -> bool:
        raw, self.rfile = self.rfile, _HeadReader(self.rfile, MAX_HEAD_BYTES)
        try:
            return super().parse_request()
        finally:
            self.rfile = raw

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own refusals (bad request line, too many or too large headers, unknown method)."""
        self.close_connection, self._body_read = True, False  # the rest of the request is left unread
        try:
            phrase = HTTPStatus(code).phrase
        except ValueError:
            phrase = "error"
        message = explain or message or phrase  # http.server explains only 431s: "got more than 100 headers"...
        self._refuse(code, message)

    def _body(self) -> bytes | None:
        """The POST body, read only when its Content-Length is valid and within MAX_BODY; else refuse (None)."""
        self._body_read = False
        length = _content_length(self.headers, MAX_BODY)
        if isinstance(length, tuple):
            self._refuse(*length)
            return None
        data = self.rfile.read(length)
        self._body_read = True
        # the request is in (what follows may wait on the database), unless it came too late or only in part:
        # never act on half a form
        if not self.server.unwatch(self.connection) or len(data) < length:
            self.close_connection = True
            return None
        return data

    def _linger(self) -> None:
        """After refusing a body unread: end our side, then drain a little, so the client reads the refusal
        instead of a connection reset."""
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_WR)
            self.connection.settimeout(0.5)
            deadline, left = time.monotonic() + 1.0, MAX_BODY
            while left > 0 and time.monotonic() < deadline:
                chunk = self.connection.recv(min(left, 65536))
                if not chunk:
                    break
                left -= len(chunk)
        except OSError:
            pass

    def _send(self, status: int, body: str = "", headers: dict[str, str] | None = None) -> None:
        data = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("X-Frame-Options", "DENY")
        self.send_header("Referrer-Policy", "same-origin")
        self.send_header("Cache-Control", "no-store")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _refuse(self, status: int, why: str) -> None:
        self._send(status, f"<!doctype html><title>refused</title><p>{escape(why)}</p>")
        if not self._body_read:
            self.close_connection = True
            self._linger()

    def _host_ok(self) -> bool:
        return self.headers.get("Host", "") in self.app.allowed_hosts

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        if not self.server.unwatch(self.connection):  # past the request deadline: already shut
            self.close_connection = True
            return None
        if not self._host_ok():
            return self._refuse(HTTPStatus.MISDIRECTED_REQUEST, "unexpected Host header")
        if urlsplit(self.path).path != "/":
            return self._refuse(HTTPStatus.NOT_FOUND, "not found")
        try:
            self._send(HTTPStatus.OK, self.app.render())
        except StoreError as exc:
            self._send(HTTPStatus.SERVICE_UNAVAILABLE, _busy_page(str(exc)))

    def do_POST(self) -> None:  # noqa: N802
        self._body_read = False
        if not self._host_ok():
            return self._refuse(HTTPStatus.MISDIRECTED_REQUEST, "unexpected Host header")
        origin = self.headers.get("Origin")
        if origin is not None and urlsplit(origin).netloc not in self.app.allowed_hosts:
            return self._refuse(HTTPStatus.FORBIDDEN, "cross-origin request refused")
        if not self.headers.get("Content-Type", "").startswith("application/x-www-form-urlencoded"):
            return self._refuse(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "expected a form post")
        body = self._body()
        if body is None:
            return None
        raw = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
        form = {k: v[0] for k, v in raw.items()}
        if not hmac.compare_digest(form.get("csrf", ""), self.app.csrf):
            return self._refuse(HTTPStatus.FORBIDDEN, "missing or wrong CSRF token: reload the page")
        if urlsplit(self.path).path != "/edit":
            return self._refuse(HTTPStatus.NOT_FOUND, "not found")
        anchor = "#taxonomy"
        try:
            anchor = self.app.apply(form)
        except ReviewError as exc:
            self.app.flash = ("error", str(exc))
        except StoreError as exc:
            return self._send(HTTPStatus.SERVICE_UNAVAILABLE, _busy_page(str(exc)))
        self._send(HTTPStatus.SEE_OTHER, "", {"Location": "/" + anchor})


def _content_length(headers: Any, cap: int) -> int | tuple[HTTPStatus, str]:
    """The request's Content-Length if it is one non-negative integer no larger than `cap`, else (status, why)."""
    if headers.get("Transfer-Encoding") is not None:
        return HTTPStatus.LENGTH_REQUIRED, "chunked bodies are not accepted: send a Content-Length"
    values = {v.strip() for v in headers.get_all("Content-Length") or []}
    if not values:
        return HTTPStatus.LENGTH_REQUIRED, "a Content-Length header is required"
    value = values.pop()
    if values or not (value.isascii() and value.isdigit()):
        return HTTPStatus.BAD_REQUEST, "Content-Length must be one non-negative integer"
    if len(value) > 18 or int(value) > cap:
        return HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"request body larger than {cap} bytes"
    return int(value)


def _busy_page(message: str) -> str:
    return (f"<!doctype html><meta charset=utf-8><title>busy</title><p>{escape(message)}</p>"
            "<p>Reload in a moment.</p>")


def make_server(app: ReviewApp, host: str = "127.0.0.1", port: int = 0, *, idle_timeout: float = IDLE_TIMEOUT_S,
                request_timeout: float = REQUEST_TIMEOUT_S, max_connections: int = MAX_CONNECTIONS) -> GuardedServer:
    """A bound (not yet serving) server; port 0 picks a free port. Call serve_forever() to run it."""
    handler = type("BoundHandler", (Handler,), {"app": app})
    server = GuardedServer((host, port), handler, idle_timeout=idle_timeout, request_timeout=request_timeout,
                           max_connections=max_connections)
    real = server.server_address[1]
    app.allowed_hosts = {f"{h}:{real}" for h in ("127.0.0.1", "localhost", "[::1]", host)}
    return server


def url_of(server: ThreadingHTTPServer) -> str:
    host, port = server.server_address[:2]
    return f"http://{host if host not in ('0.0.0.0', '') else '127.0.0.1'}:{port}/"
