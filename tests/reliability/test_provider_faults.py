"""Provider faults through a whole `tnt run` over HTTP (litellm -> loopback OpenAI-compatible server), not only
through the gateway: bounded retries, Retry-After honoured, every call logged with its status, documents marked
failed after their last attempt, the run finishing with a report of what failed, and `tnt resume` retrying
exactly the failed calls.

One run carries every fault (the server is driven with concurrency 1, so the order of requests, and so which
document meets which fault, is deterministic); per-fault tests then read their own rows. That keeps the suite
to one run and one resume instead of one per fault.
"""

from __future__ import annotations

import threading

import pytest

from tests.reliability.conftest import USE_CASE, no_traceback, respond, tnt, write_jsonl
from workflow.store import OTHER_ID, Store
from workflow.testing.testserver import OpenAITestServer

pytestmark = pytest.mark.integration

FAULTS = ["timeout", "429", "500", "503", "truncated", "non_json", "invalid_schema", "empty_choices", "refusal"]
MAX_ATTEMPTS = 2
# what the stored error of a call that met only this fault says
ERROR_OF = {
    "timeout": "timeout", "429": "rate limited", "500": "500", "503": "503", "truncated": "connection error",
    "non_json": "invalid response", "invalid_schema": "InvalidOutput", "empty_choices": "no choices",
    "refusal": "the model refused",
}
N_SUMMARIZE = 2 * len(FAULTS) + 2  # per fault: a document that fails, one that recovers; then two clean ones
N_LABEL = 2 * len(FAULTS) + 2  # per fault: a clean document, then one that fails; then clean ones


