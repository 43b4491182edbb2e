"""Store-level review edits: versions, reviews rows, assignments re-pointed / staled / moved."""

from __future__ import annotations

import pytest

from workflow.review import edits
from workflow.review.edits import ReviewError
from workflow.store import Store

from .helpers import DOCS, seeded_run


def _assignments(store: Store, run_id: str, source: str = "llm") -> dict[str, tuple]:
    rows = store.query(
        "SELECT doc_id, label_id, taxonomy_version, status FROM assignments WHERE run_id = ? AND source = ?",
        [run_id, source],
    )
    return {r["doc_id"]: (r["label_id"], r["taxonomy_version"], r["status"]) for r in rows}


def test_rename_keeps_id_repoints_assignments_and_records_review(db):
    with Store(db) as store:
        run_id, v = seeded_run(store, DOCS)
        new_v = edits.rename(store, run_id, "L1", "  Card   spending ", reviewer="ana")
        assert new_v == v + 1
        _, labels = store.taxonomy(run_id)
        assert [(lb.label_id, lb.name) for lb in labels][0] == ("L1", "Card spending")
        assert store.taxonomy_versions(run_id)[-1]["stage"] == "human"
        assert store.taxonomy_versions(run_id)[-1]["author"] == "ana"
        a = _assignments(store, run_id)
        assert all(ver == new_v and status == "ok" for _, ver, status in a.values())
        assert a["d1"][0] == "L1"
        (review,) = store.reviews(run_id)
        assert review["action"] == "rename" and review["reviewer"] == "ana"
        assert review["details"] == {"label_id": "L1", "from": "Card payments", "to": "Card spending"}
        assert review["taxonomy_version"] == new_v


def test_merge_moves_documents_to_target_without_relabeling(db):
    with Store(db) as store:
        run_id, _ = seeded_run(store, DOCS)
        new_v = edits.merge(store, run_id, "L1", "L2", reviewer="ana")
        assert [lb.label_id for lb in store.taxonomy(run_id)[1]] == ["L2", "L3"]
        a = _assignments(store, run_id)
        assert a["d1"] == ("L2", new_v, "ok") and a["d2"] == ("L2", new_v, "ok")
        assert a["d5"] == ("L3", new_v, "ok")
        # the label node's view: every doc still done for the new version
        assert len(store.assignments(run_id, "llm", taxonomy_version=new_v)) == len(DOCS)


def test_delete_and_split_stale_only_their_documents(db):
    with Store(db) as store:
        run_id, _ = seeded_run(store, DOCS)
        v1 = edits.delete(store, run_id, "L3", reviewer="ana")
        done = store.assignments(run_id, "llm", taxonomy_version=v1)
        assert set(DOCS) - set(done) == {"d5"}
        assert _assignments(store, run_id)["d5"][2] == "stale"

        v2 = edits.split(store, run_id, "L2", [("Outgoing transfers", "Sent."), ("Incoming transfers", "Got.")],
                         reviewer="bo")
        labels = store.taxonomy(run_id)[1]
        assert [lb.label_id for lb in labels] == ["L1", "L4", "L5"]  # fresh ids, L3 (deleted) never reused
        done = store.assignments(run_id, "llm", taxonomy_version=v2)
        assert set(DOCS) - set(done) == {"d3", "d4", "d5"}
        assert [r["action"] for r in store.reviews(run_id)] == ["delete", "split"]


def test_add_relabels_other_documents_only(db):
    with Store(db) as store:
        run_id, _ = seeded_run(store, DOCS)
        v = edits.add(store, run_id, "Fees", "Charges and fees.", reviewer="ana")
        assert store.taxonomy(run_id)[1][-1].label_id == "L4"
        assert set(DOCS) - set(store.assignments(run_id, "llm", taxonomy_version=v)) == {"d6"}


def test_correct_writes_a_human_assignment_that_training_prefers(db):
    with Store(db) as store:
        run_id, v = seeded_run(store, DOCS)
        assert edits.correct(store, run_id, "d3", "L1", reviewer="ana") == v  # no new taxonomy version
        assert store.training_labels(run_id)["d3"] == "L1"
        assert store.assignments(run_id, "llm")["d3"] == "L2"  # the LLM's answer is kept for audit
        (review,) = store.reviews(run_id)
        assert review["details"] == {"doc_id": "d3", "from": "L2", "to": "L1"}
        # deleting the label a human chose makes the correction stale too
        edits.delete(store, run_id, "L1", reviewer="ana")
        assert "d3" not in store.training_labels(run_id) or store.training_labels(run_id)["d3"] != "L1"


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda s, r: edits.rename(s, r, "L9", "x", reviewer="a"), "no label 'L9'"),
        (lambda s, r: edits.rename(s, r, "L1", "Transfers", reviewer="a"), "already exists"),
        (lambda s, r: edits.rename(s, r, "L1", "other", reviewer="a"), "reserved"),
        (lambda s, r: edits.merge(s, r, "L1", "L1", reviewer="a"), "itself"),
        (lambda s, r: edits.split(s, r, "L1", [("a", "")], reviewer="a"), "at least two"),
        (lambda s, r: edits.correct(s, r, "nope", "L1", reviewer="a"), "no document"),
        (lambda s, r: edits.add(s, r, "   ", "", reviewer="a"), "needs a name"),
    ],
)
def test_invalid_edits_are_refused_and_change_nothing(db, call, message):
    with Store(db) as store:
        run_id, v = seeded_run(store, DOCS)
        with pytest.raises(ReviewError, match=message):
            call(store, run_id)
        assert store.taxonomy(run_id)[0] == v and store.reviews(run_id) == []
