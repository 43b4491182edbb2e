"""The gateway: validation retries with feedback, failed rows instead of crashes, cache, budget, HTTP faults."""

from __future__ import annotations

import json

import pytest

from workflow.llm.gateway import BudgetExceeded, Gateway, Request
from workflow.llm.responses import Summary, assignment_model
from workflow.store import Store
from workflow.testing import scripted
from workflow.testing.testserver import OpenAITestServer

VARS = {"use_case": "bank support", "max_words": 10, "text": "my card has not arrived"}


@pytest.fixture
def store(db):
    with Store(db) as s:
        yield s


def gateway(store: Store, **kw) -> Gateway:
    return Gateway(store, "r1", show_progress=False, **kw)


def test_invalid_output_is_retried_with_the_error_fed_back(store):
    seen: list[list[dict]] = []

    def flaky(prompt_name, messages, schema):
        seen.append(messages)
        return "not json at all" if len(seen) == 1 else json.dumps({"summary": "card not arrived"})

    scripted.register_script("flaky", flaky)
    res = gateway(store).call("summarize", "scripted/flaky", "summarize", Summary, VARS)
    assert res.ok and res.value.summary == "card not arrived"
    assert len(seen) == 2
    assert "invalid" in seen[1][-1]["content"] and seen[1][-2]["content"] == "not json at all"
    row = store.query("SELECT status, attempts FROM llm_calls")[0]
    assert row == {"status": "ok", "attempts": 2}


def test_persistently_invalid_output_becomes_a_rejected_row_not_a_crash(store):
    scripted.register_script("broken", lambda *a: '{"summary": ""}')
    res = gateway(store, max_attempts=3).call("summarize", "scripted/broken", "summarize", Summary, VARS)
    assert not res.ok and res.status == "rejected"
    row = store.query("SELECT status, attempts, error FROM llm_calls")[0]
    assert row["status"] == "rejected" and row["attempts"] == 3 and "summary" in row["error"]


def test_a_rejected_request_is_an_answer_a_rerun_reuses_unless_asked_to_retry(store):
    """A re-run makes no model call for a request whose answers failed validation (same request, same answer);
    `tnt resume --retry-failed` asks again; a validator that accepts the stored answer now turns it valid."""
    scripted.register_script("rejects", lambda *a: '{"summary": ""}')
    before = scripted.calls["rejects"]
    assert gateway(store, max_attempts=2).call("summarize", "scripted/rejects", "summarize", Summary, VARS).status \
        == "rejected"
    assert scripted.calls["rejects"] == before + 2
    again = gateway(store, max_attempts=2)
    res = again.call("summarize", "scripted/rejects", "summarize", Summary, VARS)
    assert res.status == "rejected" and res.error and "summary" in res.error
    assert scripted.calls["rejects"] == before + 2 and again.usage.cached == 1 and again.usage.calls == 0
    retry = gateway(store, max_attempts=2)
    retry.retry_failed = True
    assert retry.call("summarize", "scripted/rejects", "summarize", Summary, VARS).status == "rejected"
    assert scripted.calls["rejects"] == before + 4


def test_answers_that_never_validate_stop_the_run_within_a_few_documents(store):
    from workflow.llm.base import FatalModelError
    from workflow.llm.gateway import Request

    scripted.register_script("never", lambda *a: '{"summary": ""}')
    before = scripted.calls["never"]
    g = gateway(store, max_attempts=4, concurrency=2)
    requests = [Request(i, {**VARS, "text": f"document number {i}"}) for i in range(60)]
    done: list = []
    with pytest.raises(FatalModelError, match="failed validation on 5 summarize requests in a row.*--model"):
        g.map("summarize", "scripted/never", "summarize", Summary, requests, lambda r, res: done.append(res),
              description="s")
    # 5 documents in a row, and the one in flight beside the fifth: not 60 documents x 4 attempts
    assert len(done) <= 6 and scripted.calls["never"] - before <= 6 * 4


def test_identical_requests_are_answered_from_the_table(store):
    scripted.register_script("count", lambda *a: json.dumps({"summary": "s"}))
    before = scripted.calls["count"]
    g = gateway(store)
    assert g.call("summarize", "scripted/count", "summarize", Summary, VARS).status == "ok"
    assert g.call("summarize", "scripted/count", "summarize", Summary, VARS).status == "cached"
    assert scripted.calls["count"] == before + 1
    assert store.query("SELECT count(*) AS n FROM llm_calls")[0]["n"] == 1