def long_rows(rows: list[dict]) -> list[dict]:
    """The rows with each text repeated past the summary cap (20 words), so every document is summarised."""
    return [{**r, "text": " ".join([r["text"]] * (21 // len(r["text"].split()) + 1))} for r in rows]


class Plan:
    """Which request meets which fault (requests are sequential: --concurrency 1).

    Summarize: per fault, [f, f, f] is queued: a document fails both its attempts, the next one fails its first
    and recovers on its second; that clean answer queues the next fault's group. Label: each clean answer queues
    [f, f] for the next fault, so every other document's label fails."""

    def __init__(self) -> None:
        self.srv: OpenAITestServer | None = None
        self.todo = {"Summary": [[f, f, f] for f in FAULTS], "Assignment": [[f, f] for f in FAULTS]}
        self.lock = threading.Lock()

    def start(self, srv: OpenAITestServer) -> None:
        self.srv = srv
        srv.add_faults(*self.todo["Summary"].pop(0))

    def __call__(self, request: dict) -> str:
        answer = respond(request)
        kind = request["response_format"]["json_schema"]["name"]
        with self.lock:
            if kind in self.todo and self.todo[kind] and not self.srv.faults:
                self.srv.add_faults(*self.todo[kind].pop(0))
        return answer


@pytest.fixture(scope="module")
def faulty_run(tmp_path_factory):
    """One `tnt run` meeting every fault, then one `tnt resume`; what the tests below inspect."""
    from tests.conftest import sample_rows

    tmp = tmp_path_factory.mktemp("faults")
    corpus = write_jsonl(tmp / "corpus.jsonl", long_rows(sample_rows(60)))
    db = str(tmp / "tnt.duckdb")
    plan = Plan()
    srv = OpenAITestServer(responder=plan, timeout_sleep_s=1.5, retry_after_s=1)
    plan.start(srv)
    with srv:
        first = tnt(
            "run", corpus, "--use-case", USE_CASE, "--db", db, "--model", "openai/test-model",
            "--api-base", srv.base_url, "--concurrency", 1, "--max-attempts", MAX_ATTEMPTS, "--timeout", 0.5,
            "--taxonomy-sample", N_SUMMARIZE, "--batch-size", N_SUMMARIZE, "--label-sample", N_LABEL,
            "--max-labels", 5, "--proposal", "minibatch", "-q",  # the minibatch path summarises every sampled document
        )
        requests_after_run = len(srv.requests)
        with Store(db) as store:
            run_id = store.latest_run_id()
            snapshot = {
                "calls": store.query("SELECT * FROM llm_calls WHERE run_id = ? ORDER BY created_at, rowid", [run_id]),
                "summaries": store.query("SELECT * FROM summaries WHERE run_id = ?", [run_id]),
                "assignments": store.query("SELECT * FROM assignments WHERE run_id = ? AND source = 'llm'", [run_id]),
                "taxonomies": store.taxonomy_versions(run_id),
                "run": store.run(run_id),
            }
        resumed = tnt("resume", run_id, "--db", db, "--retry-failed", "-q")
        resumed_requests = srv.requests[requests_after_run:]
    return {"first": first, "resumed": resumed, "db": db, "run_id": run_id, "srv": srv,
            "requests_after_run": requests_after_run, "resumed_requests": resumed_requests, **snapshot}


def _by_step(calls: list[dict], step: str) -> list[dict]:
    return [c for c in calls if c["step"] == step]


def test_run_with_faults_finishes_and_reports_what_failed(faulty_run):
    res = faulty_run["first"]
    no_traceback(res.output)
    assert res.exit_code == 0, res.output
    assert faulty_run["run"]["status"] == "done"
    n = len(FAULTS)
    flat = " ".join(res.output.split())
    assert f"without an answer: {n} summaries, {n} labels" in flat
    assert "--retry-failed" in flat
    calls = faulty_run["calls"]
    # the schema-invalid answers were answered: 'rejected'; every other fault got no answer: 'failed'
    assert sum(c["status"] == "failed" for c in calls) == 2 * (n - 1)
    assert sum(c["status"] == "rejected" for c in calls) == 2
    # every failed document has its failed status stored, with the call that failed it
    failed_summaries = [s for s in faulty_run["summaries"] if s["status"] == "failed"]
    failed_labels = [a for a in faulty_run["assignments"] if a["status"] == "failed"]
    assert len(failed_summaries) == n and len(failed_labels) == n
    failed_ids = {c["call_id"] for c in calls if c["status"] in ("failed", "rejected")}
    assert {s["call_id"] for s in failed_summaries} | {a["call_id"] for a in failed_labels} == failed_ids
    assert all(a["label_id"] is None for a in failed_labels)


def test_retries_are_bounded_and_no_hidden_retries(faulty_run):
    calls = faulty_run["calls"]
    assert all(1 <= c["attempts"] <= MAX_ATTEMPTS for c in calls)
    # each attempt is exactly one HTTP request: litellm / the OpenAI SDK add no retries of their own
    assert sum(c["attempts"] for c in calls) == faulty_run["requests_after_run"]


@pytest.mark.parametrize("fault", FAULTS)
def test_each_fault_fails_its_document_after_the_last_attempt_and_a_single_fault_is_retried(faulty_run, fault):
    i = FAULTS.index(fault)
    summarize = _by_step(faulty_run["calls"], "summarize")
    failed, recovered = summarize[2 * i], summarize[2 * i + 1]
    status = "rejected" if fault == "invalid_schema" else "failed"
    assert failed["status"] == status and failed["attempts"] == MAX_ATTEMPTS
    assert ERROR_OF[fault].lower() in failed["error"].lower(), failed["error"]
    assert recovered["status"] == "ok" and recovered["attempts"] == 2 and recovered["error"] is None
    label = _by_step(faulty_run["calls"], "label")
    assert label[2 * i]["status"] == "ok"
    failed_label = label[2 * i + 1]
    assert failed_label["status"] == status and failed_label["attempts"] == MAX_ATTEMPTS
    assert ERROR_OF[fault].lower() in failed_label["error"].lower(), failed_label["error"]
    if fault == "429":  # Retry-After: 1 was waited before each second attempt
        assert failed["latency_s"] >= 1.0 and recovered["latency_s"] >= 1.0


def test_resume_retries_exactly_the_failed_calls(faulty_run):
    res = faulty_run["resumed"]
    no_traceback(res.output)
    assert res.exit_code == 0, res.output
    n = len(FAULTS)
    sent = faulty_run["resumed_requests"]
    kinds = [r["response_format"]["json_schema"]["name"] for r in sent]
    assert sorted(kinds) == sorted(["Summary"] * n + ["Assignment"] * n), kinds
    failed_texts = {s["doc_id"] for s in faulty_run["summaries"] if s["status"] == "failed"}
    with Store(faulty_run["db"], read_only=True) as store:
        run_id = faulty_run["run_id"]
        assert store.count_failed(run_id) == {"summaries": 0, "labels": 0}
        assert store.run(run_id)["status"] == "done"
        # finished work is kept as it was: ok summaries and labels of the first run are unchanged
        now_summaries = {s["doc_id"]: s for s in store.query("SELECT * FROM summaries WHERE run_id = ?", [run_id])}
        for s in faulty_run["summaries"]:
            if s["status"] == "ok":
                assert now_summaries[s["doc_id"]] == s
        assert set(now_summaries) == {s["doc_id"] for s in faulty_run["summaries"]}
        assert all(now_summaries[d]["status"] == "ok" for d in failed_texts)
        now_labels = {a["doc_id"]: a for a in store.query(
            "SELECT * FROM assignments WHERE run_id = ? AND source = 'llm'", [run_id])}
        for a in faulty_run["assignments"]:
            if a["status"] == "ok":
                assert now_labels[a["doc_id"]]["label_id"] == a["label_id"]
        _, labels = store.taxonomy(run_id)
        assert {a["label_id"] for a in now_labels.values()} <= {lb.label_id for lb in labels} | {OTHER_ID}
        assert len(now_labels) == N_LABEL
        # the taxonomy was final: resume added no version
        assert store.taxonomy_versions(run_id) == faulty_run["taxonomies"]
        # the classifier was retrained on the completed labels and predicts the whole corpus
        model = store.model(run_id=run_id)
        assert store.query("SELECT count(*) AS n FROM predictions WHERE model_id = ?",
                           [model["model_id"]])[0]["n"] == store.corpus_size(store.run(run_id)["corpus"])
        # one ok row per request: the cache answered everything that had been answered before
        dup = store.query("SELECT request_hash FROM llm_calls WHERE status = 'ok' GROUP BY 1 HAVING count(*) > 1")
        assert dup == []
    # resuming again has nothing left to do
    again = tnt("resume", faulty_run["run_id"], "--db", faulty_run["db"], "-q")
    assert again.exit_code == 0 and "already finished" in again.output


@pytest.mark.parametrize("proposal,why,resume_requests", [
    ("minibatch", "could be summarised", 10 + 2 + 10),  # summaries, propose + review, labels
    ("clusters", "no cluster could be named", 1 + 2 + 1 + 10),  # the one long shown document's summary, names of
    # 2 clusters, merge, labels
])
def test_provider_down_fails_the_run_clearly_then_resume_completes(tmp_path, rows, proposal, why, resume_requests):
    """Connection refused on every call: the run fails with one clear line (exit 1) because no summary (or
    cluster name) came back to build a taxonomy from; once the provider is back, `tnt resume` finishes, nothing
    asked twice."""
    corpus = write_jsonl(tmp_path / "c.jsonl", long_rows(rows[:30]) if proposal == "minibatch" else rows[:30])
    db = str(tmp_path / "tnt.duckdb")
    probe = OpenAITestServer().start()
    port = probe.port
    base = probe.base_url
    probe.stop()
    args = ["--concurrency", 2, "--max-attempts", 2, "--timeout", 2, "--taxonomy-sample", 10, "--batch-size", 10,
            "--label-sample", 10, "--max-labels", 4, "--proposal", proposal, "-q"]
    res = tnt("run", corpus, "--use-case", USE_CASE, "--db", db, "--model", "openai/test-model", "--api-base", base,
              *args)
    no_traceback(res.output)
    assert res.exit_code == 1, res.output
    assert why in " ".join(res.output.split()) and "tnt resume" in res.output
    with Store(db, read_only=True) as store:
        run_id = store.latest_run_id()
        assert store.run(run_id)["status"] == "failed"
        if proposal == "minibatch":
            assert store.count_failed(run_id)["summaries"] == 10
        assert store.query("SELECT count(*) AS n FROM llm_calls WHERE status = 'ok'")[0]["n"] == 0
    with OpenAITestServer(responder=respond, port=port) as srv:
        res = tnt("resume", run_id, "--db", db, "-q")
        no_traceback(res.output)
        assert res.exit_code == 0, res.output
        assert len(srv.requests) == resume_requests, [r["response_format"]["json_schema"]["name"] for r in srv.requests]
    with Store(db, read_only=True) as store:
        assert store.run(run_id)["status"] == "done"
        assert store.count_failed(run_id) == {"summaries": 0, "labels": 0}


def test_fatal_provider_error_stops_the_run_with_one_line(tmp_path, rows):
    """A 404 (wrong api base / unknown model) cannot be helped by retrying: exit 1 at once, one clear line."""
    corpus = write_jsonl(tmp_path / "c.jsonl", rows[:20])
    db = str(tmp_path / "tnt.duckdb")
    with OpenAITestServer(responder=respond) as srv:
        wrong = srv.base_url.removesuffix("/v1") + "/nowhere/v1"
        res = tnt("run", corpus, "--use-case", USE_CASE, "--db", db, "--model", "openai/test-model",
                  "--api-base", wrong, "--concurrency", 1, "--taxonomy-sample", 10, "--batch-size", 10,
                  "--label-sample", 10, "-q")
        no_traceback(res.output)
        assert res.exit_code == 1, res.output
        assert "openai/test-model: HTTP 404 not found: " in res.output, res.output
    with Store(db, read_only=True) as store:
        run_id = store.latest_run_id()
        assert store.run(run_id)["status"] == "failed"
        calls = store.query("SELECT status, attempts FROM llm_calls")
    # no retries of a fatal error: one attempt per call (the worker may have started one more call meanwhile)
    assert 1 <= len(calls) <= 2 and all(c == {"status": "failed", "attempts": 1} for c in calls)
    assert srv.total_requests == srv.status_counts[404] == len(calls)
