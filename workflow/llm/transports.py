"""Transports move one chat request to a model and back. They classify failures (transient vs fatal) so the
gateway can decide what to retry; they never retry, cache or log themselves.

Model strings: `local/<name>` is the embedded GGUF model, `scripted/<name>` a deterministic test model, and
anything else is handed to litellm (`gpt-4o-mini`, `ollama/llama3.1`, `openai/<name>` with an api_base...).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any, Protocol

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no internet: never fetch the price map


@dataclass
class RawResponse:
    text: str | None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    truncated: bool = False  # the answer stopped at max_tokens (finish_reason "length")


class TransientError(Exception):
    """Worth retrying: rate limits, timeouts, 5xx, broken bodies, empty answers."""

    def __init__(self, message: str, retry_after: float | None = None, *, status: int | None = None,
                 body: str | None = None):
        super().__init__(message)
        self.retry_after = retry_after
        self.status, self.body = status, body  # the HTTP answer, for telling repeated identical errors apart


class FatalModelError(RuntimeError):
    """Retrying cannot help (bad key, unknown model, bad request): the run stops with this message."""


class Transport(Protocol):
    max_concurrency: int

    def complete(
        self,
        model: str,
        messages: list[dict[str, str]],
        *,
        schema: dict,
        schema_name: str,
        prompt_name: str,
        temperature: float,
        max_tokens: int,
        seed: int,
        timeout: float,
    ) -> RawResponse: ...

    def estimate_cost(self, model: str, prompt_tokens: int, completion_tokens: int) -> float: ...

    def context_window(self, model: str) -> int: ...


def _retry_after(exc: Exception) -> float | None:
    """Seconds the provider asks us to wait. litellm keeps the real response headers in
    `litellm_response_headers` (its `response` is a stand-in without them); `retry-after-ms` is the precise form."""
    for headers in (getattr(exc, "litellm_response_headers", None), getattr(getattr(exc, "response", None), "headers", None)):
        if not headers:
            continue
        try:
            if headers.get("retry-after-ms") is not None:
                return float(headers.get("retry-after-ms")) / 1000
            value = headers.get("retry-after") or headers.get("Retry-After")
            if value is not None:
                return float(value)
        except (TypeError, ValueError):  # an HTTP date: fall back to our own backoff
            continue
    return None


_FATAL_STATUS = {400: "bad request", 401: "authentication failed", 403: "permission denied", 404: "not found"}


def http_status(exc: Exception) -> int | None:
    """The status the provider really sent. litellm's exception class is not enough: on some code paths it maps
    an OpenAI-style 404 body (`"type": "invalid_request_error"`) to BadRequestError; the response keeps the 404."""
    for code in (getattr(getattr(exc, "response", None), "status_code", None), getattr(exc, "status_code", None)):
        if isinstance(code, int) and 100 <= code < 600:
            return code
    return None


def classify_provider_error(model: str, exc: Exception, mode: str | None = None) -> Exception:
    """ModeRefused when the server refuses the structured-output `mode` (it names the parameter, whatever the
    status: llama-cpp-python answers 500), FatalModelError for what a retry cannot fix (bad key, unknown model
    or path, bad request), else TransientError (timeouts, 429, 5xx, connection errors, unparseable bodies)."""
    import litellm

    from workflow.llm.structured import ModeRefused, is_refusal

    status = http_status(exc)
    line = _first_line(exc)
    if mode and is_refusal(mode, status, _error_body(exc)):
        return ModeRefused(mode, status, f"HTTP {status}: {_error_body(exc)[:300]}")
    if isinstance(exc, litellm.RateLimitError) or status == 429:
        return TransientError(f"rate limited: {line}", _retry_after(exc))
    if isinstance(exc, litellm.ContextWindowExceededError) or (
            status == 400 and "context" in line.lower() and "length" in line.lower()):
        return TransientError(f"context too long: {line}")
    if status in _FATAL_STATUS and not isinstance(exc, (litellm.Timeout, litellm.APIConnectionError)):
        return FatalModelError(f"{model}: HTTP {status} {_FATAL_STATUS[status]}: {line}")
    if isinstance(exc, (litellm.AuthenticationError, litellm.PermissionDeniedError, litellm.NotFoundError,
                        litellm.BadRequestError)):  # no HTTP status known (raised before any request)
        return FatalModelError(f"{model}: {type(exc).__name__}: {line}")
    if isinstance(exc, (litellm.Timeout, litellm.APIConnectionError)) or not _answered(exc):
        return TransientError(f"{type(exc).__name__}: {line}", _retry_after(exc))  # no server answer to compare
    return TransientError(f"{type(exc).__name__}: {line}", _retry_after(exc), status=status, body=_error_body(exc))


def _answered(exc: Exception) -> bool:
    """Whether a server sent this error: litellm reports a refused connection as an HTTP 500 without headers."""
    return any(getattr(h, "keys", None) and len(h) for h in (
        getattr(exc, "litellm_response_headers", None), getattr(getattr(exc, "response", None), "headers", None)))


def _error_body(exc: Exception) -> str:
    """The server's error message on one line (litellm prefixes its own class names; strip them)."""
    text = " ".join(str(exc).split())
    for marker in ("OpenAIException - ", "Exception - "):
        if marker in text:
            text = text.split(marker, 1)[1]
            break
    return text[:500]


