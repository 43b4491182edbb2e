"""The whole graph on the deterministic scripted model, through the production gateway."""

from __future__ import annotations

import pytest

from workflow.runner import execute
from workflow.store import OTHER_ID, Store
from workflow.testing import scripted


@pytest.mark.parametrize("proposal", ["clusters", "minibatch"])
def test_full_run_builds_taxonomy_labels_classifier_and_predictions(corpus, db, new_run, proposal):
    with Store(db) as store:
        run_id = new_run(store, corpus, proposal=proposal)
        outcome = execute(store, run_id, show_progress=False)
        assert outcome.status == "done", outcome.message

        stages = [v["stage"] for v in store.taxonomy_versions(run_id)]
        assert stages == (["propose", "review"] if proposal == "clusters"
                          else ["propose", "update", "update", "review"])
        _, labels = store.taxonomy(run_id)
        assert 2 <= len(labels) <= 6
        assert all(lb.name.lower() not in ("other", "misc") for lb in labels)
        assert len({lb.label_id for lb in labels}) == len(labels)

        assigned = store.assignments(run_id)
        assert len(assigned) == 60
        assert set(assigned.values()) <= {lb.label_id for lb in labels} | {OTHER_ID}

        calls = {r["step"]: r["n"] for r in store.query(
            "SELECT step, count(*) AS n FROM llm_calls WHERE run_id = ? GROUP BY step", [run_id])}
        # documents no longer than a summary (20 words) are their own summary: no call
        phase1 = store.documents("c", store.sample(run_id, 1))
        long_docs = sum(len(d.text.split()) > 20 for d in phase1)
        assert 0 < long_docs < 90
        if proposal == "minibatch":
            assert calls == {"summarize": long_docs, "taxonomy": 4, "label": 60}
        else:  # only the documents shown to the model are summarised; one naming call per cluster, one merge
            k = len(store.query("SELECT * FROM labels WHERE run_id = ? AND version = 1", [run_id]))
            assert calls["summarize"] <= long_docs and calls["label"] == 60
            assert calls["taxonomy"] >= k + 1
        assert store.count_failed(run_id) == {"summaries": 0, "labels": 0}

        model = store.model(run_id=run_id)
        assert 0.0 <= model["metrics"]["accuracy"] <= 1.0
        n_pred = store.query("SELECT count(*) AS n FROM predictions WHERE model_id = ?", [model["model_id"]])[0]["n"]
        assert n_pred == store.corpus_size("c") == 120
        assert store.run(run_id)["status"] == "done"


def test_rerunning_the_same_job_makes_no_model_calls(corpus, db, new_run):
    with Store(db) as store:
        first = new_run(store, corpus)
        execute(store, first, show_progress=False)
        before = scripted.calls["keywords"]
        second = store.create_run("c", store.run(first)["use_case"], store.run(first)["config"])
        outcome = execute(store, second, show_progress=False)
        assert outcome.status == "done"
        assert scripted.calls["keywords"] == before
        paid = store.query("SELECT count(*) AS n FROM llm_calls WHERE run_id = ? AND status IN ('ok', 'rejected')",
                           [first])[0]["n"]  # a rejected answer is an answer: the re-run reuses it too
        assert outcome.usage.calls == 0 and outcome.usage.cached == paid > 60
        assert store.taxonomy(first)[1] == store.taxonomy(second)[1]


def test_review_interrupt_pauses_then_resume_labels_with_edited_taxonomy(corpus, db, new_run):
    with Store(db) as store:
        run_id = new_run(store, corpus, auto_approve=False)
        outcome = execute(store, run_id, show_progress=False)
        assert outcome.status == "paused"
        assert store.run(run_id)["status"] == "paused"
        assert store.assignments(run_id) == {}

        # a reviewer renames a label: a new version, same id
        version, labels = store.taxonomy(run_id)
        renamed = [labels[0].__class__(labels[0].label_id, "Renamed by reviewer", labels[0].description), *labels[1:]]
        new_version = store.save_taxonomy(run_id, renamed, "human", author="reviewer")

        outcome = execute(store, run_id, show_progress=False)
        assert outcome.status == "done", outcome.message
        rows = store.query("SELECT DISTINCT taxonomy_version FROM assignments WHERE run_id = ?", [run_id])
        assert [r["taxonomy_version"] for r in rows] == [new_version]
        assert execute(store, run_id, show_progress=False).message == "the run had already finished"
