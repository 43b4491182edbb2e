"""`tnt eval` on real scripted runs over BANKING77 queries with gold labels, through the typer app."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from tests.conftest import SCRIPTED_JOB
from workflow.cli import app
from workflow.config import JobConfig
from workflow.evaluate import metrics as M
from workflow.ingest import read_corpus
from workflow.runner import execute
from workflow.store import Store

runner = CliRunner()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two runs of the same job (the second answered from the cache) and one with another seed."""
    from tests.conftest import sample_rows

    tmp = tmp_path_factory.mktemp("eval")
    path = tmp / "corpus.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in sample_rows(120)))
    db = str(tmp / "tnt.duckdb")
    with Store(db) as store:
        store.insert_documents("c", read_corpus(str(path)).records)
        ids = []
        for seed in (0, 0, 1):
            run_id = store.create_run("c", SCRIPTED_JOB["use_case"], JobConfig(**SCRIPTED_JOB, seed=seed).model_dump())
            assert execute(store, run_id, show_progress=False).status == "done"
            ids.append(run_id)
    return db, ids


def tnt_eval(db: str, *args: str) -> dict:
    res = runner.invoke(app, ["eval", *args, "--db", db, "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.output)["metrics"]


def test_eval_reports_coverage_gold_and_classifier_metrics(runs):
    db, (first, _, _) = runs
    m = tnt_eval(db, first)
    with Store(db) as store:
        llm = store.assignments(first)
        gold = store.gold_labels("c", "label")
        assert m["coverage"]["value"] == pytest.approx(M.coverage(llm))
        assert m["taxonomy_size"]["value"] == len(store.taxonomy(first)[1])
        assert m["gold_llm_ari"]["n"] == 60 and m["gold_classifier_ari"]["n"] == 120
        assert m["gold_llm_nmi"]["value"] == pytest.approx(M.against_gold(llm, gold)["nmi"])
        assert 0 < m["gold_llm_hungarian_accuracy"]["value"] <= 1
        assert m["classifier_vs_llm_accuracy"]["n"] == 60
        assert -1 <= m["classifier_vs_llm_kappa"]["value"] <= 1
        stored = {r["metric"]: r["value"] for r in store.eval_results(first)}
    assert stored["coverage"] == pytest.approx(m["coverage"]["value"])
    assert stored.keys() == m.keys()


def test_measured_calls_per_document_per_phase(runs):
    db, (first, cached, _) = runs
    m = tnt_eval(db, first)
    with Store(db) as store:
        paid = {r["step"]: r["calls"] for r in store.call_stats(first)}
        n1 = len(store.sample(first, 1))
    # short documents are their own summary and only the documents shown to the model are summarised
    assert m["calls_per_doc_summarize"]["value"] == pytest.approx(paid["summarize"] / n1) and paid["summarize"] < n1
    assert m["calls_per_doc_label"]["value"] == pytest.approx(1.0)
    assert m["calls_per_doc_taxonomy"]["calls"] == paid["taxonomy"] > 2
    assert m["calls_per_doc_label"]["tokens_per_doc"] > 0
    # the cached re-run paid for nothing, so it reports no calls
    assert not any(k.startswith("calls_per_doc") for k in tnt_eval(db, cached))


def test_stability_against_another_run(runs):
    db, (first, cached, reseeded) = runs
    same = tnt_eval(db, first, "--against", cached)
    assert same["stability_ari"]["value"] == pytest.approx(1.0)
    other = tnt_eval(db, first, "--against", reseeded)
    assert other["stability_ari"]["n"] > 0
    assert other["stability_ari"]["value"] <= 1.0


def test_missing_gold_field_skips_gold_metrics_and_unknown_run_fails(runs):
    db, (first, _, _) = runs
    m = tnt_eval(db, first, "--gold", "no_such_field")
    assert not any(k.startswith("gold_") for k in m) and "coverage" in m
    res = runner.invoke(app, ["eval", first, "--db", db, "--against", "nope"])
    assert res.exit_code == 2 and "no run 'nope'" in res.output
    table = runner.invoke(app, ["eval", first, "--db", db])
    assert table.exit_code == 0 and "gold_llm_harmonic_purity" in table.output
