"""A classifier as an ASGI app (FastAPI): what `tnt serve` runs under uvicorn, and what users mount in their own
gunicorn/uvicorn/Kubernetes deployment.

    POST /classify  {"texts": ["...", ...]}  ->  [{"label_id", "label_name", "probability", "uncertain",
                                                   "truncated"}, ...]
    GET  /health                             ->  {"status": "ok", "model": ..., "embedding_model": ..., "labels": n,
                                                   "embedding_calls": ..., "requests_batched": ...}
    GET  /labels                             ->  the taxonomy (stable ids, names, descriptions)
    GET  /openapi.json, /docs                ->  the schema

Your own server: ``uvicorn --factory workflow.classify.serve:create_app`` with ``TNT_MODEL`` (an artifact
directory, or a model/run id with ``TNT_DB``), or ``create_app("path/to/artifact")`` in your code.

Concurrent requests are micro-batched: while one embedding call runs, the texts of requests that arrive meanwhile
wait in a queue and go into the next call together (one call per batch of up to ``max_batch_texts`` texts), so
many small requests cost about what one large one does. The embedder runs in one worker thread: the event loop
keeps parsing requests while it works.

Limits the app enforces under any ASGI server (``_Limits``): the header block (count and bytes), the body (a
Content-Length of 0..max_body_bytes is required, else the request is refused unread), the time to receive the
body (request_timeout), texts per request (max_texts), each text's length (cut to what the embedder reads,
``"truncated": true`` on its result), and the time one classification may take (classify_timeout). Connection-level
limits (connections at once, idle and header-trickling connections, malformed HTTP) are the server's: `tnt serve`
sets them in workflow.classify.serve_uvicorn. Errors are one-line JSON ``{"error": ...}``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from workflow.httplimits import MAX_HEAD_BYTES, REQUEST_TIMEOUT_S, content_length

log = logging.getLogger("tnt")

MAX_BODY_BYTES = 8 * 1024 * 1024
MAX_TEXTS = 2048
MAX_HEADERS = 100  # as http.server: more header lines than this is not a client we serve
MAX_BATCH_TEXTS = 256  # texts per embedding call when requests are batched together
BATCH_WAIT_S = 0.002  # an idle server waits this long for company before embedding a lone request
CLASSIFY_TIMEOUT_S = 60.0  # a request whose texts are not classified by then gets 503
_TOO_LARGE = "body must be 0..{cap} bytes"
#: Characters of a text kept per token the embedder reads: far more than any real text needs for its first
#: max_tokens tokens, so the embedding is the one the embedder's own truncation gives, without tokenising megabytes.
CHARS_PER_TOKEN = 64
MAX_TEXT_CHARS = 32 * 1024  # per text, for embedders that do not say how many tokens they read (litellm:)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def text_limits(embedder: Any) -> tuple[int | None, int]:
    """(tokens the embedder reads per text or None, characters kept per text)."""
    tokens = getattr(embedder, "max_tokens", None)  # minilm-int8, static-minilm
    if tokens is None:  # st:/path: sentence-transformers truncates at the model's max_seq_length
        tokens = getattr(getattr(embedder, "model", None), "max_seq_length", None)
    if not isinstance(tokens, int) or tokens <= 0:
        return None, MAX_TEXT_CHARS
    return tokens, tokens * CHARS_PER_TOKEN


class Classifier:
    """Model + embedder: texts in, one record per text out (blocking; the app runs it in a worker thread)."""

    def __init__(self, model: Any) -> None:
        from workflow.classify.embed import get_embedder

        self.model = model
        self.embedder = get_embedder(model.embedding_model)
        self.max_tokens, self.max_chars = text_limits(self.embedder)

    def classify(self, texts: list[str]) -> list[dict]:
        """One record per text; ``truncated`` says the embedder read only the start of that text."""
        cut = [t[: self.max_chars] for t in texts]
        over = self._over_tokens(cut)
        records = self.model.records(self.embedder.embed(cut))
        for rec, text, o in zip(records, texts, over, strict=True):
            rec["truncated"] = o or len(text) > self.max_chars
        return records

    def _over_tokens(self, texts: list[str]) -> list[bool]:
        """Which texts the embedder's tokenizer cuts at max_tokens (minilm-int8); all False where it cannot say."""
        tokenizer = getattr(self.embedder, "tokenizer", None)
        if self.max_tokens is None or not hasattr(tokenizer, "encode_batch"):
            return [False] * len(texts)
        return [bool(e.overflowing) or len(e.ids) > self.max_tokens for e in tokenizer.encode_batch(texts)]


