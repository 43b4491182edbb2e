"""Multi-label mode: the LLM lists every label that applies, a one-vs-rest classifier learns the sets, and every
serving path (stored model, exported artifact, tnt predict) returns the same sets."""

from __future__ import annotations

import json

import duckdb
import numpy as np
import pyarrow.parquet as pq
import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from workflow.classify.export import classifier_from_bytes, classifier_to_bytes
from workflow.classify.loader import ServingModel, from_store
from workflow.classify.train import TrainingError, train_multilabel
from workflow.cli import app
from workflow.llm.responses import multi_assignment_model
from workflow.runner import execute
from workflow.store import OTHER_ID, Label, Store

NAMES = {"L1": "Cards", "L2": "Transfers", "L3": "Fees", "other": "Other"}
CTX = {"label_names": NAMES}


def answer(*pairs: tuple[str, str]) -> str:
    return json.dumps({"labels": [{"id": i, "name": n} for i, n in pairs], "rationale": "r", "confidence": "high"})


@pytest.fixture
def Multi():
    return multi_assignment_model(["L1", "L2", "L3"], ["Cards", "Transfers", "Fees"], 2)


def test_answer_schema_offers_only_taxonomy_pairs_and_caps_the_count(Multi):
    schema = Multi.model_json_schema()["properties"]["labels"]
    assert schema["maxItems"] == 2 and schema["minItems"] == 1
    assert [c["properties"]["id"]["const"] for c in schema["items"]["anyOf"]] == ["L1", "L2", "L3", "other"]


def test_answers_are_deduplicated_capped_and_other_only_stands_alone(Multi):
    v = Multi.model_validate_json(answer(("L2", "Transfers"), ("other", "Other"), ("L2", "transfers"),
                                         ("L1", "Cards"), ("L3", "Fees")), context=CTX)
    assert v.label_ids == ["L2", "L1"] and v.label_id == "L2"  # 'other' dropped beside real labels; max 2
    assert Multi.model_validate_json(answer(("other", "Other")), context=CTX).label_ids == [OTHER_ID]


@pytest.mark.parametrize("bad", [
    answer(("L9", "Injected label")),  # not in the taxonomy
    answer(("L1", "Fees")),  # the id of one label with the name of another
    json.dumps({"labels": [], "rationale": "r"}),
])
def test_answers_outside_the_taxonomy_are_refused(Multi, bad):
    with pytest.raises(ValidationError):
        Multi.model_validate_json(bad, context=CTX)


