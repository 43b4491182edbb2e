"""How provider exceptions are classified: by the HTTP status the provider sent, not by litellm's class alone."""

from __future__ import annotations

import httpx
import pytest

litellm = pytest.importorskip("litellm")

from workflow.llm.base import FatalModelError, TransientError  # noqa: E402
from workflow.llm.litellm_transport import classify_provider_error, http_status  # noqa: E402

URL = "http://127.0.0.1:9/nowhere/v1/chat/completions"


def response(status: int, headers: dict | None = None) -> httpx.Response:
    return httpx.Response(status, headers=headers, request=httpx.Request("POST", URL))


def kw(status: int | None = None, **headers: str) -> dict:
    out = dict(message="OpenAIException - Unknown path /nowhere/v1/chat/completions", model="m", llm_provider="openai")
    if status is not None:
        out["response"] = response(status, headers or None)
    return out


def test_a_404_mapped_to_bad_request_is_still_reported_as_not_found():
    # litellm maps an OpenAI-style 404 body ("type": "invalid_request_error") to BadRequestError on some paths
    exc = litellm.BadRequestError(**kw(404))
    assert http_status(exc) == 404
    err = classify_provider_error("openai/x", exc)
    assert isinstance(err, FatalModelError)
    assert str(err).startswith("openai/x: HTTP 404 not found: ") and "Unknown path" in str(err)


@pytest.mark.parametrize("cls,status,words", [
    (litellm.NotFoundError, 404, "not found"),
    (litellm.AuthenticationError, 401, "authentication failed"),
    (litellm.PermissionDeniedError, 403, "permission denied"),
    (litellm.BadRequestError, 400, "bad request"),
])
def test_what_a_retry_cannot_fix_is_fatal(cls, status, words):
    err = classify_provider_error("m", cls(**kw(status)))
    assert isinstance(err, FatalModelError) and f"HTTP {status} {words}" in str(err)


def test_rate_limit_is_transient_and_keeps_retry_after():
    exc = litellm.RateLimitError(**kw(429, **{"retry-after": "3"}))
    err = classify_provider_error("m", exc)
    assert isinstance(err, TransientError) and err.retry_after == 3.0


@pytest.mark.parametrize("exc", [
    litellm.InternalServerError(**kw(500)),
    litellm.ServiceUnavailableError(**kw(503)),
    litellm.Timeout(message="timed out", model="m", llm_provider="openai"),
    litellm.APIConnectionError(message="connection refused", model="m", llm_provider="openai"),
    ValueError("unparseable body"),
])
def test_server_side_and_network_faults_are_transient(exc):
    assert isinstance(classify_provider_error("m", exc), TransientError)


def test_context_overflow_is_transient_so_the_gateway_can_shrink_the_prompt():
    exc = litellm.ContextWindowExceededError(**kw(400))
    err = classify_provider_error("m", exc)
    assert isinstance(err, TransientError) and str(err).startswith("context too long")
