"""A small HTTP JSON endpoint for a classifier, on the standard library only.

    POST /classify  {"texts": ["...", ...]}  ->  [{"label_id", "label_name", "probability", "uncertain",
                                                   "truncated"}, ...]
    GET  /health                             ->  {"status": "ok", "model": ..., "embedding_model": ..., "labels": n}
    GET  /labels                             ->  the taxonomy (stable ids, names, descriptions)

Binds 127.0.0.1 by default: there is no authentication, so exposing it is an explicit choice (--host 0.0.0.0).
Requests are bounded so one client cannot exhaust the process: the header block (MAX_HEAD_BYTES; http.server
already caps each line and the header count), the body (a Content-Length of 0..MAX_BODY_BYTES is required, else
the request is refused unread), texts per request (MAX_TEXTS), each text's length (cut to what the embedder reads,
``"truncated": true`` on its result), the time a connection may sit silent (IDLE_TIMEOUT_S) or take to send one
request (REQUEST_TIMEOUT_S), and the connections served at once (MAX_CONNECTIONS). Errors are one-line JSON.
"""

from __future__ import annotations

import http.client
import json
import logging
import socket
import sys
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from workflow.classify.embed import get_embedder
from workflow.classify.loader import ServingModel

log = logging.getLogger("tnt")

MAX_BODY_BYTES = 8 * 1024 * 1024
MAX_TEXTS = 2048
MAX_HEAD_BYTES = 64 * 1024  # all header lines together (the request line has its own 64 KiB cap)
IDLE_TIMEOUT_S = 20.0  # a connection silent this long (also between keep-alive requests) is dropped, its thread freed
REQUEST_TIMEOUT_S = 60.0  # the whole request (line, headers, body) must arrive within this, however it trickles
MAX_CONNECTIONS = 64  # connections served at once; more are answered 503 at once, without a thread
#: Characters of a text kept per token the embedder reads: far more than any real text needs for its first
#: max_tokens tokens, so the embedding is the one the embedder's own truncation gives, without tokenising megabytes.
CHARS_PER_TOKEN = 64
MAX_TEXT_CHARS = 32 * 1024  # per text, for embedders that do not say how many tokens they read (litellm:)


def text_limits(embedder: Any) -> tuple[int | None, int]:
    """(tokens the embedder reads per text or None, characters kept per text)."""
    tokens = getattr(embedder, "max_tokens", None)  # minilm-int8
    if tokens is None:  # st:/path: sentence-transformers truncates at the model's max_seq_length
        tokens = getattr(getattr(embedder, "model", None), "max_seq_length", None)
    if not isinstance(tokens, int) or tokens <= 0:
        return None, MAX_TEXT_CHARS
    return tokens, tokens * CHARS_PER_TOKEN


class ClassifyServer(ThreadingHTTPServer):
    """Holds the model and embedder; handler threads share them (embedding runs one batch at a time).

    Also caps connections served at once and gives each request a deadline: a handler `watch`es its connection
    while it waits for a request and `unwatch`es it once the request is in; `service_actions` (run by serve_forever
    twice a second) shuts down connections past their deadline, which wakes their threads.
    """

    daemon_threads = True

    def __init__(self, address: tuple[str, int], model: ServingModel, max_texts: int = MAX_TEXTS, *,
                 idle_timeout: float = IDLE_TIMEOUT_S, request_timeout: float = REQUEST_TIMEOUT_S,
                 max_connections: int = MAX_CONNECTIONS) -> None:
        self.model = model
        self.embedder = get_embedder(model.embedding_model)
        self.max_texts = max_texts
        self.max_tokens, self.max_chars = text_limits(self.embedder)
        self.embed_lock = threading.Lock()  # the ONNX session already uses every core; queue, don't oversubscribe
        self.idle_timeout, self.request_timeout = idle_timeout, request_timeout
        self.slots = threading.BoundedSemaphore(max_connections)
        self._waiting: dict[socket.socket, float] = {}
        self._waiting_lock = threading.Lock()
        super().__init__(address, _Handler)

    def classify(self, texts: list[str]) -> list[dict]:
        """One record per text; ``truncated`` says the embedder read only the start of that text."""
        cut = [t[: self.max_chars] for t in texts]
        with self.embed_lock:
            over = self._over_tokens(cut)
            X = self.embedder.embed(cut)
        records = self.model.records(X)
        for rec, text, o in zip(records, texts, over, strict=True):
            rec["truncated"] = o or len(text) > self.max_chars
        return records

    def _over_tokens(self, texts: list[str]) -> list[bool]:
        """Which texts the embedder's tokenizer cuts at max_tokens (minilm-int8); all False where it cannot say."""
        tokenizer = getattr(self.embedder, "tokenizer", None)
        if self.max_tokens is None or not hasattr(tokenizer, "encode_batch"):
            return [False] * len(texts)
        return [bool(e.overflowing) or len(e.ids) > self.max_tokens for e in tokenizer.encode_batch(texts)]

    # ------------------------------------------------------------------ connection limits

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
            body = b'{"error": "too many connections; retry in a moment"}'
            try:
                request.settimeout(1.0)
                request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                                b"Content-Length: %d\r\nRetry-After: 1\r\nConnection: close\r\n\r\n" % len(body) + body)
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
        self._drop_waiting(only_late=False)  # idle keep-alive connections: nothing in progress, do not wait
        super().server_close()


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


