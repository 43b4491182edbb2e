"""The one gateway to every model: prompt -> transport -> validated pydantic object, with retries, caching,
budget, concurrency and a row in llm_calls for every call.

Transports only move bytes (litellm for providers, llama-cpp for the embedded model, test models);
everything that must behave the same whatever the model (cache, retries, cost, logging) lives here once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt

from workflow.llm.base import FatalModelError, RawResponse, TransientError, Transport
from workflow.llm.failfast import FailureTracker, RejectionTracker
from workflow.llm.prompts import load_prompt
from workflow.llm.registry import transport_for
from workflow.llm.structured import ModeNegotiator, ModeRefused, next_mode
from workflow.pii import is_local_model, scrub_messages
from workflow.progress import progress_bar
from workflow.store import Store

log = logging.getLogger(__name__)
T = TypeVar("T", bound=BaseModel)


class BudgetExceeded(RuntimeError):
    """Raised before a call that could take the run past --max-cost; the run stops cleanly and can resume."""

    def __init__(self, max_cost: float, spent: float):
        self.max_cost, self.spent = max_cost, spent
        super().__init__(self.line(spent))

    def line(self, spent: float) -> str:
        """The stop line with what was spent, counted once the calls in flight have finished (the llm_calls
        total): at the moment of the stop some of them had not reported their cost yet."""
        return (f"stopped before the budget of ${self.max_cost:.4f} would be exceeded (spent ${spent:.4f}); resume "
                "with a higher --max-cost")


class InvalidOutput(Exception):
    def __init__(self, message: str, raw: str):
        super().__init__(message)
        self.raw = raw


@dataclass
class CallResult(Generic[T]):
    value: T | None
    status: str  # ok | cached | failed | rejected (answered, but never valid; a re-run reuses the rejection)
    call_id: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.value is not None


@dataclass
class Request:
    """One model call to make: `key` lets a batch caller match results back to its items."""

    key: Any
    variables: dict[str, Any]
    context: dict[str, Any] = field(default_factory=dict)


@dataclass
class Usage:
    calls: int = 0
    cached: int = 0
    failed: int = 0  # no answer (errors, timeouts)
    rejected: int = 0  # answered, but no answer passed validation
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0


@dataclass
class _Prepared:
    """One request as sent and keyed."""

    messages: list[dict]
    scrubbed: dict[str, int]  # what PII redaction replaced, by kind
    schema: dict
    max_tokens: int
    key: str


@dataclass
class _Attempts:
    """What the attempts at one request came to."""

    value: Any = None
    raw_text: str | None = None
    error: str | None = None
    status: str = "failed"
    attempts: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0

    def add(self, raw: RawResponse) -> None:
        self.prompt_tokens += raw.prompt_tokens
        self.completion_tokens += raw.completion_tokens
        self.cost += raw.cost
        self.raw_text = raw.text


def _with_feedback(messages: list[dict], answer: str, problem: str) -> list[dict]:
    """The conversation that asks again after an invalid answer: the answer, then what was wrong with it."""
    return [
        *messages,
        {"role": "assistant", "content": answer[:2000]},
        {"role": "user", "content": f"That answer was invalid: {problem}. Reply again with only JSON that matches the "
                                    "requested format."},
    ]


def request_hash(model: str, messages: list[dict], schema: dict, params: dict) -> str:
    """The cache key. The structured-output mode is deliberately not part of it (workflow/llm/structured.py):
    a cached answer validated against the same schema, so changing mode keeps answers already paid for."""
    payload = json.dumps({"model": model, "messages": messages, "schema": schema, **params}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def _wait(retry_state: Any) -> float:
    """Exponential backoff with jitter, but a provider's Retry-After wins when it gives one."""
    exc = retry_state.outcome.exception() if retry_state.outcome else None
    if isinstance(exc, TransientError) and exc.retry_after is not None:
        return min(float(exc.retry_after), 60.0)
    if isinstance(exc, InvalidOutput):
        return 0.0
    n = retry_state.attempt_number
    base = min(0.5 * 2 ** (n - 1), 20.0)
    return base * (0.5 + (hash((id(retry_state), n)) % 1000) / 1000)


