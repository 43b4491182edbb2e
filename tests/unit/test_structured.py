"""Structured-output modes through the real gateway, litellm and HTTP, against the loopback server's strict
profiles (which refuse requests the way real servers do): each mode works where the server takes it, `auto`
steps down and remembers, a mode the user forced fails at once with the fix, the cache key ignores the mode,
and identical errors across documents stop the gateway instead of being retried. Whole `tnt run`s against the
profiles: tests/reliability/test_strict_servers.py; against the real llama-cpp-python server:
tests/integration/test_real_server.py."""

from __future__ import annotations

import pytest

from workflow.llm.base import FatalModelError
from workflow.llm.failfast import FailureTracker
from workflow.llm.gateway import Gateway, Request
from workflow.llm.responses import Summary
from workflow.llm.structured import MODES, is_refusal, request_params
from workflow.store import Store
from workflow.testing.testserver import OpenAITestServer, requested_schema

pytestmark = pytest.mark.integration
MODEL = "openai/test-model"
TEXTS = ["my card has not arrived", "how do I top up", "exchange rate for euros", "cancel my transfer",
         "where is my refund", "pin is blocked"]


@pytest.fixture
def store(db):
    with Store(db) as s:
        yield s


def summarize(store: Store, srv: OpenAITestServer, mode: str = "auto", texts=TEXTS, **kw) -> list:
    gw = Gateway(store, "r1", api_base=srv.base_url, show_progress=False, structured_output=mode, **kw)
    results: list = []
    reqs = [Request(t, {"use_case": "bank support", "max_words": 10, "text": t}) for t in texts]
    gw.map("summarize", MODEL, "summarize", Summary, reqs, lambda r, res: results.append(res), description="s")
    return results


def mode_of(request: dict) -> str:
    if request.get("response_format"):
        return request["response_format"]["type"]
    return "tools" if request.get("tools") else "prompt"


@pytest.mark.parametrize("mode", MODES)
def test_each_mode_gets_valid_answers_from_a_server_that_takes_it(store, mode):
    with OpenAITestServer(profile="vllm" if mode != "json_object" else "llamacpp-python") as srv:
        results = summarize(store, srv, mode, texts=TEXTS[:2])
    assert [r.status for r in results] == ["ok", "ok"]
    assert {mode_of(r) for r in srv.requests} == {mode}
    assert all(requested_schema(r)[1]["title"] == "Summary" for r in srv.requests)


def test_auto_steps_down_on_a_real_refusal_and_later_runs_start_from_the_mode_that_worked(store):
    with OpenAITestServer(profile="llamacpp-python") as srv:
        results = summarize(store, srv, concurrency=3)
        first = list(srv.requests)
        assert all(r.ok for r in results)
        assert store.structured_mode(srv.base_url, MODEL) == "json_object"
        srv.reset_counters()
        summarize(store, srv, texts=["a new document"])
        assert [mode_of(r) for r in srv.requests] == ["json_object"]  # no second json_schema attempt
    assert mode_of(first[0]) == "json_schema" and srv.status_counts.get(500) is None
    assert sum(mode_of(r) == "json_schema" for r in first) <= 3  # at most the requests already in flight


def test_a_mode_the_user_forced_fails_at_once_with_the_fix(store):
    with OpenAITestServer(profile="llamacpp-python") as srv:
        with pytest.raises(FatalModelError) as exc:
            summarize(store, srv, "json_schema", concurrency=1, max_attempts=4)
        assert len(srv.requests) == 1  # no retry, no other document tried
    assert str(exc.value).startswith("server rejects response_format json_schema; try --structured-output json_object")


def test_openai_strict_refuses_an_attached_schema_and_auto_goes_on_to_tools(store):
    with OpenAITestServer(profile="openai-strict") as srv:
        base = srv.base_url
        with pytest.raises(FatalModelError, match="json_object; try --structured-output tools"):
            summarize(store, srv, "json_object", texts=TEXTS[:1])
        store.save_structured_mode(base, MODEL, "json_object")  # as if an earlier run had found it
        results = summarize(store, srv, texts=TEXTS[:1])
    assert results[0].ok and mode_of(srv.requests[-1]) == "tools"
    assert store.structured_mode(base, MODEL) == "tools"


def test_changing_mode_keeps_answers_already_paid_for(store):
    """Documented choice: the mode is not part of the request cache key."""
    with OpenAITestServer() as srv:
        assert all(r.status == "ok" for r in summarize(store, srv, "json_schema"))
        srv.reset_counters()
        assert all(r.status == "cached" for r in summarize(store, srv, "prompt"))
        assert srv.total_requests == 0


def test_identical_errors_across_documents_stop_the_gateway_within_seconds(store):
    with OpenAITestServer(profile="reject-all") as srv:
        with pytest.raises(FatalModelError, match="same error to 5 requests in a row.*model backend crashed.*; "
                           "check --model, --api-base and the server, then `tnt resume`$"):
            summarize(store, srv, concurrency=2, max_attempts=4)
    # json_schema, json_object and tools were refused (400s naming them), then prompts met the broken model
    assert list(dict.fromkeys(mode_of(r) for r in srv.requests)) == list(MODES)  # in order of first use
    assert srv.status_counts[500] < 2 * len(TEXTS)


def test_the_stop_line_is_one_line_naming_the_answer_and_the_fix():
    t = FailureTracker(threshold=2)
    body = "model backend crashed:   unable to load\n the weights"
    t.failure("a", 500, body, "try --structured-output tools")
    line = t.failure("b", 500, body, "try --structured-output tools")
    assert line == t.tripped and "\n" not in line
    assert ("same error to 2 requests in a row" in line
            and "HTTP 500: model backend crashed: unable to load the weights" in line)
    assert line.endswith("; try --structured-output tools, then `tnt resume`")


def test_a_refused_connection_is_no_server_answer_and_never_trips_the_tracker(store):
    probe = OpenAITestServer().start()
    base = probe.base_url
    probe.stop()
    gw = Gateway(store, "r1", api_base=base, show_progress=False, max_attempts=2, concurrency=2)
    results: list = []
    gw.map("summarize", MODEL, "summarize", Summary, [Request(t, {"use_case": "u", "max_words": 5, "text": t})
                                                      for t in TEXTS], lambda r, res: results.append(res),
           description="s")
    assert [r.status for r in results] == ["failed"] * len(TEXTS) and gw.failures.tripped is None


def test_tracker_needs_identical_bodies_from_several_requests_and_a_success_resets_it():
    t = FailureTracker(threshold=3)
    assert [t.failure("a", 500, "boom 1") for _ in range(4)] == [None] * 4  # one request retrying: not proof
    assert t.failure("b", 500, "boom 2") is not None  # numbers differ, the error is the same
    t = FailureTracker(threshold=3)
    t.failure("a", 500, "boom"), t.failure("b", 500, "boom")
    t.success()
    assert t.failure("c", 500, "boom") is None and t.tripped is None
    assert all(t.failure(k, 429, "slow down") is None for k in "abcdef")  # rate limits are transient


def test_refusal_needs_a_refusing_status_and_a_body_naming_the_parameter():
    assert is_refusal("json_schema", 500, "Input should be 'text' or 'json_object' loc response_format")
    assert not is_refusal("json_schema", 500, "Injected 500 fault.")
    assert not is_refusal("json_schema", 429, "response_format rate limited")
    assert is_refusal("tools", 400, '"auto" tool choice requires --enable-auto-tool-choice')
    assert request_params("prompt", [{"role": "user", "content": "x"}], {"title": "S"}, "S")[0][-1]["role"] == "user"
