"""Whole `tnt run`s against the loopback server's strict profiles, which refuse requests the way real servers do
(workflow/testing/testserver.py validate_request), with provider faults on top: each finishes `done` in the mode the
server takes, a later run starts from the recorded mode, a mode the user forces on a server that refuses it
stops at once, and a server that refuses every mode stops the run within seconds with one line."""

from __future__ import annotations

import pytest

from tests.reliability.conftest import USE_CASE, no_traceback, respond, tnt, write_jsonl
from workflow.store import Store
from workflow.testing.testserver import OpenAITestServer

pytestmark = pytest.mark.integration
MODEL = "openai/test-model"
# the mode each profile ends up in under `auto` (litellm knows nothing of openai/test-model: json_schema first)
SETTLES_ON = {"llamacpp-python": "json_object", "vllm": "json_schema", "openai-strict": "json_schema"}


def mode_of(request: dict) -> str:
    if request.get("response_format"):
        return request["response_format"]["type"]
    return "tools" if request.get("tools") else "prompt"


def run(tmp_path, srv: OpenAITestServer, n: int = 12, *extra):
    from tests.conftest import sample_rows

    corpus = write_jsonl(tmp_path / "c.jsonl", sample_rows(n))
    return tnt("run", corpus, "-u", USE_CASE, "--db", str(tmp_path / "t.duckdb"), "--model", MODEL,
               "--api-base", srv.base_url, "--taxonomy-sample", n, "--batch-size", n, "--label-sample", n,
               "--concurrency", 2, "-q", *extra)


@pytest.mark.parametrize("profile", sorted(SETTLES_ON))
def test_run_finishes_against_each_strict_profile_with_faults_and_a_later_run_starts_from_the_recorded_mode(
        tmp_path, profile):
    srv = OpenAITestServer(responder=respond, profile=profile, faults=["500", "429", "503"], retry_after_s=0.1)
    with srv:
        base = srv.base_url
        res = run(tmp_path, srv)
        no_traceback(res.output)
        assert res.exit_code == 0, res.output
        assert "done:" in res.output and srv.status_counts[200] > 0
        with Store(str(tmp_path / "t.duckdb"), read_only=True) as store:
            assert store.structured_mode(base, MODEL) == SETTLES_ON[profile]
            assert store.query("SELECT count(*) AS n FROM llm_calls WHERE status <> 'ok'")[0]["n"] == 0
        first = len(srv.requests)
        res = run(tmp_path, srv, 12, "--seed", 1)  # new requests (the seed is in the cache key), same server
        assert res.exit_code == 0, res.output
        later = srv.requests[first:]
    assert later and {mode_of(r) for r in later} == {SETTLES_ON[profile]}


def test_a_forced_mode_the_server_refuses_stops_the_run_at_once_with_the_fix(tmp_path):
    with OpenAITestServer(responder=respond, profile="llamacpp-python") as srv:
        res = run(tmp_path, srv, 20, "--structured-output", "json_schema")
    no_traceback(res.output)
    assert res.exit_code == 1, res.output
    failed = [line for line in res.output.splitlines() if line.startswith("failed:")]
    assert len(failed) == 1, res.output
    assert failed == ["failed: server rejects response_format json_schema; try --structured-output json_object "
                      "(HTTP 500: Input should be 'text' or 'json_object')"]
    assert srv.total_requests <= 2  # the requests already in flight, nothing retried


def test_a_server_that_refuses_every_mode_stops_the_run_within_seconds_with_one_line(tmp_path):
    with OpenAITestServer(profile="reject-all") as srv:
        res = run(tmp_path, srv, 20, "--max-attempts", 4)
    no_traceback(res.output)
    assert res.exit_code == 1, res.output
    failed = [line for line in res.output.splitlines() if line.startswith("failed:")]
    assert len(failed) == 1, res.output
    assert "same error to 5 requests in a row" in failed[0] and "model backend crashed" in failed[0]
    assert failed[0].endswith("check --model, --api-base and the server, then `tnt resume`")
    # per refused mode the 2 requests in flight (--concurrency 2), then 5 identical errors and what was in flight:
    # not 20 documents x 4 attempts (the time it takes: benchmarks/bench_refuse_all.py)
    assert srv.total_requests <= 3 * 2 + 5 + 2, srv.total_requests
