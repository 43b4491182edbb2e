"""A real OpenAI-compatible chat-completions HTTP server on loopback, for tests.

Mocks that patch the client never exercise the HTTP stack, timeouts, retries,
``Retry-After`` handling or malformed bodies.  This server does: it speaks the
OpenAI wire format over a real socket and can inject latency, rate limits,
concurrency limits, random errors and a scripted sequence of faults.

Stdlib only, so it can run anywhere the tests run.  It never stores or logs
request headers (API keys live in ``Authorization``); only request bodies are kept.

    with OpenAITestServer(latency_s=0.05) as srv:
        client = openai.OpenAI(base_url=srv.base_url, api_key="sk-test")
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import random
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["FAULTS", "PROFILES", "OpenAITestServer", "default_responder", "example_from_schema",
           "requested_schema", "validate_request"]

Responder = Callable[[dict], str]

#: Fault names accepted in ``OpenAITestServer.faults`` (one is consumed per chat request).
FAULTS = frozenset(
    {"timeout", "429", "500", "503", "truncated", "non_json", "invalid_schema", "empty_choices", "refusal"}
)

_CHAT_PATHS = ("/v1/chat/completions", "/chat/completions")
_MODELS_PATHS = ("/v1/models", "/models")
_REFUSAL = "I can't help with that"


# --------------------------------------------------------------------------- schema -> example


def example_from_schema(schema: dict, root: dict | None = None, depth: int = 0) -> Any:
    """Build a small value that validates against ``schema`` (the subset pydantic/OpenAI emit).

    Objects get their required properties, arrays ``max(1, minItems)`` items (none once
    nesting is deep, to stop recursive models), enums their first value.
    """
    root = schema if root is None else root
    if depth > 40:
        raise ValueError("schema recursion too deep to build an example")
    if "$ref" in schema:
        return example_from_schema(_resolve_ref(root, schema["$ref"]), root, depth + 1)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            options = [s for s in schema[key] if s.get("type") != "null"] or schema[key]
            return example_from_schema(options[0], root, depth + 1)
    if schema.get("allOf"):
        merged: dict = {}
        for part in schema["allOf"]:
            part = _resolve_ref(root, part["$ref"]) if "$ref" in part else part
            for k, v in part.items():
                if isinstance(v, dict) and isinstance(merged.get(k), dict):
                    merged[k] = {**merged[k], **v}
                elif isinstance(v, list) and isinstance(merged.get(k), list):
                    merged[k] = merged[k] + v
                else:
                    merged[k] = v
        return example_from_schema(merged, root, depth + 1)

    typ = schema.get("type")
    if isinstance(typ, list):
        typ = next((t for t in typ if t != "null"), "null")
    if typ is None:
        typ = "object" if "properties" in schema else "array" if "items" in schema else "string"

    if typ == "object":
        props = schema.get("properties", {})
        return {name: example_from_schema(props.get(name, {}), root, depth + 1) for name in schema.get("required", [])}
    if typ == "array":
        prefix = schema.get("prefixItems") or []
        n = max(int(schema.get("minItems", 0)), len(prefix), 0 if depth > 6 else 1)
        if "maxItems" in schema:
            n = min(n, int(schema["maxItems"]))
        items = schema.get("items") if isinstance(schema.get("items"), dict) else {}
        return [example_from_schema(prefix[i] if i < len(prefix) else items, root, depth + 1) for i in range(n)]
    if typ == "string":
        return _example_string(schema)
    if typ in ("integer", "number"):
        return _example_number(schema, integer=typ == "integer")
    if typ == "boolean":
        return True
    return None


def _resolve_ref(root: dict, ref: str) -> dict:
    """Follow a local JSON pointer such as ``#/$defs/Label`` (pydantic puts models there)."""
    if not ref.startswith("#"):
        raise ValueError(f"only local $ref is supported, got {ref!r}")
    node: Any = root
    for part in ref.lstrip("#").strip("/").split("/"):
        if part:
            node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def _example_string(schema: dict) -> str:
    formats = {
        "date-time": "2024-01-01T00:00:00Z",
        "date": "2024-01-01",
        "time": "00:00:00",
        "email": "user@example.com",
        "uri": "https://example.com",
        "uuid": "00000000-0000-4000-8000-000000000000",
    }
    text = formats.get(schema.get("format", ""), "example")
    text = text.ljust(int(schema.get("minLength", 0)), "x")
    return text[: int(schema["maxLength"])] if "maxLength" in schema else text


