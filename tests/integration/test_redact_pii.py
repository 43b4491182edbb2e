"""`--redact-pii`: planted personal data never reaches a model server; stored documents keep it."""

from __future__ import annotations

import json

import pytest
from conftest import sample_rows

from workflow.config import JobConfig
from workflow.ingest import read_corpus
from workflow.runner import execute
from workflow.store import Store
from workflow.testing.scripted import PROMPT_OF_SCHEMA, keywords
from workflow.testing.testserver import OpenAITestServer

pytestmark = pytest.mark.integration

# Valid by their checksums (Luhn, mod-97): the scrubber only takes what validates.
PLANTED = {
    "email": ["jane.doe@example.com", "m.rossi+bank@mail.example.org"],
    "phone": ["+44 7700 900123", "(555) 123-4567", "020 7946 0958"],
    "card": ["4111 1111 1111 1111", "5500-0055-5555-5559"],
    "iban": ["DE89 3704 0044 0532 0130 00", "GB82WEST12345698765432"],
}


def respond(request: dict) -> str:
    name = request["response_format"]["json_schema"]["name"]
    return keywords(PROMPT_OF_SCHEMA[name], request["messages"], request["response_format"]["json_schema"]["schema"])


def planted_corpus(tmp_path) -> tuple[str, dict[str, str]]:
    """60 banking queries; 18 of them (short and long) carry one planted value each."""
    rows = sample_rows(60)
    values = [v for vs in PLANTED.values() for v in vs]
    planted = {}
    for i, row in enumerate(rows[:18]):
        value = values[i % len(values)]
        long = " I have been waiting for a reply for a long time and nobody at the branch could tell me anything."
        row["text"] = f"{row['text']} You can reach me at {value}." + (long if i % 2 else "")
        planted[str(row["id"])] = value
    path = tmp_path / "pii.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path), planted


def test_no_prompt_to_a_loopback_server_carries_planted_pii(tmp_path, db, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")
    path, planted = planted_corpus(tmp_path)
    with OpenAITestServer(responder=respond) as srv, Store(db) as store:
        store.insert_documents("c", read_corpus(path).records)
        config = JobConfig(use_case="What do customers ask the bank's support bot for?", model="openai/test-model",
                           api_base=srv.base_url, batch_size=30, taxonomy_sample=60, label_sample=60, max_labels=5,
                           teacher="llm", redact_pii=True, proposal="minibatch")
        run_id = store.create_run("c", config.use_case, config.model_dump())
        outcome = execute(store, run_id, show_progress=False)
        assert outcome.status == "done", outcome.message

        sent = json.dumps(srv.requests)
        assert srv.requests
        for value in planted.values():
            assert value not in sent
            assert value.replace(" ", "").replace("-", "") not in sent.replace(" ", "").replace("-", "")
        for token in ("[EMAIL]", "[PHONE]", "[CARD]", "[IBAN]"):  # the planted documents were sent, scrubbed
            assert token in sent
        counts = store.redaction_counts(run_id)
        assert set(counts) == {"email", "phone", "card", "iban", "prompts"} and counts["prompts"] > 0
        # every planted document went to the label step once (teacher llm, all 60 sampled)
        labeled = store.query("SELECT count(*) AS n FROM redactions r JOIN llm_calls c USING (call_id) "
                              "WHERE r.run_id = ? AND c.step = 'label'", [run_id])[0]["n"]
        assert labeled >= len(planted)
        stored = {d.doc_id: d.text for d in store.documents("c", list(planted))}
        assert all(value in stored[doc_id] for doc_id, value in planted.items())  # the store keeps the original


def test_without_the_flag_the_same_prompts_carry_it(tmp_path, db, monkeypatch):
    """The control: the planted values do reach the server when --redact-pii is off (the test above can fail)."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")
    path, planted = planted_corpus(tmp_path)
    with OpenAITestServer(responder=respond) as srv, Store(db) as store:
        store.insert_documents("c", read_corpus(path).records)
        config = JobConfig(use_case="What do customers ask the bank's support bot for?", model="openai/test-model",
                           api_base=srv.base_url, batch_size=30, taxonomy_sample=60, label_sample=60, max_labels=5,
                           teacher="llm", proposal="minibatch")
        run_id = store.create_run("c", config.use_case, config.model_dump())
        assert execute(store, run_id, show_progress=False).status == "done"
        sent = json.dumps(srv.requests)
        assert all(value in sent for value in planted.values())
        assert store.redaction_counts(run_id) == {}
