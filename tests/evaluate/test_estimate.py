"""`tnt run --dry-run`: calls and tokens per phase from the config and text lengths, priced from litellm's map."""

from __future__ import annotations

import math

import pytest
from typer.testing import CliRunner

from workflow.cli import app
from workflow.config import JobConfig
from workflow.estimate import estimate_run, price, total_cost

UC = "What do customers ask the bank's support bot for?"


def by_step(config: JobConfig, texts: list[str]) -> dict:
    return {p.step: p for p in estimate_run(config, texts)}


LONG = "how do I top up my card with a transfer from another bank account that is in a different currency please"


def test_calls_follow_the_graph_and_the_corpus_size():
    cfg = JobConfig(use_case=UC, model="gpt-4o-mini", taxonomy_sample=500, label_sample=300, batch_size=200,
                    proposal="minibatch")
    est = by_step(cfg, [LONG] * 1000)
    assert est["summarize"].calls == 500 and est["label"].calls == 300
    assert est["taxonomy"].calls == math.ceil(500 / 200) + 1
    small = by_step(cfg, [LONG] * 50)
    assert small["summarize"].calls == 50 and small["label"].calls == 50 and small["taxonomy"].calls == 2
    # a document no longer than a summary is its own summary
    assert by_step(cfg, ["how do I top up my card?"] * 1000)["summarize"].calls == 0
    half = by_step(cfg, ["how do I top up my card?", LONG] * 500)["summarize"].calls
    assert half == 250
    assert estimate_run(cfg, []) == []


def test_cluster_proposal_names_each_cluster_and_summarises_only_what_it_shows():
    cfg = JobConfig(use_case=UC, model="gpt-4o-mini", taxonomy_sample=500, label_sample=300, max_labels=10)
    est = by_step(cfg, [LONG] * 1000)
    k = 25  # 2.5 clusters per label
    assert est["taxonomy"].calls == k + 1 + 10  # name each cluster, one merge, name merged groups at most
    assert est["summarize"].calls == k * 9 < 500  # 6 central and 3 contrasting documents per cluster
    assert est["label"].calls == 300
    everything = by_step(cfg.model_copy(update={"shortlist": 0}), [LONG] * 1000)["label"]
    assert est["label"].prompt_tokens < everything.prompt_tokens  # a shortlist of 5 of 10 labels costs less


def test_longer_documents_cost_more_prompt_tokens_up_to_the_clip():
    cfg = JobConfig(use_case=UC, model="gpt-4o-mini", taxonomy_sample=10, label_sample=10, max_doc_tokens=100)
    short, longer, huge = (by_step(cfg, [t] * 10) for t in ("word " * 10, "word " * 60, "word " * 5000))
    assert short["summarize"].prompt_tokens < longer["summarize"].prompt_tokens < huge["summarize"].prompt_tokens
    assert huge["label"].prompt_tokens - short["label"].prompt_tokens <= 10 * (100 + 5)


def test_multi_label_answers_are_estimated_longer():
    texts = ["my card payment abroad was declined"] * 40
    one = by_step(JobConfig(use_case=UC, model="gpt-4o-mini"), texts)["label"]
    multi = by_step(JobConfig(use_case=UC, model="gpt-4o-mini", multi_label=True, max_labels_per_doc=4), texts)["label"]
    assert multi.calls == one.calls and multi.completion_tokens > one.completion_tokens
    assert multi.prompt_tokens > one.prompt_tokens  # its prompt explains the set answer


def test_prices_known_models_and_says_unknown_for_local_ones():
    assert price("gpt-4o-mini", 1000, 0) == pytest.approx(2 * price("gpt-4o-mini", 500, 0))
    assert price("local/smollm2", 1000, 100) is None
    assert price("openai/not-a-real-model", 1000, 100) is None
    mixed = estimate_run(JobConfig(use_case=UC, model="local/smollm2", label_model="gpt-4o-mini"), ["hello"] * 20)
    assert [p.cost is None for p in mixed] == [True, True, False]
    assert total_cost(mixed) == mixed[2].cost > 0


def test_dry_run_prints_estimate_and_creates_no_database(corpus, tmp_path):
    db = tmp_path / "never.duckdb"
    res = CliRunner().invoke(app, ["run", str(corpus), "-u", UC, "--db", str(db), "-m", "gpt-4o-mini", "--dry-run"])
    assert res.exit_code == 0, res.output
    assert "summarize" in res.output and "label" in res.output and "$" in res.output
    assert not db.exists()
    local = CliRunner().invoke(app, ["run", str(corpus), "-u", UC, "--db", str(db), "--dry-run"])
    assert local.exit_code == 0 and "unknown price" in local.output
