"""`tnt serve`'s server: the ASGI app of workflow.classify.serve under uvicorn, with the connection-level limits an
app cannot set itself.

uvicorn's own HTTP/1.1 protocol (h11) is subclassed (``LimitedH11Protocol``) to add: a cap on connections open at
once (beyond it: 503 JSON with Retry-After at once, then close), an idle timeout for a connection that sends
nothing (uvicorn only times out idle keep-alive connections *after* a response), a deadline for the whole request
head however slowly it trickles in, and one-line JSON for requests h11 refuses (malformed, bad Content-Length: 400;
an unfinished head over the size cap: 431) instead of uvicorn's plain text.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from workflow.classify.serve import MAX_TEXTS, create_app
from workflow.httplimits import IDLE_TIMEOUT_S, MAX_HEAD_BYTES, REQUEST_TIMEOUT_S

MAX_CONNECTIONS = 64  # connections open at once; more are answered 503 at once


@dataclass(frozen=True)
class ConnLimits:
    idle_timeout: float = IDLE_TIMEOUT_S
    request_timeout: float = REQUEST_TIMEOUT_S
    max_connections: int = MAX_CONNECTIONS


def raw_json_response(status: int, payload: dict, extra: bytes = b"") -> bytes:
    """A complete HTTP/1.1 response that closes the connection, written straight to the transport."""
    body = json.dumps(payload).encode()
    phrase = HTTPStatus(status).phrase.encode()
    return (b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%sConnection: close\r\n\r\n"
            % (status, phrase, len(body), extra) + body)


class _RecordingConnection(h11.Connection):
    """h11's connection, keeping the last protocol error so the refusal can say what was wrong."""

    last_error: h11.RemoteProtocolError | None = None

    def next_event(self) -> Any:
        try:
            return super().next_event()
        except h11.RemoteProtocolError as exc:
            self.last_error = exc
            raise


def _refusal(exc: h11.RemoteProtocolError | None) -> tuple[int, str]:
    msg = str(exc) if exc else "malformed request"
    if exc is not None and exc.error_status_hint == 431 or "buffer too long" in msg:
        return 431, f"request headers larger than {MAX_HEAD_BYTES} bytes"
    if "content-length" in msg.lower():
        return 400, "Content-Length must be one non-negative integer (below 10**18)"
    return 400, f"malformed HTTP request: {msg}"


class LimitedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol plus the connection cap, idle and request-head deadlines, and JSON refusals.
    ``limits`` is set on a subclass per server (make_server)."""

    limits = ConnLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.conn = _RecordingConnection(h11.SERVER, self.config.h11_max_incomplete_event_size or MAX_HEAD_BYTES)
        self._idle: asyncio.TimerHandle | None = None
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            transport.write(raw_json_response(503, {"error": "too many connections; retry in a moment"},
                                              b"Retry-After: 1\r\n"))
            transport.close()
            return
        self._idle = self.loop.call_later(self.limits.idle_timeout, self._expire)

    def data_received(self, data: bytes) -> None:
        if self._deadline is None and self.conn.their_state is h11.IDLE:  # a request begins: its clock starts
            self._deadline = self.loop.call_later(self.limits.request_timeout, self._expire)
        super().data_received(data)
        self._cancel_idle()
        if self.transport.is_closing():
            return
        if self.conn.their_state in (h11.IDLE, h11.SEND_BODY):  # still waiting for the client: it may not go quiet
            self._idle = self.loop.call_later(self.limits.idle_timeout, self._expire)
        elif self._deadline is not None:  # the request is in: the app has it
            self._deadline.cancel()
            self._deadline = None

    def on_response_complete(self) -> None:
        super().on_response_complete()  # arms uvicorn's keep-alive timeout (= our idle timeout) for the next one
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _cancel_idle(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None

    def _expire(self) -> None:
        """A client that went quiet, or took too long over its request: drop it (a request the app is already
        answering is left to finish)."""
        if self.conn.their_state is h11.DONE and self.cycle is not None and not self.cycle.response_complete:
            return
        self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_idle()
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        status, why = _refusal(self.conn.last_error)
        self.transport.write(raw_json_response(status, {"error": why}))
        self.transport.close()


class ServeHandle:
    """A bound uvicorn server: ``serve_forever`` (blocks; Ctrl-C stops it in the main thread), ``shutdown`` (from
    another thread), ``server_close``, ``server_address`` and ``open_connections()``, as http.server's servers."""

    def __init__(self, app: Any, host: str, port: int, limits: ConnLimits, log_level: str = "warning") -> None:
        import uvicorn

        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
            sock.listen(2048)
        except OSError:
            sock.close()
            raise
        self.socket = sock
        self.server_address = sock.getsockname()[:2]
        self.app = app
        self.protocol = type("Protocol", (LimitedH11Protocol,), {"limits": limits})
        config = uvicorn.Config(app, http=self.protocol, lifespan="on", log_config=None, log_level=log_level,
                                access_log=False, timeout_keep_alive=max(1, round(limits.idle_timeout)),
                                h11_max_incomplete_event_size=MAX_HEAD_BYTES, timeout_graceful_shutdown=5)
        self.server = uvicorn.Server(config)
        if limits.idle_timeout < 1:  # uvicorn's keep-alive timeout is whole seconds in its CLI, any float here
            config.timeout_keep_alive = limits.idle_timeout  # type: ignore[assignment]
        self._done = threading.Event()

    def serve_forever(self, poll_interval: float | None = None) -> None:
        try:
            self.server.run(sockets=[self.socket])
        finally:
            self._done.set()

    def open_connections(self) -> int:
        return len(self.server.server_state.connections)

    def shutdown(self) -> None:
        self.server.should_exit = True
        self._done.wait(30)

    def server_close(self) -> None:
        self.server.should_exit = True
        self.socket.close()


def make_server(model: Any, host: str = "127.0.0.1", port: int = 8080, max_texts: int = MAX_TEXTS, *,
                idle_timeout: float = IDLE_TIMEOUT_S, request_timeout: float = REQUEST_TIMEOUT_S,
                max_connections: int = MAX_CONNECTIONS, log_level: str = "warning", **app_options: Any) -> ServeHandle:
    """`tnt serve`'s server for ``model`` (a ServingModel, artifact directory or stored model id; see create_app),
    bound to ``host:port`` (port 0 picks a free one). ``app_options`` go to create_app."""
    app = create_app(model, max_texts=max_texts, request_timeout=request_timeout, **app_options)
    limits = ConnLimits(idle_timeout, request_timeout, max_connections)
    return ServeHandle(app, host, port, limits, log_level)


__all__ = ["ConnLimits", "LimitedH11Protocol", "MAX_CONNECTIONS", "ServeHandle", "make_server"]