class LiteLLMTransport:
    """Any provider litellm knows. Keys come from the environment (or litellm's own config), never from us."""

    max_concurrency = 64
    negotiates_structured_output = True  # the gateway picks the mode (workflow/llm/structured.py)

    def __init__(self, api_base: str | None = None):
        self.api_base = api_base

    def complete(self, model, messages, *, schema, schema_name, prompt_name, temperature, max_tokens, seed, timeout,
                 mode: str = "json_schema"):
        import litellm

        from workflow.llm.structured import answer_text, request_params

        litellm.suppress_debug_info = True  # no "Give Feedback / Get Help" banners on stdout for each error
        messages, extra = request_params(mode, messages, schema, schema_name)
        kwargs: dict[str, Any] = dict(
            model=model,
            messages=messages,
            temperature=temperature,
            max_tokens=max_tokens,
            timeout=timeout,
            num_retries=0,
            **extra,
        )
        if seed is not None:
            kwargs["seed"] = seed
        if self.api_base:
            kwargs["api_base"] = self.api_base
            if model.startswith("openai/") and not os.environ.get("OPENAI_API_KEY"):
                kwargs["api_key"] = "not-needed"  # local OpenAI-compatible servers ignore it
        try:
            resp = litellm.completion(**kwargs)
        except Exception as exc:
            raise classify_provider_error(model, exc, mode) from None
        choices = getattr(resp, "choices", None) or []
        if not choices:
            raise TransientError("the model returned no choices")
        message = choices[0].message
        text = answer_text(mode, message)
        if not text:
            refusal = getattr(message, "refusal", None)
            raise TransientError(f"the model refused: {refusal}" if refusal else "the model returned no content")
        usage = getattr(resp, "usage", None)
        pt = getattr(usage, "prompt_tokens", 0) or 0
        ct = getattr(usage, "completion_tokens", 0) or 0
        truncated = getattr(choices[0], "finish_reason", None) == "length"
        return RawResponse(text, pt, ct, self.estimate_cost(model, pt, ct), truncated)

    def estimate_cost(self, model: str, prompt_tokens: int, completion_tokens: int) -> float:
        import litellm

        try:
            p, c = litellm.cost_per_token(model=model, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
            return float(p + c)
        except Exception:
            return 0.0  # unknown model (local server, ollama...): no price known

    def context_window(self, model: str) -> int:
        import litellm

        try:
            return int(litellm.get_max_tokens(model) or 32_000)
        except Exception:
            return 32_000


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


_transports: dict[tuple[str, str | None], Transport] = {}
_lock = threading.Lock()


def transport_for(model: str, api_base: str | None = None) -> Transport:
    """The transport for a model string (one instance per kind, so the local model loads once)."""
    kind = model.split("/", 1)[0] if model.startswith(("local/", "scripted/")) else "litellm"
    key = (kind, api_base if kind == "litellm" else None)
    with _lock:
        if key not in _transports:
            if kind == "local":
                from workflow.llm.local import LocalTransport

                _transports[key] = LocalTransport()
            elif kind == "scripted":
                from workflow.llm.scripted import ScriptedTransport

                _transports[key] = ScriptedTransport()
            else:
                _transports[key] = LiteLLMTransport(api_base)
        return _transports[key]


def close_transports() -> None:
    """Free in-process models before the interpreter exits (llama.cpp torn down during shutdown otherwise
    disturbs other extensions' cleanup)."""
    with _lock:
        for transport in _transports.values():
            close = getattr(transport, "close", None)
            if close:
                close()
        _transports.clear()