def blobs(n: int = 600, k: int = 5, d: int = 32, seed: int = 0) -> tuple[np.ndarray, list[list[str]]]:
    """Documents made of one or two topics: the vector is the sum of their centres plus noise."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d))
    X, sets = [], []
    for _ in range(n):
        labs = sorted(rng.choice(k, rng.integers(1, 3), replace=False))
        X.append(centres[labs].sum(axis=0) + rng.normal(size=d) * 0.8)
        sets.append([f"L{j}" for j in labs])
    return np.array(X, dtype=np.float32), sets


def test_one_vs_rest_recovers_label_sets_and_reports_set_metrics():
    X, sets = blobs()
    clf, m = train_multilabel(X, sets)
    assert clf.multi_label and clf.algorithm == "logreg-ovr" and clf.labels == [f"L{j}" for j in range(5)]
    assert m["micro_f1"] > 0.9 and m["subset_accuracy"] > 0.8 and m["hamming_loss"] < 0.05
    assert abs(m["label_cardinality"]["classifier"] - m["label_cardinality"]["llm"]) < 0.2
    assert m["label_cardinality"]["llm"] > 1.2  # the data really is multi-label
    predicted = clf.label_sets(X[:100])
    assert np.mean([sorted(p) == s for p, s in zip(predicted, sets[:100])]) > 0.8
    assert all(p for p in predicted)  # never an empty answer


def test_rare_labels_are_left_out_and_too_few_labels_is_an_error():
    X, sets = blobs(n=200)
    sets[0] = sets[0] + ["L99"]
    clf, m = train_multilabel(X, sets)
    assert "L99" not in clf.labels and any("L99" in n for n in m["notes"])
    with pytest.raises(TrainingError):
        train_multilabel(X[:10], [["L1"]] * 10)


def test_serialised_model_and_fast_path_agree_with_the_estimator():
    X, sets = blobs(n=300)
    clf, _ = train_multilabel(X, sets)
    back = classifier_from_bytes(classifier_to_bytes(clf))
    assert back.multi_label and back.threshold == clf.threshold
    serving = ServingModel(back, back.labels, "minilm-int8", "v", [])
    assert serving.heads is not None and serving.heads.parts[0]["kind"] == "ovr"  # one matmul, sigmoid per label
    np.testing.assert_allclose(serving.proba(X), clf.predict_proba(X), atol=1e-5)
    recs = serving.records(X[:20])
    assert [r["label_ids"] for r in recs] == clf.label_sets(X[:20])
    assert all(r["label_id"] == r["label_ids"][0] for r in recs)


def test_a_database_from_before_multi_label_gains_the_columns(tmp_path):
    db = str(tmp_path / "old.duckdb")
    con = duckdb.connect(db)
    con.execute("CREATE TABLE assignments(run_id VARCHAR, doc_id VARCHAR, source VARCHAR, label_id VARCHAR, "
                "taxonomy_version INTEGER, rationale VARCHAR, confidence DOUBLE, status VARCHAR, call_id VARCHAR, "
                "created_at TIMESTAMP, PRIMARY KEY(run_id, doc_id, source))")
    con.execute("INSERT INTO assignments VALUES ('r', 'd', 'llm', 'L1', 1, 'x', 0.9, 'ok', NULL, now())")
    con.close()
    with Store(db) as store:
        assert store.training_label_sets("r") == {"d": ["L1"]}  # old rows read as one-label sets
        store.save_assignment("r", "e", "llm", "L2", taxonomy_version=1, label_ids=["L2", "L1"])
        assert store.training_label_sets("r") == {"d": ["L1"], "e": ["L2", "L1"]}


def test_review_merges_rewrite_label_sets_and_deletes_make_them_stale(db, corpus, new_run):
    with Store(db) as store:
        run_id = new_run(store, corpus, multi_label=True)
        tax = [Label("L1", "Cards", "d"), Label("L2", "Transfers", "d"), Label("L3", "Fees", "d")]
        store.save_taxonomy(run_id, tax, stage="propose")
        for doc, ids in {"a": ["L1", "L2"], "b": ["L2", "L1"], "c": ["L1", "L3"], "d": ["L1"]}.items():
            store.save_assignment(run_id, doc, "llm", ids[0], taxonomy_version=1, label_ids=ids)
        # merge L2 into L1, then delete L3: 'a'/'b' collapse to [L1]; 'c' still names L3 so it must be re-labeled
        store.apply_review(run_id, action="merge", reviewer="t", details={}, labels=tax[:1] + tax[2:],
                           merge={"L2": "L1"})
        store.apply_review(run_id, action="delete", reviewer="t", details={}, labels=tax[:1])
        rows = {r["doc_id"]: r for r in store.query(
            "SELECT doc_id, label_id, label_ids, status FROM assignments WHERE run_id = ?", [run_id])}
        assert rows["a"]["label_ids"] == rows["b"]["label_ids"] == ["L1"] and rows["b"]["label_id"] == "L1"
        assert rows["c"]["status"] == "stale" and rows["d"]["status"] == "ok"


def test_multi_label_run_end_to_end_and_the_export_predicts_the_same_sets(corpus, db, new_run, tmp_path):
    with Store(db) as store:
        # minibatch proposal: its scripted labels are frequent words that co-occur, so some documents get two
        run_id = new_run(store, corpus, multi_label=True, label_sample=100, max_labels=8, max_labels_per_doc=2,
                         proposal="minibatch", shortlist=0)
        outcome = execute(store, run_id, show_progress=False)
        assert outcome.status == "done", outcome.message
        _, labels = store.taxonomy(run_id)
        allowed = {lb.label_id for lb in labels} | {OTHER_ID}
        rows = store.query("SELECT label_id, label_ids FROM assignments WHERE run_id = ? AND source = 'llm'", [run_id])
        assert len(rows) == 100
        assert all(r["label_ids"][0] == r["label_id"] and set(r["label_ids"]) <= allowed
                   and 1 <= len(r["label_ids"]) <= 2 for r in rows)
        assert sum(len(r["label_ids"]) == 2 for r in rows) >= 3  # the scripted model finds several keywords
        model = store.model(run_id=run_id)
        assert model["algorithm"] == "logreg-ovr" and model["metrics"]["micro_f1"] is not None
        stored = {r["doc_id"]: (r["label_id"], r["label_ids"]) for r in store.query(
            "SELECT doc_id, label_id, label_ids FROM predictions WHERE model_id = ?", [model["model_id"]])}
        assert len(stored) == 120 and all(ls and set(ls) <= allowed for _, ls in stored.values())
        assert from_store(store, run_id).clf.multi_label
        calls = store.query("SELECT count(*) AS n FROM llm_calls")[0]["n"]
        assert execute(store, run_id, show_progress=False).status == "done"
        assert store.query("SELECT count(*) AS n FROM llm_calls")[0]["n"] == calls  # nothing asked twice

    runner = CliRunner()
    art, out = tmp_path / "art", tmp_path / "p.parquet"
    res = runner.invoke(app, ["export", run_id, "--db", db, "--out", str(art)])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["predict", "--model", str(art), "--db", db, "--input", str(corpus), "--output",
                              str(out), "-q"])
    assert res.exit_code == 0, res.output
    exported = {r["doc_id"]: (r["label_id"], r["label_ids"]) for r in pq.read_table(out).to_pylist()}
    assert exported == stored

    res = runner.invoke(app, ["train", run_id, "--db", db])  # retraining keeps the run's multi-label mode
    assert res.exit_code == 0 and "label sets: micro-F1" in res.output, res.output
    with Store(db, read_only=True) as store:
        assert store.model(run_id=run_id)["algorithm"] == "logreg-ovr"
