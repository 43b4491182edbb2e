"""LLM-as-judge through the gateway on scripted judges: an oracle, and one that always answers "A"."""

from __future__ import annotations

import json
import re

import pytest

from tests.conftest import SCRIPTED_JOB
from workflow.config import JobConfig
from workflow.evaluate.judge import judge_run, make_pairs
from workflow.ingest import read_corpus
from workflow.runner import execute
from workflow.store import Label, Store
from workflow.testing import scripted
from workflow.testing.scripted import register_script


def _doc_words(user: str) -> set[str]:
    m = re.search(r"<document>\n?(.*?)\n?</document>", user, flags=re.S)
    return set(re.findall(r"[a-z]+", (m.group(1) if m else "").lower()))


def oracle(prompt_name: str, messages: list[dict], schema: dict) -> str:
    """Prefers the candidate whose keyword is in the document, as the keywords labeler does."""
    user = next(m["content"] for m in messages if m["role"] == "user")
    if prompt_name == "judge_pair":
        words = _doc_words(user)
        names = dict(re.findall(r"^([AB]): (\S+)", user, flags=re.M))
        better = "B" if names["B"].lower() in words and names["A"].lower() not in words else "A"
        return json.dumps({"better": better, "rationale": "keyword"})
    if prompt_name == "judge_relevance":
        return json.dumps({"score": 5, "rationale": "fits"})
    return json.dumps({"distinctness": 4, "specificity": 3, "coverage": 5, "notes": "fine"})


def always_a(prompt_name: str, messages: list[dict], schema: dict) -> str:
    if prompt_name == "judge_pair":
        return json.dumps({"better": "A", "rationale": "first"})
    if prompt_name == "judge_relevance":
        return json.dumps({"score": 1, "rationale": "no"})
    return json.dumps({"distinctness": 1, "specificity": 1, "coverage": 1, "notes": "poor"})


register_script("judge-oracle", oracle)
register_script("judge-always-a", always_a)


@pytest.fixture
def run(corpus, db):
    store = Store(db)
    store.insert_documents("c", read_corpus(str(corpus)).records)
    run_id = store.create_run("c", SCRIPTED_JOB["use_case"], JobConfig(**SCRIPTED_JOB).model_dump())
    assert execute(store, run_id, show_progress=False).status == "done"
    yield store, run_id
    store.close()


def test_pairs_are_seeded_and_positions_randomised():
    labels = [Label(f"L{i}", f"n{i}", "d") for i in range(1, 5)]
    assigned = {f"d{i:03d}": f"L{i % 4 + 1}" for i in range(200)} | {"x": "other"}
    pairs = make_pairs(assigned, labels, 100, seed=3)
    assert pairs == make_pairs(assigned, labels, 100, seed=3) != make_pairs(assigned, labels, 100, seed=4)
    assert len(pairs) == 100 and all(p.doc_id != "x" for p in pairs)
    assert all(p.assigned.label_id == assigned[p.doc_id] != p.distractor.label_id for p in pairs)
    assert 30 <= sum(p.assigned_is_a for p in pairs) <= 70
    assert make_pairs(assigned, labels[:1], 10, seed=0) == []


def test_oracle_judge_confirms_keyword_labels(run):
    store, run_id = run
    res = judge_run(store, run_id, "scripted/judge-oracle", n_pairs=40)
    acc = res["judge_label_accuracy"]
    assert acc["n"] > 0 and acc["failed"] == 0
    assert acc["value"] >= 0.9
    assert res["judge_label_relevance"]["value"] == 5 and res["judge_label_relevance"]["share_relevant"] == 1.0
    assert res["judge_taxonomy_quality"]["value"] == pytest.approx(4.0)
    steps = store.query("SELECT DISTINCT step FROM llm_calls WHERE model = 'scripted/judge-oracle'")
    assert steps == [{"step": "judge"}]


def test_position_biased_judge_scores_near_chance_and_reruns_are_cached(run):
    store, run_id = run
    res = judge_run(store, run_id, "scripted/judge-always-a", n_pairs=40)
    acc = res["judge_label_accuracy"]
    assert acc["share_answered_a"] == 1.0
    assert 0.25 <= acc["value"] <= 0.75
    before = scripted.calls["judge-always-a"]
    assert judge_run(store, run_id, "scripted/judge-always-a", n_pairs=40) == res
    assert scripted.calls["judge-always-a"] == before


def test_eval_cli_with_judge_model_stores_judge_metrics(run, db):
    from typer.testing import CliRunner

    from workflow.cli import app

    store, run_id = run
    store.close()  # the CLI opens the database itself
    res = CliRunner().invoke(app, ["eval", run_id, "--db", db, "--judge-model", "scripted/judge-oracle",
                                   "--judge-pairs", "10", "--json"])
    assert res.exit_code == 0, res.output
    m = json.loads(res.output)["metrics"]
    assert m["judge_label_accuracy"]["n"] == 10 and m["judge_label_accuracy"]["value"] >= 0.9
    assert m["judge_taxonomy_quality"]["distinctness"] == 4
    with Store(db) as again:
        stored = {r["metric"] for r in again.eval_results(run_id)}
    assert {"judge_label_accuracy", "judge_label_relevance", "judge_taxonomy_quality", "coverage"} <= stored
