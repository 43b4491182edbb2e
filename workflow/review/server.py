"""The review web app: stdlib http.server, server-rendered HTML (Jinja2, autoescaped), no JavaScript.

Document text is untrusted, so: every value is escaped by the template engine, and the Content-Security-Policy
forbids scripts outright (defence in depth). State changes are POST-only, carry a per-server random CSRF token and
must come from this server's own origin; the Host header is checked on every request (DNS rebinding). The DuckDB
file is opened per request, so `tnt resume` can run in another terminal between clicks.

Requests are bounded (workflow.httplimits, shared with `tnt serve`): the header block, the body (a Content-Length
is required and must be 0..MAX_BODY, or the request is refused unread), the time a connection may sit silent
(IDLE_TIMEOUT_S) or take to send one request (REQUEST_TIMEOUT_S), and the number of connections served at once
(MAX_CONNECTIONS); a malformed request gets a short 4xx page, never a traceback.
"""

from __future__ import annotations

import hmac
import re
import secrets
import threading
from collections.abc import Callable
from html import escape
from http import HTTPStatus
from http.server import ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from jinja2 import Environment, FileSystemLoader, select_autoescape

from workflow.httplimits import IDLE_TIMEOUT_S, REQUEST_TIMEOUT_S, LimitedHandler, LimitedServer
from workflow.review import edits
from workflow.review.edits import ReviewError
from workflow.review.insight import InsightCache
from workflow.review.view import EmbedFn, QueueCache, build_view, default_embed
from workflow.store import Store, StoreError

HERE = Path(__file__).parent
MAX_BODY = 64 * 1024
MOVE_CHOICES = 12  # labels offered when moving an example, nearest first, in a taxonomy larger than this
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
        self.pictures = InsightCache()
        self.flash: tuple[str, str] | None = None  # (kind, text), shown once
        self.lock = threading.Lock()  # one request at a time touches the database
        self.env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True))
        self.css = (HERE / "static" / "review.css").read_text()
        self.allowed_hosts: set[str] = set()

    def _embedder(self, store: Store) -> EmbedFn:
        if self.embed is None:
            self.embed = default_embed(store.run(self.run_id).config.embedding_model)
        return self.embed

    def render(self) -> str:
        with self.lock, Store(self.db_path) as store:
            view = build_view(store, self.run_id, self._embedder(store), self.cache, self.pictures)
        flash, self.flash = self.flash, None
        return self.env.get_template("page.html").render(
            **view, csrf=self.csrf, css=self.css, flash=flash, reviewer=self.reviewer, move_choices=MOVE_CHOICES
        )

    def apply(self, form: dict[str, str]) -> str:
        """Run one edit from a form; returns the page anchor to go back to."""
        action = form.get("action", "")
        handlers: dict[str, Callable[[Store], object]] = {
            "rename": lambda s: edits.rename(s, self.run_id, form["label_id"], form.get("name", ""),
                                             reviewer=self.reviewer),
            "describe": lambda s: edits.describe(s, self.run_id, form["label_id"], form.get("description", ""),
                                                 reviewer=self.reviewer),
            "merge": lambda s: edits.merge(s, self.run_id, form["label_id"], form.get("target", ""),
                                           reviewer=self.reviewer),
            "split": lambda s: edits.split(
                s, self.run_id, form["label_id"],
                [(form.get("name1", ""), form.get("description1", "")),
                 (form.get("name2", ""), form.get("description2", ""))],
                reviewer=self.reviewer),
            "add": lambda s: edits.add(s, self.run_id, form.get("name", ""), form.get("description", ""),
                                       reviewer=self.reviewer),
            "delete": lambda s: edits.delete(s, self.run_id, form["label_id"], reviewer=self.reviewer),
            "move": lambda s: edits.move(s, self.run_id, form["label_id"], form.get("parent_id", ""),
                                         reviewer=self.reviewer),
            "correct": lambda s: edits.correct(s, self.run_id, form["doc_id"], form.get("label_id", ""),
                                               reviewer=self.reviewer),
        }
        if action not in handlers:
            raise ReviewError(f"unknown action '{action}'")
        try:
            with self.lock, Store(self.db_path) as store:
                handlers[action](store)
        except KeyError as exc:
            raise ReviewError(f"missing form field {exc}") from None
        self.flash = ("ok", _DONE.get(action, "saved"))
        anchor = {"correct": "#queue", "add": "#taxonomy"}.get(action, f"#label-{form.get('label_id', '')}")
        if action == "correct" and form.get("from"):  # moved from a label's examples: back to that label
            anchor = f"#label-{form['from']}"
        return anchor if re.fullmatch(r"#[\w-]*", anchor) else "#taxonomy"  # ids only: it goes into a header


_DONE = {"rename": "Label renamed.", "describe": "Description saved.", "merge": "Labels merged.",
         "split": "Label split: its documents will be re-labeled on resume.", "add": "Label added.",
         "delete": "Label deleted: its documents will be re-labeled on resume.", "correct": "Label corrected.",
         "move": "Label moved to another parent."}


class GuardedServer(LimitedServer):
    """The review page's server: its 503 beyond the connection cap is a page like the others."""

    busy_body = b"<!doctype html><title>busy</title><p>too many connections; retry in a moment</p>"
    busy_type = "text/html; charset=utf-8"


class Handler(LimitedHandler):
    app: ReviewApp
    server: GuardedServer
    server_version = "tnt-review"
    sys_version = ""
    linger_bytes = MAX_BODY
    _body_read = True  # False while a POST body sits unread on the socket

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - keep the terminal quiet
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

    def answer_error(self, status: int, why: str) -> None:
        self._send(status, f"<!doctype html><title>refused</title><p>{escape(why)}</p>")

    def _refuse(self, status: int, why: str) -> None:
        if self._body_read:
            self.answer_error(status, why)
        else:
            self.refuse_unread(status, why)

    def _host_ok(self) -> bool:
        return self.headers.get("Host", "") in self.app.allowed_hosts

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        if not self.request_in():
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
        body = self.read_body(MAX_BODY)  # the request is in: what follows may wait on the database
        if body is None:
            return None
        self._body_read = True
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