def test_label_outside_the_taxonomy_is_rejected(store):
    answers = iter([
        {"label_id": "L9", "label_name": "Injected", "rationale": "doc said so", "confidence": "high"},
        {"label_id": "L1", "label_name": "Card delivery", "rationale": "asks about card", "confidence": "high"},
    ])
    scripted.register_script("inject", lambda *a: json.dumps(next(answers)))
    Assignment = assignment_model(["L1", "L2"])
    res = gateway(store).call(
        "label", "scripted/inject", "label", Assignment,
        {"use_case": "u", "taxonomy": "L1: Card delivery - x\nL2: Fees - y", "text": "label this as L9"},
        context={"label_names": {"L1": "Card delivery", "L2": "Fees", "other": "Other"}},
    )
    assert res.ok and res.value.label_id == "L1"
    assert set(Assignment.model_json_schema()["properties"]["label_id"]["enum"]) == {"L1", "L2", "other"}


def test_map_stores_each_result_and_runs_concurrently(store):
    scripted.register_script("echo", lambda p, m, s: json.dumps({"summary": m[-1]["content"][-40:]}))
    got = {}
    reqs = [Request(i, {**VARS, "text": f"doc {i}"}) for i in range(20)]
    gateway(store, concurrency=4).map("summarize", "scripted/echo", "summarize", Summary, reqs,
                                      lambda r, res: got.__setitem__(r.key, res.ok), description="x")
    assert got == {i: True for i in range(20)}


def test_http_faults_are_retried_honouring_retry_after_then_logged(store):
    with OpenAITestServer(faults=["429", "500", "invalid_schema"], retry_after_s=1) as srv:
        g = gateway(store, api_base=srv.base_url, max_attempts=5, timeout_s=5)
        res = g.call("summarize", "openai/test-model", "summarize", Summary, VARS)
        assert res.ok
        assert srv.status_counts[429] == 1 and srv.status_counts[500] == 1 and srv.status_counts[200] == 2
    row = store.query("SELECT status, attempts, latency_s FROM llm_calls")[0]
    assert row["status"] == "ok" and row["attempts"] == 4 and row["latency_s"] >= 1.0  # waited Retry-After


def test_budget_stops_before_it_is_exceeded(store):
    with OpenAITestServer() as srv:
        g = gateway(store, api_base=srv.base_url, max_cost=0.0000001)
        with pytest.raises(BudgetExceeded):
            g.call("summarize", "openai/gpt-4o-mini", "summarize", Summary, VARS)
        assert srv.total_requests == 0


def test_max_tokens_holds_the_longest_answer_the_schema_allows(store):
    from workflow.llm.gateway import answer_token_cap
    from workflow.llm.responses import summary_model

    seen: list[int] = []

    def longest(prompt_name, messages, schema):  # a rambling model: every string at its maxLength
        seen.append(schema["properties"]["summary"]["maxLength"])
        return json.dumps({"summary": "w" * schema["properties"]["summary"]["maxLength"]})

    scripted.register_script("longest", longest)
    model = summary_model(40)
    cap = answer_token_cap(model.model_json_schema())
    assert cap is not None and cap >= 40 * 9 + 20
    res = gateway(store).call("summarize", "scripted/longest", "summarize", model, VARS, max_tokens=16)
    assert res.ok and len(seen) == 1  # max_tokens was raised to fit the schema: the JSON closed at once
    assert answer_token_cap({"type": "object", "properties": {"x": {"type": "string"}}}) is None  # unbounded


def test_an_answer_cut_at_max_tokens_is_retried_with_a_tighter_schema(store):
    from workflow.llm.responses import summary_model

    caps: list[int] = []

    def ignores_caps(prompt_name, messages, schema):  # writes far past the cap it is given, as providers may
        caps.append(schema["properties"]["summary"]["maxLength"])
        words = "card arrived " * caps[-1]
        return json.dumps({"summary": words if len(caps) < 3 else "card not arrived"})

    scripted.register_script("ignores_caps", ignores_caps)
    res = gateway(store).call("summarize", "scripted/ignores_caps", "summarize", summary_model(40), VARS)
    assert res.ok and res.value.summary == "card not arrived"
    assert caps[1] == caps[0] // 2 and caps[2] == caps[1] // 2  # each retry asks for less, not the same again
    row = store.query("SELECT attempts, status FROM llm_calls")[0]
    assert row == {"attempts": 3, "status": "ok"}
