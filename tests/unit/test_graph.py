"""The whole graph on the deterministic scripted model, through the production gateway."""

from __future__ import annotations

from workflow.config import JobConfig
from workflow.ingest import read_corpus
from workflow.llm import scripted
from workflow.runner import execute
from workflow.store import OTHER_ID, Store

CONFIG = dict(
    use_case="What do customers ask the bank's support bot for?", model="scripted/keywords",
    batch_size=30, taxonomy_sample=90, label_sample=60, max_labels=6, concurrency=4,
)


def start(store: Store, corpus, **overrides) -> str:
    store.insert_documents("c", read_corpus(str(corpus)).records)
    return store.create_run("c", CONFIG["use_case"], JobConfig(**{**CONFIG, **overrides}).model_dump())


def test_full_run_builds_taxonomy_labels_classifier_and_predictions(corpus, db):
    with Store(db) as store:
        run_id = start(store, corpus)
        outcome = execute(store, run_id, show_progress=False)
        assert outcome.status == "done", outcome.message

        stages = [v["stage"] for v in store.taxonomy_versions(run_id)]
        assert stages == ["propose", "update", "update", "review"]
        _, labels = store.taxonomy(run_id)
        assert 2 <= len(labels) <= 6
        assert all(lb.name.lower() not in ("other", "misc") for lb in labels)
        assert len({lb.label_id for lb in labels}) == len(labels)

        assigned = store.assignments(run_id)
        assert len(assigned) == 60
        assert set(assigned.values()) <= {lb.label_id for lb in labels} | {OTHER_ID}

        calls = store.query("SELECT step, count(*) AS n FROM llm_calls WHERE run_id = ? GROUP BY step", [run_id])
        assert {r["step"]: r["n"] for r in calls} == {"summarize": 90, "taxonomy": 4, "label": 60}

        model = store.model(run_id=run_id)
        assert 0.0 <= model["metrics"]["accuracy"] <= 1.0
        n_pred = store.query("SELECT count(*) AS n FROM predictions WHERE model_id = ?", [model["model_id"]])[0]["n"]
        assert n_pred == store.corpus_size("c") == 120
        assert store.run(run_id)["status"] == "done"


def test_rerunning_the_same_job_makes_no_model_calls(corpus, db):
    with Store(db) as store:
        first = start(store, corpus)
        execute(store, first, show_progress=False)
        before = scripted.calls["keywords"]
        second = store.create_run("c", CONFIG["use_case"], JobConfig(**CONFIG).model_dump())
        outcome = execute(store, second, show_progress=False)
        assert outcome.status == "done"
        assert scripted.calls["keywords"] == before
        assert outcome.usage.calls == 0 and outcome.usage.cached == 90 + 4 + 60
        assert store.taxonomy(first)[1] == store.taxonomy(second)[1]


def test_review_interrupt_pauses_then_resume_labels_with_edited_taxonomy(corpus, db):
    with Store(db) as store:
        run_id = start(store, corpus, auto_approve=False)
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
