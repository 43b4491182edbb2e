"""What a run concludes from a provider's answers: a flaky server is retried, not declared broken; failed calls
of a finished run are asked again when the user says so; a key echoed in an error is never shown or stored; the
budget stop line says what was really spent."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.reliability.conftest import USE_CASE, no_traceback, respond, tnt, tnt_subprocess, write_jsonl
from tests.reliability.test_provider_faults import long_rows
from workflow.llm import gateway
from workflow.store import Store
from workflow.testing.testserver import OpenAITestServer

pytestmark = pytest.mark.integration


@pytest.fixture
def no_backoff(monkeypatch):
    monkeypatch.setattr(gateway, "_wait", lambda state: 0.0)


def test_a_flaky_server_does_not_trip_the_breaker(tmp_path, rows, no_backoff):
    """Identical 500 bodies on half the requests at random: a run of 5 in a row happens every ~64 requests, and
    the next attempt would succeed, so the run must go on (it stopped after 47 requests before)."""
    corpus = write_jsonl(tmp_path / "c.jsonl", rows[:100])
    db = str(tmp_path / "t.duckdb")
    with OpenAITestServer(responder=respond, error_rate=0.5, seed=7) as srv:
        res = tnt("run", corpus, "-u", USE_CASE, "--db", db, "--model", "openai/test-model", "--api-base",
                  srv.base_url, "--concurrency", 1, "--max-attempts", 10, "--taxonomy-sample", 40,
                  "--label-sample", 100, "--max-labels", 4, "--teacher", "llm", "-q")
        errors = srv.status_counts[500]
    no_traceback(res.output)
    assert "retrying will not help" not in res.output
    assert res.exit_code == 0, res.output
    assert errors >= 60  # the server really failed half the time


def test_retry_failed_asks_failed_summaries_of_a_finished_run_again(tmp_path, rows, no_backoff):
    """A summary the model never answered validly stays failed in a finished run; the summary line's promise
    (`tnt resume RUN --retry-failed`) asks it again, and a plain resume or re-run does not."""
    docs = long_rows(rows[:30])  # long: the documents shown to name clusters are summarised
    corpus = write_jsonl(tmp_path / "c.jsonl", docs)
    db = str(tmp_path / "t.duckdb")
    broken = {"on": True}

    def responder(request: dict) -> str:
        text = request["messages"][1]["content"]  # the document (a retry appends the validation error)
        if broken["on"] and "write short summaries" in request["messages"][0]["content"] and "card" in text.lower():
            return json.dumps({"summary": ""})  # answered, never valid
        return respond(request)

    args = ["--concurrency", 1, "--max-attempts", 2, "--taxonomy-sample", 20, "--label-sample", 10, "--teacher",
            "nearest", "--max-labels", 3, "-q"]
    with OpenAITestServer(responder=responder) as srv:
        res = tnt("run", corpus, "-u", USE_CASE, "--db", db, "--model", "openai/test-model", "--api-base",
                  srv.base_url, *args)
        assert res.exit_code == 0, res.output
        flat = " ".join(res.output.split())
        with Store(db, read_only=True) as store:
            run_id = store.latest_run_id()
            failed = store.count_failed(run_id)["summaries"]
        assert failed >= 1
        assert f"tnt resume {run_id} --retry-failed" in flat  # what the summary promises...

        broken["on"] = False
        srv.reset_counters()
        plain = tnt("resume", run_id, "--db", db, "-q")
        assert plain.exit_code == 0 and "already finished" in plain.output and "--retry-failed" in plain.output
        assert srv.total_requests == 0

        retried = tnt("resume", run_id, "--db", db, "--retry-failed", "-q")  # ...is true
        no_traceback(retried.output)
        assert retried.exit_code == 0, retried.output
        assert srv.total_requests == failed
    with Store(db, read_only=True) as store:
        assert store.count_failed(run_id)["summaries"] == 0 and store.run(run_id)["status"] == "done"


class _EchoKeyHandler(BaseHTTPRequestHandler):
    """A provider whose 401 repeats the key it was sent, as some do."""

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        key = self.headers.get("Authorization", "").removeprefix("Bearer ")
        body = json.dumps({"error": {"message": f"Incorrect API key provided: {key}. Check your key.",
                                     "type": "invalid_request_error", "code": "invalid_api_key"}}).encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_a_key_echoed_in_a_provider_error_is_never_printed_or_stored(tmp_path, rows):
    key = "sk-proj-THISisAsecretKEY0123456789abcdef"
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EchoKeyHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        corpus = write_jsonl(tmp_path / "c.jsonl", rows[:20])
        db = tmp_path / "t.duckdb"
        res = tnt_subprocess("run", corpus, "-u", USE_CASE, "--db", db, "--model", "openai/test-model", "--api-base",
                             f"http://127.0.0.1:{server.server_port}/v1", "--taxonomy-sample", 20, "--label-sample",
                             10, "--max-labels", 3, "-q", "-v", env={"OPENAI_API_KEY": key})
        status = tnt_subprocess("status", "--db", db, env={"OPENAI_API_KEY": key})
    finally:
        server.shutdown()
    assert res.returncode == 1, res.stderr
    assert "401" in res.stderr and "[REDACTED]" in res.stderr
    for text in (res.stdout, res.stderr, status.stdout, status.stderr):
        assert key not in text and key[-12:] not in text
    with Store(db, read_only=True) as store:
        run = store.run(store.latest_run_id())
        assert "[REDACTED]" in run["error"] and key not in run["error"]
        errors = " ".join(r["error"] or "" for r in store.query("SELECT error FROM llm_calls"))
        assert key[-12:] not in errors
    assert key[-12:].encode() not in db.read_bytes()


def test_budget_stop_line_matches_the_logged_cost(tmp_path, rows):
    """The stop line is written once the calls in flight have finished, so it says what llm_calls says."""
    corpus = write_jsonl(tmp_path / "c.jsonl", long_rows(rows[:40]))
    db = str(tmp_path / "t.duckdb")
    with OpenAITestServer(responder=respond, latency_s=0.05) as srv:
        res = tnt("run", corpus, "-u", USE_CASE, "--db", db, "--model", "openai/gpt-4o-mini", "--api-base",
                  srv.base_url, "--concurrency", 8, "--taxonomy-sample", 40, "--label-sample", 40,
                  "--proposal", "minibatch", "--max-cost", 0.0008, "-q")
    assert res.exit_code == 3, res.output
    line = next(ln for ln in res.output.splitlines() if ln.startswith("stopped:"))
    with Store(db, read_only=True) as store:
        logged = store.total_cost(store.latest_run_id())
    assert logged > 0 and f"(spent ${logged:.4f})" in line, (line, logged)
