"""A small HTTP JSON endpoint for a classifier, on the standard library only.

    POST /classify  {"texts": ["...", ...]}  ->  [{"label_id", "label_name", "probability", "uncertain"}, ...]
    GET  /health                             ->  {"status": "ok", "model": ..., "embedding_model": ..., "labels": n}
    GET  /labels                             ->  the taxonomy (stable ids, names, descriptions)

Binds 127.0.0.1 by default: there is no authentication, so exposing it is an explicit choice (--host 0.0.0.0).
Requests are bounded (body size, texts per request) so one client cannot exhaust the process.
"""

from __future__ import annotations

import json
import logging
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from workflow.classify.embed import get_embedder
from workflow.classify.loader import ServingModel

log = logging.getLogger("tnt")

MAX_BODY_BYTES = 8 * 1024 * 1024
MAX_TEXTS = 2048


class ClassifyServer(ThreadingHTTPServer):
    """Holds the model and embedder; handler threads share them (embedding runs one batch at a time)."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], model: ServingModel, max_texts: int = MAX_TEXTS) -> None:
        self.model = model
        self.embedder = get_embedder(model.embedding_model)
        self.max_texts = max_texts
        self.embed_lock = threading.Lock()  # the ONNX session already uses every core; queue, don't oversubscribe
        super().__init__(address, _Handler)

    def classify(self, texts: list[str]) -> list[dict]:
        with self.embed_lock:
            X = self.embedder.embed(texts)
        return self.model.records(X)


class _Handler(BaseHTTPRequestHandler):
    server: ClassifyServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # route access logs through logging, not stderr
        log.info("%s %s", self.address_string(), format % args)

    def _send(self, status: int, payload: Any) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, message: str) -> None:
        self._send(status, {"error": message})

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
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
            self._error(HTTPStatus.NOT_FOUND, f"no route POST {self.path}; use POST /classify")
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > MAX_BODY_BYTES:
            self.close_connection = True
            self._error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"body must be 0..{MAX_BODY_BYTES} bytes")
            return
        texts = _parse(self.rfile.read(length), self.server.max_texts)
        if isinstance(texts, str):
            self._error(HTTPStatus.BAD_REQUEST, texts)
            return
        try:
            self._send(HTTPStatus.OK, self.server.classify(texts) if texts else [])
        except Exception as exc:  # keep serving; the client gets a one-line reason
            log.exception("classify failed")
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"classification failed: {type(exc).__name__}")


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
                max_texts: int = MAX_TEXTS) -> ClassifyServer:
    """A bound server (port 0 picks a free port: read ``server.server_address``); call ``serve_forever``."""
    return ClassifyServer((host, port), model, max_texts)


__all__ = ["ClassifyServer", "MAX_TEXTS", "make_server"]
