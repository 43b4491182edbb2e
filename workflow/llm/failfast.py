"""Tell deterministic failures from transient ones across calls.

One failed call cannot tell a flaky server from a request the server will never accept; the same error body
answered to several different requests in a row can. Then retrying every document's attempts only burns time
(llama-cpp-python answers HTTP 500 to a response_format it does not know), so the run stops with one line.
"""

from __future__ import annotations

import re
import threading

# Overload and gateway statuses are transient by definition, however often they repeat.
_TRANSIENT_ONLY = {408, 429, 502, 503, 504}


def _signature(status: int, body: str) -> str:
    """The error without what differs per request (ids, numbers, quoted inputs)."""
    text = re.sub(r"chatcmpl-[\w-]+|[0-9a-f]{8}-[0-9a-f-]{27,}", "<id>", body)
    return f"{status} {re.sub(r'[0-9]+', '#', text)[:300]}"


# After a server has answered well once, a run of identical errors may be bad luck on a flaky server (50% of
# requests failing gives a run of 5 every ~64 attempts): then it takes this many in a row, from this many requests
# (a chance of about 2**-20 per attempt at 50% failures; a server that broke for good still stops within a few
# documents' attempts).
FLAKY_THRESHOLD, FLAKY_REQUESTS = 20, 5


class FailureTracker:
    """Counts identical error answers in a row (any success resets it). `tripped` is the line to stop with once
    `threshold` identical errors came from at least two different requests, or, once any request has succeeded,
    FLAKY_THRESHOLD from FLAKY_REQUESTS requests."""

    def __init__(self, threshold: int = 5):
        self.threshold = threshold
        self._sig: str | None = None
        self._count = 0
        self._requests: set[str] = set()
        self._succeeded = False
        self.tripped: str | None = None
        self._lock = threading.Lock()

    def success(self) -> None:
        with self._lock:
            self._sig, self._count, self._requests = None, 0, set()
            self._succeeded = True

    def _limits(self) -> tuple[int, int]:
        if self._succeeded:
            return max(self.threshold, FLAKY_THRESHOLD), max(2, FLAKY_REQUESTS)
        return self.threshold, 2

    def failure(self, request_key: str, status: int | None, body: str | None,
                fix: str = "check --model, --api-base and the server") -> str | None:
        """Record one error answer; returns the stop line (cause, then `fix`) when this one trips the tracker."""
        if status is None or not body or status < 400 or status in _TRANSIENT_ONLY:
            return None  # timeouts, connection errors, rate limits: no body that proves anything
        body = " ".join(body.split())  # the stop line is one line whatever the server sent
        sig = _signature(status, body)
        with self._lock:
            if sig != self._sig:
                self._sig, self._count, self._requests = sig, 0, set()
            self._count += 1
            self._requests.add(request_key)
            count, requests = self._limits()
            if self.tripped is None and self._count >= count and len(self._requests) >= requests:
                self.tripped = (
                    f"the server answered the same error to {self._count} requests in a row, so retrying will not "
                    f"help: HTTP {status}: {body[:200]}; {fix}, then `tnt resume`"
                )
                return self.tripped
            return None


class RejectionTracker:
    """Counts calls in a row whose every answer failed validation (a valid answer resets it): a model that cannot
    produce the schema stops the run within a few documents instead of spending every document's attempts."""

    def __init__(self, threshold: int = 5):
        self.threshold = threshold
        self._count = 0
        self._valid = False
        self._lock = threading.Lock()

    def valid(self) -> None:
        with self._lock:
            self._count, self._valid = 0, True

    def rejected(self, model: str, step: str, error: str, fix: str) -> str | None:
        """Record one call whose answers were all rejected; returns the stop line when this one trips."""
        with self._lock:
            self._count += 1
            limit = max(self.threshold, FLAKY_THRESHOLD) if self._valid else self.threshold
            if self._count < limit:
                return None
            reason = " ".join(error.split())[:200]
            return (f"{model}'s answers failed validation on {self._count} {step} requests in a row, so retrying will "
                    f"not help (last: {reason}); {fix}")
