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


class TransientError(Exception):
    """Worth retrying: rate limits, timeouts, 5xx, broken bodies, empty answers."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


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


class LiteLLMTransport:
    """Any provider litellm knows. Keys come from the environment (or litellm's own config), never from us."""

    max_concurrency = 64

    def __init__(self, api_base: str | None = None):
        self.api_base = api_base

    def complete(self, model, messages, *, schema, schema_name, prompt_name, temperature, max_tokens, seed, timeout):
        import litellm

        litellm.suppress_debug_info = True  # no "Give Feedback / Get Help" banners on stdout for each error
        kwargs: dict[str, Any] = dict(
            model=model,
            messages=messages,
            temperature=temperature,
            max_tokens=max_tokens,
            timeout=timeout,
            num_retries=0,
            response_format={
                "type": "json_schema",
                "json_schema": {"name": schema_name, "schema": schema, "strict": False},
            },
        )
        if seed is not None:
            kwargs["seed"] = seed
        if self.api_base:
            kwargs["api_base"] = self.api_base
            if model.startswith("openai/") and not os.environ.get("OPENAI_API_KEY"):
                kwargs["api_key"] = "not-needed"  # local OpenAI-compatible servers ignore it
        try:
            resp = litellm.completion(**kwargs)
        except (litellm.AuthenticationError, litellm.PermissionDeniedError, litellm.NotFoundError) as exc:
            raise FatalModelError(f"{model}: {type(exc).__name__}: {_first_line(exc)}") from None
        except litellm.BadRequestError as exc:
            if "context" in str(exc).lower() and "length" in str(exc).lower():
                raise TransientError(f"context too long: {_first_line(exc)}") from None
            raise FatalModelError(f"{model}: bad request: {_first_line(exc)}") from None
        except litellm.RateLimitError as exc:
            raise TransientError(f"rate limited: {_first_line(exc)}", _retry_after(exc)) from None
        except Exception as exc:  # timeouts, 5xx, connection errors, unparseable bodies
            raise TransientError(f"{type(exc).__name__}: {_first_line(exc)}", _retry_after(exc)) from None
        choices = getattr(resp, "choices", None) or []
        if not choices:
            raise TransientError("the model returned no choices")
        message = choices[0].message
        text = getattr(message, "content", None)
        if not text:
            refusal = getattr(message, "refusal", None)
            raise TransientError(f"the model refused: {refusal}" if refusal else "the model returned no content")
        usage = getattr(resp, "usage", None)
        pt = getattr(usage, "prompt_tokens", 0) or 0
        ct = getattr(usage, "completion_tokens", 0) or 0
        return RawResponse(text, pt, ct, self.estimate_cost(model, pt, ct))

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

