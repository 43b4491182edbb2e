"""Review edits between runs: the pause/resume cycle and re-entry after a run has finished, on scripted/keywords.

Only touched documents go back to the LLM (counted via workflow.testing.scripted.calls); the classifier is retrained.
"""

from __future__ import annotations

from workflow.review import edits
from workflow.runner import execute
from workflow.store import Store
from workflow.testing import scripted


def _biggest_labels(store: Store, run_id: str) -> list[tuple[str, int]]:
    counts = store.label_counts(run_id)
    return sorted(((k, n) for k, n in counts.items() if k != "other"), key=lambda kv: -kv[1])


def test_pause_edit_resume_labels_with_the_edited_taxonomy(corpus, db, new_run):
    with Store(db) as store:
        run_id = new_run(store, corpus, auto_approve=False)
        assert execute(store, run_id, show_progress=False).status == "paused"
        first = store.taxonomy(run_id)[1][0]
        edits.rename(store, run_id, first.label_id, "Renamed in review", reviewer="ana")
        outcome = execute(store, run_id, show_progress=False)
        assert outcome.status == "done", outcome.message
        latest = store.taxonomy(run_id)[0]
        versions = store.query("SELECT DISTINCT taxonomy_version AS v FROM assignments WHERE run_id = ?", [run_id])
        assert [r["v"] for r in versions] == [latest]
        assert store.model(run_id=run_id)["taxonomy_version"] == latest


def test_edits_after_a_finished_run_relabel_only_touched_documents_and_retrain(corpus, db, new_run):
    with Store(db) as store:
        run_id = new_run(store, corpus)
        assert execute(store, run_id, show_progress=False).status == "done"
        first_model = store.model(run_id=run_id)["model_id"]
        assert execute(store, run_id, show_progress=False).message == "the run had already finished"

        (big, n_big), (small, n_small), *_ = _biggest_labels(store, run_id)
        edits.merge(store, run_id, small, big, reviewer="ana")  # moves documents: no LLM call
        third = _biggest_labels(store, run_id)[-1][0]
        n_third = store.label_counts(run_id)[third]
        edits.delete(store, run_id, third, reviewer="ana")  # its documents go back to the LLM
        doc = next(d for d, lab in store.assignments(run_id).items() if lab == big)
        edits.correct(store, run_id, doc, "other", reviewer="ana")

        before = scripted.calls["keywords"]
        outcome = execute(store, run_id, show_progress=False)
        assert outcome.status == "done", outcome.message
        assert scripted.calls["keywords"] - before == n_third  # only the deleted label's documents
        latest = store.taxonomy(run_id)[0]
        assert len(store.assignments(run_id, "llm", taxonomy_version=latest)) == 60
        assert third not in store.label_counts(run_id) and small not in store.label_counts(run_id)
        model = store.model(run_id=run_id)
        assert model["model_id"] != first_model and model["taxonomy_version"] == latest
        assert store.training_labels(run_id)[doc] == "other"
        assert set(store.prediction_counts(model["model_id"])) <= {lb.label_id
                                                                   for lb in store.taxonomy(run_id)[1]} | {"other"}
        # nothing changed since: a further resume is a no-op
        assert execute(store, run_id, show_progress=False).message == "the run had already finished"


def test_a_correction_alone_retrains_without_llm_calls(corpus, db, new_run):
    with Store(db) as store:
        run_id = new_run(store, corpus)
        execute(store, run_id, show_progress=False)
        first_model = store.model(run_id=run_id)["model_id"]
        doc, lab = next(iter(store.assignments(run_id).items()))
        target = next(lb.label_id for lb in store.taxonomy(run_id)[1] if lb.label_id != lab)
        edits.correct(store, run_id, doc, target, reviewer="ana")
        before = scripted.calls["keywords"]
        assert execute(store, run_id, show_progress=False).status == "done"
        assert scripted.calls["keywords"] == before
        assert store.model(run_id=run_id)["model_id"] != first_model
