"""Request limits of the review page's stdlib web server (`tnt serve`, on uvicorn, reuses the constants and
`content_length`: workflow/classify/serve.py), so one client cannot exhaust it: a byte cap on the header block
(http.server already caps each line and the header count), Content-Length checks before any body is read, an idle
and a per-request deadline, and a cap on connections served at once.

Standard library only: both servers import this at start-up, so it must stay cheap.
"""

from __future__ import annotations

import http.client
import logging
import socket
import sys
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger("tnt")

MAX_HEAD_BYTES = 64 * 1024  # all header lines together (the request line has its own 64 KiB cap)
IDLE_TIMEOUT_S = 20.0  # a connection silent this long (also between keep-alive requests) is dropped, its thread freed
REQUEST_TIMEOUT_S = 60.0  # the whole request (line, headers, body) must arrive within this, however it trickles
LINGER_BYTES = 1024 * 1024  # at most this much of an unread body is drained after refusing it
TOO_LARGE = "request body larger than {cap} bytes"  # the 413's message; a server may word it its own way


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


def content_length(headers: Any, cap: int, too_large: str = TOO_LARGE) -> int | tuple[HTTPStatus, str]:
    """The request's Content-Length if it is one non-negative integer no larger than `cap`, else (status, why):
    a body is read only when its size is known and bounded."""
    if headers.get("Transfer-Encoding") is not None:
        return HTTPStatus.LENGTH_REQUIRED, "chunked bodies are not accepted: send a Content-Length"
    values = {v.strip() for v in headers.get_all("Content-Length") or []}
    if not values:
        return HTTPStatus.LENGTH_REQUIRED, "a Content-Length header is required"
    value = values.pop()
    if values or not (value.isascii() and value.isdigit()):
        return HTTPStatus.BAD_REQUEST, "Content-Length must be one non-negative integer"
    if len(value) > 18 or int(value) > cap:
        return HTTPStatus.REQUEST_ENTITY_TOO_LARGE, too_large.format(cap=cap)
    return int(value)


class LimitedServer(ThreadingHTTPServer):
    """ThreadingHTTPServer with a cap on connections served at once and a deadline for receiving each request.

    A handler `watch`es its connection while it waits for a request and `unwatch`es it once the request is in;
    `service_actions` (run by serve_forever twice a second) shuts down connections past their deadline, which
    wakes their threads. The handler's socket timeout (`idle_timeout`) catches connections that send nothing.
    """

    daemon_threads = True
    busy_body = b"too many connections; retry in a moment"  # the 503 beyond the cap, sent without a thread
    busy_type = "text/plain; charset=utf-8"

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], *,
                 idle_timeout: float = IDLE_TIMEOUT_S, request_timeout: float = REQUEST_TIMEOUT_S,
                 max_connections: int) -> None:
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


class LimitedHandler(BaseHTTPRequestHandler):
    """The handler side of LimitedServer's limits; a subclass says how an error looks (`answer_error`)."""

    server: LimitedServer
    max_head_bytes = MAX_HEAD_BYTES
    linger_bytes = LINGER_BYTES

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
        raw, self.rfile = self.rfile, _HeadReader(self.rfile, self.max_head_bytes)
        try:
            return super().parse_request()
        finally:
            self.rfile = raw

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own refusals (bad request line, too many or too large headers, unknown method), in this
        server's error format instead of http.server's page."""
        try:
            phrase = HTTPStatus(code).phrase
        except ValueError:
            phrase = "error"
        self.refuse_unread(code, explain or message or phrase)  # http.server explains only 431s

    def answer_error(self, status: int, why: str) -> None:
        raise NotImplementedError

    def refuse_unread(self, status: int, why: str) -> None:
        """Refuse a request whose body (or rest) is left unread: it must not be taken for the next request."""
        self.close_connection = True
        self.answer_error(status, why)
        self.linger()

    def request_in(self) -> bool:
        """Stop the request clock; False (and close) if the deadline passed first: the connection is already shut."""
        if self.server.unwatch(self.connection):
            return True
        self.close_connection = True
        return False

    def read_body(self, cap: int, too_large: str = TOO_LARGE) -> bytes | None:
        """The body, read only when its Content-Length is valid and within `cap` (else refused); None when refused,
        late or cut short: never act on half a body."""
        length = content_length(self.headers, cap, too_large)
        if isinstance(length, tuple):
            self.refuse_unread(*length)
            return None
        data = self.rfile.read(length)
        if not self.request_in() or len(data) < length:
            self.close_connection = True
            return None
        return data

    def linger(self) -> None:
        """After answering with a body left unread: end our side, then drain a little, so the client reads the answer
        instead of a connection reset."""
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_WR)
            self.connection.settimeout(0.5)
            deadline, left = time.monotonic() + 1.0, self.linger_bytes
            while left > 0 and time.monotonic() < deadline:
                chunk = self.connection.recv(min(left, 65536))
                if not chunk:
                    break
                left -= len(chunk)
        except OSError:
            pass