class Gateway:
    """Call models for one run. Thread-safe; `map` runs requests concurrently up to `concurrency`."""

    def __init__(
        self,
        store: Store,
        run_id: str,
        *,
        api_base: str | None = None,
        concurrency: int = 8,
        max_attempts: int = 4,
        timeout_s: float = 120.0,
        max_cost: float | None = None,
        temperature: float = 0.0,
        seed: int = 0,
        show_progress: bool = True,
        structured_output: str = "auto",
        retry_failed: bool = False,
        redact_pii: bool = False,
    ):
        self.store, self.run_id = store, run_id
        self.api_base, self.concurrency, self.max_attempts = api_base, concurrency, max_attempts
        self.timeout_s, self.max_cost = timeout_s, max_cost
        self.temperature, self.seed, self.show_progress = temperature, seed, show_progress
        self.retry_failed = retry_failed  # ask again requests whose answers were rejected before
        self.redact_pii = redact_pii  # scrub prompts to any model but the embedded one (workflow/pii.py)
        self.usage = Usage()
        self._lock = threading.Lock()
        self._spent = store.total_cost(run_id)
        self._reserved = 0.0
        self.modes = ModeNegotiator(store, api_base, structured_output)
        self.failures = FailureTracker()
        self.rejections = RejectionTracker()

    def transport(self, model: str) -> Transport:
        return transport_for(model, api_base=self.api_base)

    def context_window(self, model: str) -> int:
        return self.transport(model).context_window(model)

    # -- one call ----------------------------------------------------------------------------------------------

    def call(
        self,
        step: str,
        model: str,
        prompt_name: str,
        response_model: type[T],
        variables: dict[str, Any],
        *,
        context: dict[str, Any] | None = None,
        max_tokens: int = 512,
        attempts_cap: int | None = None,
    ) -> CallResult[T]:
        """One validated answer (or a failed row). ``attempts_cap``: fewer attempts than the run's --max-attempts,
        for callers with a fallback of their own; their failures are logged at INFO, and they report them."""
        if self.failures.tripped:  # the run is stopping: no more calls, cached or not
            raise FatalModelError(self.failures.tripped)
        prompt = load_prompt(prompt_name)
        req = self._prepare(prompt.render(**variables), model, response_model, max_tokens)
        context = context or {}
        reused = self._reuse(req.key, step, model, response_model, context, attempts_cap)
        if reused is not None:
            return reused
        transport = self.transport(model)
        estimate = self._reserve(transport, model, req.messages, req.max_tokens)
        started = time.perf_counter()
        run = _Attempts()
        try:
            self._ask(run, transport, req, model, prompt_name, response_model, context, attempts_cap)
        finally:  # every call is logged, also one that stops the run
            call_id = self._record(run, step, model, prompt, req, estimate, time.perf_counter() - started)
        if run.value is None:
            log.log(logging.INFO if attempts_cap else logging.WARNING, "%s call failed after %d attempts: %s", step,
                    run.attempts, run.error)
        if run.status == "ok" and not attempts_cap:
            self.rejections.valid()
        elif run.status == "rejected":
            self._track_rejection(step, model, run.error or "", attempts_cap)
        return CallResult(run.value, run.status, call_id, run.error)

    def _prepare(self, messages: list[dict], model: str, response_model: type[BaseModel],
                 max_tokens: int) -> _Prepared:
        """The request as it will be sent and keyed: PII scrubbed first (what is sent is what is keyed), and room
        for the longest answer the schema allows."""
        scrubbed: dict[str, int] = {}
        if self.redact_pii and not is_local_model(model):
            messages, scrubbed = scrub_messages(messages)
        schema = response_model.model_json_schema()
        max_tokens = max(max_tokens, answer_token_cap(schema) or 0)
        params = {"temperature": self.temperature, "max_tokens": max_tokens, "seed": self.seed}
        return _Prepared(messages, scrubbed, schema, max_tokens, request_hash(model, messages, schema, params))

    def _reuse(self, key: str, step: str, model: str, response_model: type[T], context: dict[str, Any],
               attempts_cap: int | None) -> CallResult[T] | None:
        """The answer stored for this request, re-validated (validators may have changed since), else None.

        A request whose answers all failed validation is answered too: the same request gets the same answer
        (temperature 0, fixed seed), so the rejection is reused unless the last answer now validates;
        `tnt resume --retry-failed` asks again."""
        cached = self.store.cached_response(key)
        if cached is not None:
            try:
                value = response_model.model_validate_json(cached, context=context)
            except ValidationError:
                return None  # the validators changed since: ask again
            with self._lock:
                self.usage.cached += 1
            if not attempts_cap:
                self.rejections.valid()
            return CallResult(value, "cached")
        rejected = None if self.retry_failed else self.store.rejected_response(key)
        if rejected is None:
            return None
        try:
            value = parse_answer(response_model, rejected[0], context)
        except (ValidationError, ValueError):
            with self._lock:
                self.usage.cached += 1
                self.usage.rejected += 1
            self._track_rejection(step, model, rejected[2] or "", attempts_cap)
            return CallResult(None, "rejected", rejected[1], rejected[2])
        with self._lock:
            self.usage.cached += 1
        return CallResult(value, "cached")

    def _ask(self, run: _Attempts, transport: Transport, req: _Prepared, model: str, prompt_name: str,
             response_model: type[BaseModel], context: dict[str, Any], attempts_cap: int | None) -> None:
        """Ask until an answer validates or the attempts run out, filling ``run``. Transient errors and invalid
        answers are retried (an invalid one with the error fed back); anything else propagates."""
        convo = list(req.messages)
        send_schema = req.schema  # tightened after an answer cut at max_tokens
        try:
            for attempt in Retrying(
                stop=stop_after_attempt(min(self.max_attempts, attempts_cap or self.max_attempts)),
                wait=_wait,
                retry=retry_if_exception_type((TransientError, InvalidOutput)),
                reraise=True,
            ):
                with attempt:
                    run.attempts += 1
                    raw = self._complete(
                        transport, req.key, model, convo, schema=send_schema, schema_name=response_model.__name__,
                        prompt_name=prompt_name,
                        # a model that answered badly at temperature 0 would answer the same way again
                        temperature=self.temperature if run.attempts == 1 else max(self.temperature, 0.7),
                        max_tokens=req.max_tokens, seed=self.seed, timeout=self.timeout_s,
                    )
                    run.add(raw)
                    try:
                        run.value = parse_answer(response_model, raw.text or "", context)
                    except (ValidationError, ValueError) as exc:
                        msg = _short_validation_error(exc)
                        if raw.truncated:  # asking again the same way would be cut again: ask for less
                            send_schema = tighten_schema(send_schema)
                            msg = f"the answer was cut at {req.max_tokens} tokens; be much briefer ({msg})"
                        convo = _with_feedback(req.messages, raw.text or "", msg)
                        raise InvalidOutput(msg, raw.text or "") from None
            run.status = "ok"
        except (TransientError, InvalidOutput) as exc:
            run.error = f"{type(exc).__name__}: {exc}"
            run.status = "rejected" if isinstance(exc, InvalidOutput) else "failed"

    def _record(self, run: _Attempts, step: str, model: str, prompt: Any, req: _Prepared, estimate: float,
                latency: float) -> str:
        """Settle the budget and usage, and log the call (with what was redacted from it); returns its id."""
        with self._lock:
            self._reserved -= estimate
            self._spent += run.cost
            self.usage.calls += 1
            self.usage.failed += run.status == "failed"
            self.usage.rejected += run.status == "rejected"
            self.usage.prompt_tokens += run.prompt_tokens
            self.usage.completion_tokens += run.completion_tokens
            self.usage.cost += run.cost
        call_id = self.store.log_call(
            run_id=self.run_id,
            step=step,
            request_hash=req.key,
            model=model,
            prompt_name=prompt.name,
            prompt_hash=prompt.version,
            status=run.status,
            attempts=run.attempts,
            response=run.value.model_dump_json() if run.value is not None else json.dumps(run.raw_text),
            error=run.error,
            latency_s=latency,
            prompt_tokens=run.prompt_tokens,
            completion_tokens=run.completion_tokens,
            cost=run.cost,
        )
        if req.scrubbed:
            self.store.save_redactions(self.run_id, call_id, req.scrubbed)
        return call_id

    def _track_rejection(self, step: str, model: str, error: str, attempts_cap: int | None) -> None:
        """Callers with a fallback of their own (attempts_cap: cluster names) expect rejections; for the rest, a
        run of calls rejected in a row stops the run at the next call."""
        if attempts_cap:
            return
        fix = ("use a model that answers in this format (a new `tnt run` with another --model or --structured-output), "
               "or fix the model's server and ask again with `tnt resume --retry-failed`")
        line = self.rejections.rejected(model, step, error, fix)
        if line and not self.failures.tripped:
            self.failures.tripped = line

    def _complete(self, transport: Transport, key: str, model: str, messages: list[dict], **kw: Any) -> RawResponse:
        """One request in the model's structured-output mode: a refused mode steps down at once (not an attempt);
        an error that the tracker finds deterministic stops the run instead of being retried."""
        negotiates = getattr(transport, "negotiates_structured_output", False)
        while True:
            if self.failures.tripped:
                raise FatalModelError(self.failures.tripped)
            mode = self.modes.mode(model) if negotiates else None
            try:
                raw = transport.complete(model, messages, **kw, **({"mode": mode} if negotiates else {}))
            except ModeRefused as refusal:
                self.modes.refused(model, refusal)  # FatalModelError when the mode was the user's choice
                continue
            except TransientError as exc:
                fix = "check --model, --api-base and the server"
                if mode not in (None, "prompt"):
                    fix = f"try --structured-output {next_mode(mode)}, or {fix}"
                if self.failures.failure(key, exc.status, exc.body, fix) or self.failures.tripped:
                    raise FatalModelError(self.failures.tripped) from None
                raise
            self.failures.success()
            if negotiates:
                self.modes.worked(model, mode)
            return raw

    # -- many calls --------------------------------------------------------------------------------------------

    def map(
        self,
        step: str,
        model: str,
        prompt_name: str,
        response_model: type[T] | Callable[[Request], type[T]],
        requests: Sequence[Request],
        on_result: Callable[[Request, CallResult[T]], None],
        *,
        description: str,
        max_tokens: int = 512,
        attempts_cap: int | None = None,
    ) -> None:
        """Run requests concurrently; `on_result` is called (in this thread) as each one finishes, so finished
        work is stored at once and a crash loses at most the calls in flight (which the cache then has)."""
        if not requests:
            return
        workers = min(self.concurrency, self.transport(model).max_concurrency, len(requests))

        def one(req: Request) -> CallResult[T]:
            rm = response_model(req) if not isinstance(response_model, type) else response_model
            return self.call(step, model, prompt_name, rm, req.variables, context=req.context, max_tokens=max_tokens,
                             attempts_cap=attempts_cap)

        with progress_bar(description, total=len(requests), enabled=self.show_progress) as advance:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                futures = {pool.submit(one, r): r for r in requests}
                try:
                    for fut in as_completed(futures):
                        on_result(futures[fut], fut.result())
                        advance()
                except BaseException:
                    for f in futures:
                        f.cancel()
                    raise

    # -- budget ------------------------------------------------------------------------------------------------

    def _reserve(self, transport: Transport, model: str, messages: list[dict], max_tokens: int) -> float:
        estimate = transport.estimate_cost(model, sum(len(m["content"]) for m in messages) // 4 + 16, max_tokens)
        with self._lock:
            if self.max_cost is not None and self._spent + self._reserved + estimate > self.max_cost:
                raise BudgetExceeded(self.max_cost, self._spent)
            self._reserved += estimate
        return estimate


ANSWER_TOKEN_LIMIT = 4096


def answer_token_cap(schema: dict) -> int | None:
    """Tokens enough for the longest JSON answer the schema admits (one token per character, as a small model may
    emit under a grammar), or None when the schema leaves a length open. A max_tokens below this lets an answer be
    cut before its JSON closes; the schema's caps are what keeps answers short."""
    defs = schema.get("$defs", {})

    def chars(node: Any) -> float:
        if not isinstance(node, dict):
            return math.inf
        if "$ref" in node:
            return chars(defs.get(node["$ref"].split("/")[-1]))
        if "const" in node:
            return len(json.dumps(node["const"]))
        if "enum" in node:
            return max(len(json.dumps(v)) for v in node["enum"])
        for key in ("anyOf", "oneOf", "allOf"):
            if key in node:
                return max(chars(n) for n in node[key])
        kind = node.get("type")
        if kind == "string":
            return node.get("maxLength", math.inf) + 2
        if kind == "object":
            return 2 + sum(chars(p) + len(k) + 6 for k, p in node.get("properties", {}).items())
        if kind == "array":
            return 2 + node.get("maxItems", math.inf) * (chars(node.get("items")) + 4)
        return {"integer": 12, "number": 24, "boolean": 5, "null": 4}.get(kind, math.inf)

    total = chars(schema) + 16
    return int(total) if total <= ANSWER_TOKEN_LIMIT else None


def tighten_schema(schema: dict) -> dict:
    """The schema with every string's maxLength halved (not below 8), for a retry after an answer ran past
    max_tokens: constrained decoding then has to close the JSON sooner."""
    if isinstance(schema, dict):
        out = {k: tighten_schema(v) for k, v in schema.items()}
        if isinstance(out.get("maxLength"), int):
            out["maxLength"] = max(8, out["maxLength"] // 2)
        return out
    if isinstance(schema, list):
        return [tighten_schema(v) for v in schema]
    return schema


def parse_answer(response_model: type[T], text: str, context: dict[str, Any]) -> T:
    """Validate a model's JSON answer. Raw newlines inside strings (which small models emit even under a JSON
    grammar) are tolerated; anything else that is not JSON fails as usual."""
    try:
        data = json.loads(text, strict=False)
    except json.JSONDecodeError as exc:
        raise ValueError(f"answer: invalid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    return response_model.model_validate(data, context=context)


def _short_validation_error(exc: ValidationError | ValueError) -> str:
    if not isinstance(exc, ValidationError):
        return str(exc)
    parts = []
    for err in exc.errors()[:3]:
        loc = ".".join(str(p) for p in err.get("loc", ())) or "answer"
        parts.append(f"{loc}: {err.get('msg')}")
    return "; ".join(parts)