class _Handler(BaseHTTPRequestHandler):
    server: ClassifyServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # route access logs through logging, not stderr
        log.info("%s %s", self.address_string(), format % args)

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
            ok = super().parse_request()
        finally:
            self.rfile = raw
        if ok and (self.headers.get("Transfer-Encoding") is not None or
                   self.headers.get("Content-Length", "0").strip() != "0") and self.command != "POST":
            self.close_connection = True  # a body nobody reads must not be taken for the next request
        return ok

    def handle_expect_100(self) -> bool:
        """Refuse a bad or oversized body before the client sends it."""
        if self.command == "POST" and self.path == "/classify":
            length = _content_length(self.headers, MAX_BODY_BYTES)
            if isinstance(length, tuple):
                self.close_connection = True
                self._error(*length)
                _linger(self)
                return False
        return super().handle_expect_100()

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own refusals (bad request line, too many or too large headers, unknown method), as JSON."""
        self.close_connection = True
        try:
            phrase = HTTPStatus(code).phrase
        except ValueError:
            phrase = "error"
        message = explain or message or phrase  # http.server explains only 431s: "got more than 100 headers"...
        self._error(code, message)
        _linger(self)

    def _send(self, status: int, payload: Any) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _error(self, status: int, message: str) -> None:
        self._send(status, {"error": message})

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        if not self.server.unwatch(self.connection):  # past the request deadline: already shut
            self.close_connection = True
            return
        m = self.server.model
        if self.path == "/health":
            self._send(HTTPStatus.OK, {"status": "ok", "model": m.version, "embedding_model": m.embedding_model,
                                       "labels": len(m.labels)})
        elif self.path == "/labels":
            self._send(HTTPStatus.OK, m.taxonomy)
        else:
            self._error(HTTPStatus.NOT_FOUND, f"no route GET {self.path}; use POST /classify or GET /health")

    def do_POST(self) -> None:  # noqa: N802
        if self.path != "/classify":
            self.close_connection = True  # its body stays unread
            self._error(HTTPStatus.NOT_FOUND, f"no route POST {self.path}; use POST /classify")
            _linger(self)
            return
        length = _content_length(self.headers, MAX_BODY_BYTES)
        if isinstance(length, tuple):
            self.close_connection = True
            self._error(*length)
            _linger(self)
            return
        body = self.rfile.read(length)
        if not self.server.unwatch(self.connection) or len(body) < length:  # too late, or the client went away
            self.close_connection = True
            return
        texts = _parse(body, self.server.max_texts)
        if isinstance(texts, str):
            self._error(HTTPStatus.BAD_REQUEST, texts)
            return
        try:
            self._send(HTTPStatus.OK, self.server.classify(texts) if texts else [])
        except Exception as exc:  # keep serving; the client gets a one-line reason
            log.exception("classify failed")
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"classification failed: {type(exc).__name__}")


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
        return HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"body must be 0..{cap} bytes"
    return int(value)


def _linger(handler: BaseHTTPRequestHandler) -> None:
    """After answering with a body left unread: end our side, then drain a little, so the client reads the answer
    instead of a connection reset."""
    try:
        handler.wfile.flush()
        handler.connection.shutdown(socket.SHUT_WR)
        handler.connection.settimeout(0.5)
        deadline, left = time.monotonic() + 1.0, 1024 * 1024
        while left > 0 and time.monotonic() < deadline:
            chunk = handler.connection.recv(min(left, 65536))
            if not chunk:
                break
            left -= len(chunk)
    except OSError:
        pass


def _parse(body: bytes, max_texts: int) -> list[str] | str:
    """The request's texts, or an error message."""
    try:
        payload = json.loads(body or b"null")
    except (ValueError, UnicodeDecodeError):
        return 'body must be JSON: {"texts": ["...", ...]}'
    texts = payload.get("texts") if isinstance(payload, dict) else None
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        return 'body must be {"texts": [list of strings]}'
    if len(texts) > max_texts:
        return f"at most {max_texts} texts per request (got {len(texts)}); split the request"
    return texts


def make_server(model: ServingModel, host: str = "127.0.0.1", port: int = 8080,
                max_texts: int = MAX_TEXTS, *, idle_timeout: float = IDLE_TIMEOUT_S,
                request_timeout: float = REQUEST_TIMEOUT_S, max_connections: int = MAX_CONNECTIONS) -> ClassifyServer:
    """A bound server (port 0 picks a free port: read ``server.server_address``); call ``serve_forever``."""
    return ClassifyServer((host, port), model, max_texts, idle_timeout=idle_timeout,
                          request_timeout=request_timeout, max_connections=max_connections)


__all__ = ["ClassifyServer", "MAX_TEXTS", "make_server"]
