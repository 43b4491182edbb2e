"""The default transport: any provider litellm knows (`gpt-4o-mini`, `ollama/llama3.1`, `openai/<name>` with an
api_base...), with provider errors sorted into transient and fatal ones for the gateway.
"""

from __future__ import annotations

import os
from typing import Any

from workflow.llm.base import FatalModelError, RawResponse, TransientError
from workflow.llm.structured import ModeRefused, answer_text, is_refusal, request_params

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no internet: never fetch the price map


def _retry_after(exc: Exception) -> float | None:
    """Seconds the provider asks us to wait. litellm keeps the real response headers in
    `litellm_response_headers` (its `response` is a stand-in without them); `retry-after-ms` is the precise form."""
    response = getattr(exc, "response", None)
    for headers in (getattr(exc, "litellm_response_headers", None), getattr(response, "headers", None)):
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
