"""A small HTTP JSON endpoint for a classifier, on the standard library only.

    POST /classify  {"texts": ["...", ...]}  ->  [{"label_id", "label_name", "probability", "uncertain",
                                                   "truncated"}, ...]
    GET  /health                             ->  {"status": "ok", "model": ..., "embedding_model": ..., "labels": n}
    GET  /labels                             ->  the taxonomy (stable ids, names, descriptions)

Binds 127.0.0.1 by default: there is no authentication, so exposing it is an explicit choice (--host 0.0.0.0).
Requests are bounded so one client cannot exhaust the process (workflow.httplimits, shared with the review page):
the header block, the body (a Content-Length of 0..MAX_BODY_BYTES is required, else the request is refused
unread), texts per request (MAX_TEXTS), each text's length (cut to what the embedder reads, ``"truncated": true``
on its result), the time a connection may sit silent (IDLE_TIMEOUT_S) or take to send one request
(REQUEST_TIMEOUT_S), and the connections served at once (MAX_CONNECTIONS). Errors are one-line JSON.
"""

from __future__ import annotations

import json
import logging
import threading
from http import HTTPStatus
from typing import Any

from workflow.classify.embed import get_embedder
from workflow.classify.loader import ServingModel
from workflow.httplimits import IDLE_TIMEOUT_S, REQUEST_TIMEOUT_S, LimitedHandler, LimitedServer, content_length

log = logging.getLogger("tnt")

MAX_BODY_BYTES = 8 * 1024 * 1024
MAX_TEXTS = 2048
_TOO_LARGE = "body must be 0..{cap} bytes"
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


class ClassifyServer(LimitedServer):
    """Holds the model and embedder; handler threads share them (embedding runs one batch at a time)."""

    busy_body = b'{"error": "too many connections; retry in a moment"}'
    busy_type = "application/json"

    def __init__(self, address: tuple[str, int], model: ServingModel, max_texts: int = MAX_TEXTS, *,
                 idle_timeout: float = IDLE_TIMEOUT_S, request_timeout: float = REQUEST_TIMEOUT_S,
                 max_connections: int = MAX_CONNECTIONS) -> None:
        self.model = model
        self.embedder = get_embedder(model.embedding_model)
        self.max_texts = max_texts
        self.max_tokens, self.max_chars = text_limits(self.embedder)
        self.embed_lock = threading.Lock()  # the ONNX session already uses every core; queue, don't oversubscribe
        super().__init__(address, _Handler, idle_timeout=idle_timeout, request_timeout=request_timeout,
                         max_connections=max_connections)

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


class _Handler(LimitedHandler):
    server: ClassifyServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # route access logs through logging, not stderr
        log.info("%s %s", self.address_string(), format % args)

    def parse_request(self) -> bool:
        ok = super().parse_request()
        if ok and (self.headers.get("Transfer-Encoding") is not None or
                   self.headers.get("Content-Length", "0").strip() != "0") and self.command != "POST":
            self.close_connection = True  # a body nobody reads must not be taken for the next request
        return ok

    def handle_expect_100(self) -> bool:
        """Refuse a bad or oversized body before the client sends it."""
        if self.command == "POST" and self.path == "/classify":
            length = content_length(self.headers, MAX_BODY_BYTES, _TOO_LARGE)
            if isinstance(length, tuple):
                self.refuse_unread(*length)
                return False
        return super().handle_expect_100()

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

    def answer_error(self, status: int, why: str) -> None:
        self._send(status, {"error": why})

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        if not self.request_in():
            return
        m = self.server.model
        if self.path == "/health":
            self._send(HTTPStatus.OK, {"status": "ok", "model": m.version, "embedding_model": m.embedding_model,
                                       "labels": len(m.labels)})
        elif self.path == "/labels":
            self._send(HTTPStatus.OK, m.taxonomy)
        else:
            self.answer_error(HTTPStatus.NOT_FOUND, f"no route GET {self.path}; use POST /classify or GET /health")

    def do_POST(self) -> None:  # noqa: N802
        if self.path != "/classify":
            self.refuse_unread(HTTPStatus.NOT_FOUND, f"no route POST {self.path}; use POST /classify")
            return
        body = self.read_body(MAX_BODY_BYTES, _TOO_LARGE)
        if body is None:
            return
        texts = _parse(body, self.server.max_texts)
        if isinstance(texts, str):
            self.answer_error(HTTPStatus.BAD_REQUEST, texts)
            return
        try:
            self._send(HTTPStatus.OK, self.server.classify(texts) if texts else [])
        except Exception as exc:  # keep serving; the client gets a one-line reason
            log.exception("classify failed")
            self.answer_error(HTTPStatus.INTERNAL_SERVER_ERROR, f"classification failed: {type(exc).__name__}")


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
