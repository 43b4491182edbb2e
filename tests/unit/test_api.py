"""The public Python API on the deterministic scripted model, through the same gateway as production."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import workflow as tnt
from tests.conftest import SCRIPTED_JOB, sample_rows
from workflow.testing import scripted  # noqa: F401  (registers the scripted/ models)

OPTIONS = {k: v for k, v in SCRIPTED_JOB.items() if k != "use_case"}
USE_CASE = SCRIPTED_JOB["use_case"]


@pytest.fixture
def rows() -> list[dict]:
    return sample_rows(120)


def test_a_run_from_texts_gives_taxonomy_labels_predictions_and_a_classifier(rows, tmp_path):
    texts = [r["text"] for r in rows]
    with tnt.Project(tmp_path / "p.duckdb") as project:
        run = project.run(texts, use_case=USE_CASE, progress=False, **OPTIONS)
        assert run.status == "done", run.message

        tax = run.taxonomy()
        assert list(tax.columns) == ["label_id", "name", "description", "parent_id", "level"]
        assert 2 <= len(tax) <= OPTIONS["max_labels"] and tax["label_id"].is_unique

        labels = run.labels()
        assert len(labels) == OPTIONS["label_sample"]
        assert set(labels["label_id"]) <= set(tax["label_id"]) | {"other"}
        assert set(labels["text"]) <= set(texts)
        assert set(labels["source"]) == {"llm"}  # the scripted model is not local: the LLM teaches
        by_id = dict(zip(tax["label_id"], tax["name"]))
        assert all(by_id.get(i, "Other") == n for i, n in zip(labels["label_id"], labels["label"]))

        preds = run.predictions()
        assert len(preds) == len(texts) and set(preds["source"]) == {"classifier"}
        assert preds["confidence"].between(0, 1).all()

        counts = run.label_counts()
        assert counts["teacher"].sum() == len(labels) and counts["classifier"].sum() == len(texts)
        assert 0 < run.coverage() <= 1
        assert 0 <= run.metrics()["accuracy"] <= 1

        clf = run.classifier()
        new = ["I still have not received my new card", "What is the exchange rate for euros?", "Cancel my transfer"]
        predicted = clf.predict(new)
        assert len(predicted) == 3 and set(predicted) <= set(clf.classes_)
        proba = clf.predict_proba(new)
        assert proba.shape == (3, len(clf.classes_)) and np.allclose(proba.sum(axis=1), 1, atol=1e-5)
        assert list(predicted) == list(clf.classes_[proba.argmax(axis=1)])
        # the same answers as the stored predictions for documents of the corpus
        sample = preds.head(20)
        assert list(clf.predict(sample["text"])) == list(sample["label_id"])

        out = run.export(tmp_path / "artifact")
        html = run.report(tmp_path / "report.html").read_text()
        assert tax["name"].iloc[0] in html.replace("&amp;", "&").replace("&#39;", "'") and "<svg" in html
    loaded = tnt.load_classifier(out)  # no database
    assert list(loaded.predict(new)) == list(predicted)
    assert list(loaded.classes_) == list(clf.classes_)
    frame = loaded.predict_frame(new)
    assert list(frame["text"]) == new and list(frame["label_id"]) == list(predicted)


def test_a_dataframe_keeps_ids_and_gold_labels_for_evaluate(rows, tmp_path):
    frame = pd.DataFrame([{"id": f"q{i}", "text": r["text"], "label": r["label"]} for i, r in enumerate(rows)])
    with tnt.Project(tmp_path / "p.duckdb") as project:
        run = project.run(frame, use_case=USE_CASE, progress=False, **OPTIONS)
        assert set(run.predictions()["doc_id"]) == set(frame["id"])
        metrics = run.evaluate(gold="label")
        assert {"coverage", "gold_classifier_ari"} <= set(metrics["metric"])
        assert metrics.set_index("metric").loc["gold_classifier_ari", "value"] is not None
        # the same project seen again: runs are listed and re-opened by id
        assert project.runs()["run_id"].tolist() == [run.run_id]
        assert project.get_run().run_id == run.run_id


def test_rerunning_the_same_texts_reuses_the_corpus_and_costs_nothing(rows, tmp_path):
    texts = [r["text"] for r in rows]
    with tnt.Project(tmp_path / "p.duckdb") as project:
        first = project.run(texts, use_case=USE_CASE, progress=False, **OPTIONS)
        second = project.run(texts, use_case=USE_CASE, progress=False, **OPTIONS)
        assert second.status == "done"
        assert first.store.run(first.run_id)["corpus"] == second.store.run(second.run_id)["corpus"]
        assert first.calls()["calls"].sum() > 0
        assert second.usage.cached > 0 and second.calls()["calls"].sum() == 0


def test_bad_input_gets_a_clear_error(tmp_path):
    with tnt.Project(tmp_path / "p.duckdb") as project:
        with pytest.raises(tnt.InputError, match="no 'body' column"):
            project.run(pd.DataFrame({"text": ["a"]}), use_case=USE_CASE, text_field="body", **OPTIONS)
        with pytest.raises(tnt.InputError, match="duplicate"):
            project.run(pd.DataFrame({"id": ["a", "a"], "text": ["one text", "another"]}), use_case=USE_CASE,
                        **OPTIONS)
        with pytest.raises(TypeError, match="use_case is required"):
            project.run(["a text"])
        with pytest.raises(ValueError, match="max_labels"):
            project.run(["a text"], use_case=USE_CASE, max_labels=1)
        with pytest.raises(tnt.StoreError, match="no run|unknown run|not found|no such run"):
            project.get_run("run-nope")
        assert project.runs().empty  # nothing half-created


def test_a_run_without_a_classifier_says_so(tmp_path):
    with tnt.Project(tmp_path / "p.duckdb") as project:
        name = project.ingest(_jsonl(tmp_path, ["one", "two"]))
        assert name == "c"
        run = project.new_run(name, tnt.JobConfig(use_case=USE_CASE, **OPTIONS))
        assert run.predictions().empty and run.taxonomy().empty
        with pytest.raises(tnt.RunError, match="no classifier yet"):
            run.classifier()
        with pytest.raises(tnt.RunError, match="no taxonomy yet"):
            run.review()


def test_a_classifier_refuses_a_bare_string(rows, tmp_path):
    with tnt.Project(tmp_path / "p.duckdb") as project:
        clf = project.run([r["text"] for r in rows], use_case=USE_CASE, progress=False, **OPTIONS).classifier()
    with pytest.raises(TypeError, match="list of texts"):
        clf.predict("my card")
    assert clf.predict([]).shape == (0,)


def test_the_api_and_the_cli_share_one_project(rows, tmp_path):
    """A run started from Python is continued and reported by `tnt` on the same file, and the other way round."""
    db = tmp_path / "p.duckdb"
    with tnt.Project(db) as project:
        run = project.run([r["text"] for r in rows], use_case=USE_CASE, progress=False,
                          **{**OPTIONS, "auto_approve": False})
        assert run.status == "paused"
        run_id = run.run_id
    code = ("import sys; from workflow.testing import scripted; from workflow.cli import app; "
            "sys.argv = ['tnt'] + sys.argv[1:]; app()")
    done = subprocess.run([sys.executable, "-c", code, "resume", run_id, "--db", str(db), "-q"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    status = subprocess.run([sys.executable, "-c", code, "status", "--db", str(db), "--json"],
                            capture_output=True, text=True, timeout=120)
    assert json.loads(status.stdout)[0]["status"] == "done"
    with tnt.Project(db) as project:
        assert project.get_run(run_id).status == "done"
        assert len(project.get_run(run_id).predictions()) == len(rows)


def _jsonl(tmp_path: Path, texts: list[str]) -> Path:
    path = tmp_path / "c.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    return path


def test_review_serves_the_page_and_update_grows_the_run_from_a_dataframe(rows, tmp_path):
    import urllib.request

    from tests.unit.test_update import new_topic_rows

    with tnt.Project(tmp_path / "p.duckdb") as project:
        run = project.run(pd.DataFrame(rows), use_case=USE_CASE, progress=False, **OPTIONS)
        page = run.review()
        try:
            assert page.url.startswith("http://127.0.0.1:")
            with urllib.request.urlopen(page.url, timeout=60) as resp:
                html = resp.read().decode()
            assert resp.status == 200 and run.taxonomy()["name"].iloc[0].split()[0] in html
        finally:
            page.stop()
        report = run.update(pd.DataFrame(new_topic_rows()), progress=False)
        assert report["status"] == "done" and report["n_new"] == 120
        assert report["model_after"] != report["model_before"]
        assert run.classifier().version_ == report["model_after"]  # the run's classifier is the updated one