class MicroBatcher:
    """Queues concurrent requests' texts and classifies them together, one embedding call per batch.

    A request is never split: a batch is whole requests, at most ``max_texts`` texts (a larger request goes
    alone). Results go back to each request in order. Created lazily inside the running event loop.
    """

    def __init__(self, fn: Callable[[list[str]], list[dict]], max_texts: int = MAX_BATCH_TEXTS,
                 wait_s: float = BATCH_WAIT_S) -> None:
        self.fn, self.max_texts, self.wait_s = fn, max_texts, wait_s
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="tnt-embed")
        self._queue: asyncio.Queue[tuple[list[str], asyncio.Future]] | None = None
        self._task: asyncio.Task | None = None
        self.calls = 0  # embedding calls made (tests and /health read it)
        self.batched = 0  # requests that shared a call with another

    async def submit(self, texts: list[str]) -> list[dict]:
        if self._queue is None or self._task is None or self._task.done():
            self._queue = asyncio.Queue()
            self._task = asyncio.get_running_loop().create_task(self._run())
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((texts, future))
        return await future

    async def _run(self) -> None:
        assert self._queue is not None
        queue, loop = self._queue, asyncio.get_running_loop()
        carry = None  # the request that did not fit the last batch: it opens the next one
        while True:
            batch = [carry or await queue.get()]
            carry = None
            if queue.empty() and self.wait_s > 0:
                await asyncio.sleep(self.wait_s)  # an idle server: give concurrent requests a moment to arrive
            n = len(batch[0][0])
            while not queue.empty():
                item = queue.get_nowait()
                if n + len(item[0]) > self.max_texts:
                    carry = item
                    break
                batch.append(item)
                n += len(item[0])
            live = [(t, f) for t, f in batch if not f.done()]  # a timed-out request is cancelled: skip its texts
            if not live:
                continue
            texts = [t for ts, _ in live for t in ts]
            try:
                records = await loop.run_in_executor(self.executor, self.fn, texts)
            except Exception as exc:  # every request of the batch gets the error; the loop keeps serving
                for _, f in live:
                    if not f.done():
                        f.set_exception(exc)
                continue
            self.calls += 1
            self.batched += len(live) if len(live) > 1 else 0
            start = 0
            for ts, f in live:
                if not f.done():
                    f.set_result(records[start : start + len(ts)])
                start += len(ts)

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self.executor.shutdown(wait=False, cancel_futures=True)


# --------------------------------------------------------------------------- limits (pure ASGI middleware)


class _Headers:
    """ASGI headers as the `.get` / `.get_all` that workflow.httplimits.content_length reads."""

    def __init__(self, raw: list[tuple[bytes, bytes]]) -> None:
        self.raw = raw

    def get_all(self, name: str) -> list[str]:
        key = name.lower().encode()
        return [v.decode("latin-1") for k, v in self.raw if k.lower() == key]

    def get(self, name: str, default: str | None = None) -> str | None:
        values = self.get_all(name)
        return values[0] if values else default


class _BodyTimeout(Exception):
    pass


async def json_error(send: Send, status: int, why: str, close: bool = False, headers: list | None = None) -> None:
    body = json.dumps({"error": why}).encode()
    hdrs = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())] + (headers or [])
    if close:
        hdrs.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": int(status), "headers": hdrs})
    await send({"type": "http.response.body", "body": body})


class _Limits:
    """Refuses what no route should see, before any body is read: too many or too large headers (431), a POST body
    without a valid Content-Length within the cap (400/411/413, the connection closed so the unread body is never
    taken for a request), and a body that does not arrive within ``request_timeout`` (408)."""

    def __init__(self, app: Callable, max_body_bytes: int, request_timeout: float) -> None:
        self.app, self.max_body_bytes, self.request_timeout = app, max_body_bytes, request_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw = scope["headers"]
        if len(raw) > MAX_HEADERS or sum(len(k) + len(v) + 4 for k, v in raw) > MAX_HEAD_BYTES:
            await json_error(send, HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
                             f"request headers larger than {MAX_HEAD_BYTES} bytes or more than {MAX_HEADERS} lines",
                             close=True)
            return
        if scope["method"] == "POST":
            length = content_length(_Headers(raw), self.max_body_bytes, _TOO_LARGE)
            if isinstance(length, tuple):
                await json_error(send, length[0], length[1], close=True)
                return
        deadline = time.monotonic() + self.request_timeout
        started = False

        async def timed_receive() -> Message:
            left = deadline - time.monotonic()
            try:
                return await asyncio.wait_for(receive(), max(left, 0.001))
            except asyncio.TimeoutError:
                raise _BodyTimeout from None

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, timed_receive, tracked_send)
        except _BodyTimeout:
            if not started:
                await json_error(send, HTTPStatus.REQUEST_TIMEOUT,
                                 f"the request body did not arrive within {self.request_timeout:g} s", close=True)


# --------------------------------------------------------------------------- the app


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