def _example_number(schema: dict, integer: bool) -> int | float:
    lo = schema.get("minimum", schema.get("exclusiveMinimum"))
    hi = schema.get("maximum", schema.get("exclusiveMaximum"))
    value: float = 1 if lo is None else lo + (1 if "exclusiveMinimum" in schema and "minimum" not in schema else 0)
    if hi is not None and value > hi:
        value = hi if "exclusiveMaximum" not in schema or "maximum" in schema else hi - 1
    return int(math.ceil(value)) if integer else float(value)


_SCHEMA_MARKER = "validates against this JSON schema:\n"  # workflow/llm/structured.py schema_instruction


def requested_schema(request: dict) -> tuple[str | None, dict | None]:
    """(name, JSON schema) a request asks its answer to follow, whichever structured-output mode carries it:
    a ``json_schema`` response_format, a ``json_object`` one with a schema attached (llama-cpp-python), a forced
    tool call, or a schema written in the prompt. (None, None) when it asks for none."""
    fmt = request.get("response_format") or {}
    if fmt.get("type") == "json_schema":
        spec = fmt.get("json_schema") or {}
        return spec.get("name"), spec.get("schema") or {}
    if fmt.get("type") == "json_object" and fmt.get("schema"):
        return fmt["schema"].get("title"), fmt["schema"]
    tool = _forced_tool(request)
    if tool is not None:
        return tool.get("name"), tool.get("parameters") or {}
    last = _text((request.get("messages") or [{}])[-1].get("content"))
    if _SCHEMA_MARKER in last:
        schema = json.loads(last.split(_SCHEMA_MARKER, 1)[1])
        return schema.get("title"), schema
    return None, None


def default_responder(request: dict) -> str:
    """Answer like a model that follows its constraints: schema-valid JSON for whatever schema the request
    carries (``requested_schema``); else short text (a bare ``json_object`` gets JSON of no particular shape)."""
    _, schema = requested_schema(request)
    if schema is not None:
        return json.dumps(example_from_schema(schema))
    if (request.get("response_format") or {}).get("type") == "json_object":
        return json.dumps({"result": "ok"})
    return "This is a test response."


def _forced_tool(request: dict) -> dict | None:
    """The function a request forces with ``tool_choice`` (or its only tool), if it sends tools."""
    tools = [t.get("function") or {} for t in request.get("tools") or [] if isinstance(t, dict)]
    if not tools:
        return None
    choice = request.get("tool_choice")
    name = ((choice or {}).get("function") or {}).get("name") if isinstance(choice, dict) else None
    return next((t for t in tools if t.get("name") == name), tools[0])


# --------------------------------------------------------------------------- strict profiles

#: Request validation of real servers (``profile=``): what each refuses, with the status and body it answers.
PROFILES = ("lenient", "llamacpp-python", "vllm", "openai-strict", "reject-all")

_OPENAI_PARAMS = frozenset({
    "model", "messages", "temperature", "max_tokens", "max_completion_tokens", "seed", "response_format", "tools",
    "tool_choice", "parallel_tool_calls", "stream", "stream_options", "n", "top_p", "stop", "user", "logprobs",
    "top_logprobs", "logit_bias", "presence_penalty", "frequency_penalty", "metadata", "store", "service_tier",
    "reasoning_effort", "modalities", "prediction", "audio",
})


def _pydantic_literal(field: str, expected: str, value: Any) -> str:
    return (f"{{'type': 'literal_error', 'loc': ('body', 'response_format', '{field}'), 'msg': \"Input should be "
            f"{expected}\", 'input': {value!r}, 'ctx': {{'expected': \"{expected}\"}}}}")


