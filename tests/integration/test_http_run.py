"""A whole run through litellm against a real OpenAI-compatible HTTP server on loopback."""

from __future__ import annotations

import json

import pytest

from workflow.clustering import n_clusters
from workflow.config import JobConfig
from workflow.ingest import read_corpus
from workflow.runner import execute
from workflow.store import OTHER_ID, Store
from workflow.testing.scripted import PROMPT_OF_SCHEMA, keywords
from workflow.testing.testserver import OpenAITestServer

pytestmark = pytest.mark.integration



def respond(request: dict) -> str:
    """Answer like scripted/keywords, picking the prompt from the response schema's name."""
    name = request["response_format"]["json_schema"]["name"]
    return keywords(PROMPT_OF_SCHEMA[name], request["messages"], request["response_format"]["json_schema"]["schema"])


def test_run_over_http_with_faults_then_rerun_is_free(corpus, db, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")
    with OpenAITestServer(responder=respond, faults=["429", "500", "non_json"],
                          retry_after_s=0) as srv, Store(db) as store:
        store.insert_documents("c", read_corpus(str(corpus)).records)
        config = JobConfig(use_case="What do customers ask the bank's support bot for?", model="openai/test-model",
                           api_base=srv.base_url, batch_size=20, taxonomy_sample=40, label_sample=30, max_labels=6)
        run_id = store.create_run("c", config.use_case, config.model_dump())
        outcome = execute(store, run_id, show_progress=False)
        assert outcome.status == "done", outcome.message
        assert srv.status_counts[429] == 1 and srv.status_counts[500] == 1
        rows = store.query("SELECT prompt_name, status, count(*) AS n FROM llm_calls WHERE run_id = ? GROUP BY ALL",
                           [run_id])
        calls = {(r["prompt_name"], r["status"]): r["n"] for r in rows}
        assert calls[("label", "ok")] == 30 and calls[("merge_labels", "ok")] == 1
        k = n_clusters(40, config.max_labels, config.cluster_factor)
        assert sum(calls.get(("name_cluster", s), 0) for s in ("ok", "rejected", "failed")) == k
        # naming tries twice (keyword names are its fallback): one name call may meet two of the three faults;
        # a rejected name (answered, refused by validation) is no fault
        assert sum(n for (_, status), n in calls.items() if status == "failed") <= 1
        _, labels = store.taxonomy(run_id)
        assert set(store.assignments(run_id).values()) <= {lb.label_id for lb in labels} | {OTHER_ID}
        sent = srv.total_requests

        rerun = store.create_run("c", config.use_case, config.model_dump())
        assert execute(store, rerun, show_progress=False).status == "done"
        assert srv.total_requests == sent  # zero model calls the second time
    assert "sk-test-not-a-real-key" not in json.dumps(srv.requests)