def load_serving_model(model: Any = None, db: str | None = None) -> Any:
    """A ServingModel as given, or loaded from an artifact directory / a model or run id in ``db``
    (defaults: ``TNT_MODEL``, ``TNT_DB``); the database is closed again once the model is in memory."""
    from workflow.classify.loader import load_model

    model = model if model is not None else os.environ.get("TNT_MODEL")
    if model is None:
        raise ValueError("no model: pass create_app(model=...) or set TNT_MODEL (an artifact directory or model id)")
    if not isinstance(model, (str, os.PathLike)):
        return model
    spec = str(model)
    if os.path.isdir(spec):
        return load_model(spec)
    db = db or os.environ.get("TNT_DB", "tnt.duckdb")
    from workflow.store import Store

    with Store(db) as store:
        return load_model(spec, store)


def create_app(model: Any = None, db: str | None = None, *, max_texts: int = MAX_TEXTS,
               max_body_bytes: int = MAX_BODY_BYTES, request_timeout: float = REQUEST_TIMEOUT_S,
               classify_timeout: float = CLASSIFY_TIMEOUT_S, max_batch_texts: int = MAX_BATCH_TEXTS,
               batch_wait_s: float = BATCH_WAIT_S) -> Any:
    """The ASGI app serving ``model`` (a ServingModel, an artifact directory, or a model/run id in ``db``;
    default ``TNT_MODEL`` / ``TNT_DB``). ``app.state.batcher`` is the micro-batcher, ``app.state.classifier``
    the model and embedder."""
    serving = load_serving_model(model, db)
    classifier = Classifier(serving)
    batcher = MicroBatcher(classifier.classify, max_batch_texts, batch_wait_s)

    class ClassifyRequest(BaseModel):
        texts: list[str]

    class Result(BaseModel):
        label_id: str
        label_name: str
        probability: float
        uncertain: bool
        truncated: bool
        label_ids: list[str] | None = None
        parent_id: str | None = None
        parent_name: str | None = None

    class Health(BaseModel):
        status: str
        model: str
        embedding_model: str
        labels: int
        embedding_calls: int
        requests_batched: int

    @asynccontextmanager
    async def lifespan(_: Any):
        yield
        batcher.close()

    app = FastAPI(title="tnt classifier", version=str(serving.version), lifespan=lifespan,
                  description=f"Labels texts with {serving.version} ({len(serving.labels)} labels, "
                              f"embeddings: {serving.embedding_model}).")
    app.state.classifier, app.state.batcher, app.state.max_texts = classifier, batcher, max_texts

    def reply(status: int, payload: Any) -> Response:
        return Response(json.dumps(payload), status_code=status, media_type="application/json")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        allowed = "POST /classify, GET /health, GET /labels, GET /openapi.json"
        why = f"no route {request.method} {request.url.path}; use {allowed}" if exc.status_code in (404, 405) \
            else str(exc.detail)
        return reply(exc.status_code, {"error": why})

    @app.get("/health", response_model=Health)
    async def health() -> Response:
        return reply(200, {"status": "ok", "model": serving.version, "embedding_model": serving.embedding_model,
                           "labels": len(serving.labels), "embedding_calls": batcher.calls,
                           "requests_batched": batcher.batched})

    @app.get("/labels", response_model=list[dict[str, Any]])
    async def labels() -> Response:
        return reply(200, serving.taxonomy)

    @app.post("/classify", response_model=list[Result],
              openapi_extra={"requestBody": {"required": True, "content": {
                  "application/json": {"schema": ClassifyRequest.model_json_schema()}}}},
              responses={400: {"description": "bad request: {\"error\": why}"},
                         413: {"description": f"body over {max_body_bytes} bytes"},
                         503: {"description": "not classified within the timeout"}})
    async def classify(request: Request) -> Response:
        """Labels each text; a batch of up to max_texts texts per request, results in the same order."""
        try:
            body = await request.body()
        except ClientDisconnect:
            return reply(400, {"error": "the client went away before sending the whole body"})
        texts = _parse(body, app.state.max_texts)
        if isinstance(texts, str):
            return reply(400, {"error": texts})
        if not texts:
            return reply(200, [])
        try:
            records = await asyncio.wait_for(batcher.submit(texts), classify_timeout)
        except asyncio.TimeoutError:
            return reply(503, {"error": f"not classified within {classify_timeout:g} s; retry later"})
        except Exception as exc:  # keep serving; the client gets a one-line reason
            log.exception("classify failed")
            return reply(500, {"error": f"classification failed: {type(exc).__name__}"})
        return reply(200, records)

    limited = _Limits(app, max_body_bytes, request_timeout)
    limited.state = app.state  # type: ignore[attr-defined]  # the wrapped app's state stays reachable
    limited.fastapi = app  # type: ignore[attr-defined]
    return limited


__all__ = ["MAX_BODY_BYTES", "MAX_TEXTS", "Classifier", "MicroBatcher", "create_app", "text_limits"]