def validate_request(profile: str, body: dict) -> tuple[int, dict] | None:
    """(status, error payload) when ``profile``'s server would refuse ``body``, else None."""
    fmt = body.get("response_format")
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if profile == "llamacpp-python":
        # Seen from `python -m llama_cpp.server` 0.3.x: pydantic's literal error, answered as an HTTP 500.
        if fmt is not None and kind not in ("text", "json_object"):
            detail = _pydantic_literal("type", "'text' or 'json_object'", kind)
            message = (f"1 validation error:\n  {detail}\n\n  File \"llama_cpp/server/app.py\", line 376, in "
                       "create_chat_completion\n    POST /v1/chat/completions")
            return 500, {"error": {"message": message, "type": "internal_server_error", "param": None, "code": None}}
        return None
    if profile == "vllm":
        def bad(message: str) -> tuple[int, dict]:
            return 400, {"object": "error", "message": message, "type": "BadRequestError", "param": None, "code": 400}

        if fmt is not None and kind not in ("text", "json_object", "json_schema"):
            return bad("[" + _pydantic_literal("type", "'text', 'json_object' or 'json_schema'", kind) + "]")
        if kind == "json_schema" and not (fmt.get("json_schema") or {}).get("schema"):
            return bad("response_format.json_schema.schema is required for type json_schema")
        if body.get("tools") and body.get("tool_choice") in (None, "auto"):
            return bad('"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set')
        return None
    if profile == "openai-strict":
        def bad(message: str, param: str | None, code: str) -> tuple[int, dict]:
            return 400, {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}}

        unknown = sorted(set(body) - _OPENAI_PARAMS)
        if unknown:
            return bad(f"Unrecognized request argument supplied: {unknown[0]}", None, None)
        if fmt is not None:
            allowed = {"text": {"type"}, "json_object": {"type"}, "json_schema": {"type", "json_schema"}}
            if kind not in allowed:
                return bad(f"Invalid value: '{kind}'. Supported values are: 'json_object', 'json_schema', and "
                           "'text'.", "response_format.type", "invalid_value")
            extra = sorted(set(fmt) - allowed[kind])
            if extra:
                return bad(f"Unknown parameter: 'response_format.{extra[0]}'.", f"response_format.{extra[0]}",
                           "unknown_parameter")
            if kind == "json_object" and "json" not in json.dumps(body.get("messages")).lower():
                return bad("'messages' must contain the word 'json' in some form, to use 'response_format' of type "
                           "'json_object'.", "messages", None)
        return None
    if profile == "reject-all":  # a server that takes no structured output and whose model is broken
        if fmt is not None:
            return 400, _error("response_format is not supported by this server", "invalid_request_error")
        if body.get("tools"):
            return 400, _error("tools are not supported by this server", "invalid_request_error")
        return 500, _error("model backend crashed: unable to load the model weights", "server_error")
    return None


# --------------------------------------------------------------------------- server


