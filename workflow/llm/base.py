"""What every transport shares: the request it takes, the response it gives and the two errors it may raise.

A transport moves one chat request to a model and back. It classifies failures (transient vs fatal) so the
gateway can decide what to retry; it never retries, caches or logs itself. Transports are found by model string
in workflow/llm/registry.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


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
    """One kind of model backend. Optional extras the gateway looks for: `negotiates_structured_output` (it takes
    a `mode` keyword, see workflow/llm/structured.py), `count_tokens(text)` and `close()`."""

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