class _RateLimited(Exception):
    def __init__(self, retry_after_s: float, message: str) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class OpenAITestServer:
    """Loopback OpenAI-compatible server with configurable latency, limits and faults.

    Behaviour attributes (``latency_s``, ``rate_limit_per_s``, ``max_concurrency``,
    ``error_rate``, ``faults``, ``timeout_sleep_s``, ``retry_after_s``, ``responder``,
    ``model``) may be changed while it runs; each request reads them once.
    """

    def __init__(
        self,
        responder: Responder | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        latency_s: float = 0.0,
        rate_limit_per_s: float | None = None,
        max_concurrency: int | None = None,
        error_rate: float = 0.0,
        seed: int = 0,
        faults: list[str] | None = None,
        timeout_sleep_s: float = 5.0,
        retry_after_s: float = 1,
        model: str = "test-model",
        verbose: bool = False,
        profile: str = "lenient",
    ) -> None:
        if profile not in PROFILES:
            raise ValueError(f"unknown profile {profile!r}; choose from {', '.join(PROFILES)}")
        self.profile = profile
        self.responder: Responder = responder or default_responder
        self.host = host
        self.port = port
        self.latency_s = latency_s
        self.max_concurrency = max_concurrency
        self.error_rate = error_rate
        self.timeout_sleep_s = timeout_sleep_s
        self.retry_after_s = retry_after_s
        self.model = model
        self.verbose = verbose
        self.faults: list[str] = []
        self.add_faults(*(faults or []))

        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._ids = itertools.count(1)
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._rate_limit_per_s: float | None = None
        self.rate_limit_per_s = rate_limit_per_s  # property: also fills the bucket
        self.reset_counters()

    # ----- configuration

    @property
    def rate_limit_per_s(self) -> float | None:
        """Token-bucket rate (requests/s, burst = max(1, rate)); ``None`` disables it."""
        return self._rate_limit_per_s

    @rate_limit_per_s.setter
    def rate_limit_per_s(self, value: float | None) -> None:
        with self._lock:
            self._rate_limit_per_s = value
            self._tokens = max(1.0, value or 0.0)
            self._tokens_at = time.monotonic()

    def add_faults(self, *names: str) -> None:
        """Queue faults (validated) to be consumed one per chat request, in order."""
        unknown = [n for n in names if n not in FAULTS]
        if unknown:
            raise ValueError(f"unknown faults {unknown}; choose from {sorted(FAULTS)}")
        self.faults.extend(names)

    # ----- counters

    def reset_counters(self) -> None:
        """Zero all counters (``in_flight`` is live state and is left alone)."""
        with self._lock:
            self.total_requests = 0
            self.status_counts: Counter[int] = Counter()
            self.requests: list[dict] = []
            self.max_concurrency_observed = 0
            self.in_flight = getattr(self, "in_flight", 0)

    def stats(self) -> dict:
        """A consistent snapshot of the counters, handy for benchmark reports."""
        with self._lock:
            return {
                "total_requests": self.total_requests,
                "status_counts": dict(self.status_counts),
                "max_concurrency_observed": self.max_concurrency_observed,
                "in_flight": self.in_flight,
            }

    # ----- lifecycle

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``: what OpenAI clients take as ``base_url``."""
        if self._httpd is None:
            raise RuntimeError("server is not running; call start() first")
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> OpenAITestServer:
        if self._httpd is not None:
            raise RuntimeError("server already started")
        self._stopping.clear()
        self._httpd = _HTTPServer((self.host, self.port), _Handler, self)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="openai-testserver", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and drop open connections, waking any request that sleeps."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()
        httpd.shutdown()
        httpd.close_connections()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> OpenAITestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ----- request handling (called from handler threads)

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)

    def _arrived(self) -> None:
        with self._lock:
            self.total_requests += 1

    def _count(self, status: int) -> None:
        with self._lock:
            self.status_counts[status] += 1

    def _admit(self, body: dict) -> str | None:
        """Record the request, then return its fault or raise ``_RateLimited``."""
        with self._lock:
            self.requests.append(body)
            self.in_flight += 1
            self.max_concurrency_observed = max(self.max_concurrency_observed, self.in_flight)
            if self.max_concurrency is not None and self.in_flight > self.max_concurrency:
                raise _RateLimited(self.retry_after_s, f"Too many concurrent requests (max {self.max_concurrency}).")
            if self.faults:
                return self.faults.pop(0)
            rate = self._rate_limit_per_s
            if rate:
                now = time.monotonic()
                self._tokens = min(max(1.0, rate), self._tokens + (now - self._tokens_at) * rate)
                self._tokens_at = now
                if self._tokens < 1.0:
                    raise _RateLimited((1.0 - self._tokens) / rate, f"Rate limit reached ({rate:g} requests/s).")
                self._tokens -= 1.0
            if self.error_rate and self._rng.random() < self.error_rate:
                return "500"
            return None

    def _release(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def _completion(self, request: dict, content: str | None, refusal: str | None = None) -> dict:
        prompt_chars = sum(len(_text(m.get("content"))) for m in request.get("messages") or [] if isinstance(m, dict))
        prompt_tokens, completion_tokens = prompt_chars // 4, len(content or refusal or "") // 4
        message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": refusal}
        tool = _forced_tool(request) if content is not None and refusal is None else None
        if tool is not None:  # the answer goes into a call of the forced function, as OpenAI does
            message = {"role": "assistant", "content": None, "tool_calls": [{
                "id": f"call_test{next(self._ids)}", "type": "function",
                "function": {"name": tool.get("name"), "arguments": content}}]}
        return {
            "id": f"chatcmpl-test{next(self._ids)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request.get("model") or self.model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "finish_reason": "tool_calls" if tool is not None else "stop",
                    "logprobs": None,
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }


def _text(content: Any) -> str:
    """Message content as text; OpenAI also allows a list of ``{"type": "text", ...}`` parts."""
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content if isinstance(content, str) else ""


def _error(message: str, type_: str, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


class _HTTPServer(ThreadingHTTPServer):
    """Tracks live sockets so ``stop()`` can cut keep-alive connections too."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: type, owner: OpenAITestServer) -> None:
        self.owner = owner
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._conns_lock:
            self._conns.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._conns_lock:
            self._conns.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hanging up (timeouts, stop()) are expected here, not worth a traceback.
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the real API; every reply sets Content-Length
    server_version = "OpenAITestServer/1.0"
    timeout = 60  # drop idle keep-alive connections eventually
    server: _HTTPServer

    @property
    def owner(self) -> OpenAITestServer:
        return self.server.owner

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        # Only the request line and status are ever logged; headers (API keys) never are.
        if self.owner.verbose:
            sys.stderr.write(f"testserver: {format % args}\n")

    def _send(self, status: int, body: bytes, content_type: str = "application/json", headers: dict | None = None,
              declared_length: int | None = None) -> None:
        self.owner._count(status)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body) if declared_length is None else declared_length))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def _json(self, status: int, payload: dict, headers: dict | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), headers=headers)

    def do_GET(self) -> None:
        self.owner._arrived()
        if self.path.split("?", 1)[0].rstrip("/") not in _MODELS_PATHS:
            self._not_found()
            return
        model = {"id": self.owner.model, "object": "model", "created": 0, "owned_by": "openai-testserver"}
        self._json(200, {"object": "list", "data": [model]})

    def do_POST(self) -> None:
        self.owner._arrived()
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.split("?", 1)[0].rstrip("/") not in _CHAT_PATHS:
            self._not_found()
            return
        try:
            body = json.loads(raw or b"{}")
            if not isinstance(body, dict):
                raise ValueError("request body must be a JSON object")
        except ValueError as exc:
            self._json(400, _error(f"Invalid JSON body: {exc}", "invalid_request_error"))
            return
        refused = validate_request(self.owner.profile, body)
        if refused is not None:  # real servers validate before queueing: no fault consumed, no slot taken
            with self.owner._lock:
                self.owner.requests.append(body)
            self._json(*refused)
            return
        try:
            fault = self.owner._admit(body)
        except _RateLimited as exc:
            self.owner._release()
            self._rate_limited(exc.retry_after_s, str(exc))
            return
        try:
            self._sleep_latency(fault)
            self._respond(body, fault)
        finally:
            self.owner._release()

    def _sleep_latency(self, fault: str | None) -> None:
        if fault != "timeout":
            self.owner._sleep(self.owner.latency_s)

    def _respond(self, body: dict, fault: str | None) -> None:
        srv = self.owner
        if fault == "timeout":
            srv._sleep(srv.timeout_sleep_s)
            srv._count(0)  # 0 = connection closed without any response
            self.close_connection = True
        elif fault == "429":
            self._rate_limited(srv.retry_after_s, "Rate limit reached (injected fault).")
        elif fault in ("500", "503"):
            kind = "server_error" if fault == "500" else "service_unavailable"
            self._json(int(fault), _error(f"Injected {fault} fault.", kind))
        elif fault == "non_json":
            html = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
            self._send(200, html, content_type="text/html; charset=utf-8")
        elif fault == "truncated":
            payload = json.dumps(srv._completion(body, "truncated")).encode()
            self.close_connection = True
            self._send(200, payload[: len(payload) // 2], declared_length=len(payload))
        elif fault == "empty_choices":
            self._json(200, {**srv._completion(body, ""), "choices": []})
        elif fault == "refusal":
            self._json(200, srv._completion(body, None, refusal=_REFUSAL))
        elif fault == "invalid_schema":
            self._json(200, srv._completion(body, json.dumps({"unexpected": True})))
        elif body.get("stream"):
            self._json(400, _error("stream=true is not supported by the test server.", "invalid_request_error"))
        else:
            try:
                content = srv.responder(body)
            except Exception as exc:  # a broken responder should show up as a 500, not a hung client
                self._json(500, _error(f"responder failed: {exc!r}", "server_error"))
                return
            self._json(200, srv._completion(body, content))

    def _rate_limited(self, retry_after_s: float, message: str) -> None:
        seconds = max(1, math.ceil(retry_after_s))  # Retry-After carries whole seconds
        headers = {"Retry-After": str(seconds), "retry-after-ms": str(max(1, int(retry_after_s * 1000)))}
        self._json(429, _error(message, "rate_limit_exceeded", "rate_limit_exceeded"), headers=headers)

    def _not_found(self) -> None:
        self._json(404, _error(f"Unknown path {self.path}", "invalid_request_error", "not_found"))


# --------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> None:
    """``python -m workflow.testing.testserver``: serve until Ctrl-C, for manual runs and benchmarks."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds slept per request")
    parser.add_argument("--rate-limit", type=float, default=None, help="requests per second (token bucket)")
    parser.add_argument("--max-concurrency", type=int, default=None)
    parser.add_argument("--error-rate", type=float, default=0.0, help="fraction of random 500s")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fault", action="append", default=[], choices=sorted(FAULTS), help="repeatable, in order")
    parser.add_argument("--quiet", action="store_true", help="do not log request lines")
    parser.add_argument("--profile", default="lenient", choices=PROFILES, help="mimic a real server's validation")
    args = parser.parse_args(argv)
    srv = OpenAITestServer(
        host=args.host, port=args.port, latency_s=args.latency, rate_limit_per_s=args.rate_limit,
        max_concurrency=args.max_concurrency, error_rate=args.error_rate, seed=args.seed,
        faults=args.fault, verbose=not args.quiet, profile=args.profile,
    )
    with srv:
        print(srv.base_url, flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
        print(json.dumps(srv.stats()), flush=True)


if __name__ == "__main__":
    main()
