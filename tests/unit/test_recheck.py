"""`--recheck`: the noise estimate's top suspects go back to the (scripted) model once, through the gateway, with two
choices; the answer is its own assignment, training learns it, a human correction wins, reruns are free."""

from __future__ import annotations

import hashlib
import json

import pytest

from workflow.classify.recheck import budget
from workflow.cli import recheck_line
from workflow.llm.responses import recheck_model
from workflow.runner import execute
from workflow.store import OTHER_ID, Store
from workflow.testing import scripted

RECHECK = 0.25


def _user(messages: list[dict]) -> str:
    return next(m["content"] for m in messages if m["role"] == "user")


def corrupted(text: str) -> bool:
    """The noisy teacher's deterministic mistakes: about a third of the documents."""
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) % 3 == 0


def noisy_teacher(prompt_name: str, messages: list[dict], schema: dict) -> str:
    """keywords, except that the label step gives a third of the documents a wrong offered label (the first offered
    one that is not the keyword answer) and the recheck answers by the keyword rule (the truth of this corpus)."""
    answer = scripted.keywords(prompt_name, messages, schema)
    if prompt_name != "label":
        return answer
    user = _user(messages)
    if not corrupted(scripted._between(user, "document")):
        return answer
    right = json.loads(answer)["label_id"]
    offered = [(i, n) for i, n in scripted._taxonomy_lines(user) if i != right]
    if not offered:
        return answer
    wrong_id, wrong_name = offered[0]
    return json.dumps({"label_id": wrong_id, "label_name": wrong_name, "rationale": "Wrong.", "confidence": "high"})


scripted.register_script("noisy_teacher", noisy_teacher)

JOB = dict(model="scripted/noisy_teacher", label_sample=120, recheck=RECHECK, concurrency=1, teacher="llm")


def _rows(store: Store, run_id: str, source: str) -> dict[str, dict]:
    return {r["doc_id"]: r for r in store.query(
        "SELECT doc_id, label_id, status, call_id, rationale, offered_ids FROM assignments "
        "WHERE run_id = ? AND source = ?", [run_id, source])}


def test_recheck_stores_its_own_answers_and_training_learns_them(corpus, db, new_run):
    with Store(db) as store:
        run_id = new_run(store, corpus, **JOB)
        outcome = execute(store, run_id, show_progress=False)
        assert outcome.status == "done", outcome.message
        llm, rec = _rows(store, run_id, "llm"), _rows(store, run_id, "recheck")
        assert len(llm) == 120 and len(rec) == budget(RECHECK, 120) == 30
        texts = {d.doc_id: d.text for d in store.documents("c", list(llm))}
        _, labels = store.taxonomy(run_id)
        valid = {lb.label_id for lb in labels} | {OTHER_ID}
        for doc_id, r in rec.items():
            original, alternative = r["offered_ids"]
            assert original == llm[doc_id]["label_id"] and alternative != original and alternative in valid
            assert r["status"] == "ok" and r["label_id"] in (original, alternative) and r["call_id"]
            assert r["rationale"]
        # the LLM's own rows are never overwritten
        assert all(r["rationale"] in ("Wrong.", "Mentions the keyword.", "No keyword.") for r in llm.values())
        counts = store.recheck_counts(run_id)
        assert counts["rechecked"] == 30 and counts["flipped"] + counts["kept"] == 30 and counts["flipped"] > 0
        # the ranking finds the teacher's mistakes more often than their share, and flips fix some of them
        share_all = sum(corrupted(t) for t in texts.values()) / len(texts)
        share_rechecked = sum(corrupted(texts[d]) for d in rec) / len(rec)
        assert share_rechecked > share_all, (share_rechecked, share_all)
        fixed = [d for d, r in rec.items() if corrupted(texts[d]) and r["label_id"] == r["offered_ids"][1]]
        print(f"corrupted: {share_all:.2f} of all, {share_rechecked:.2f} of rechecked; {counts}; fixed {len(fixed)}")
        assert fixed
        training = store.training_labels(run_id)
        assert all(training[d] == r["label_id"] for d, r in rec.items())
        assert all(training[d] == r["label_id"] for d, r in llm.items() if d not in rec)
        m = store.model(run_id=run_id)["metrics"]  # the classifier was fit on exactly those labels
        assert m["labels"] == sorted(set(training.values())) and m["n_train"] + m["n_test"] == 120
        flipped = next(d for d, r in rec.items() if r["label_id"] != r["offered_ids"][0])
        calls = store.query("SELECT count(*) AS n FROM llm_calls WHERE run_id = ? AND step = 'recheck'", [run_id])
        assert calls[0]["n"] == 30

        # a human correction wins over the recheck answer (and over the LLM's)
        human_label = next(i for i in valid if i not in (rec[flipped]["label_id"], llm[flipped]["label_id"]))
        store.apply_review(run_id, action="correct", reviewer="tester", details={"doc_id": flipped},
                           correction=(flipped, human_label))
        assert store.training_labels(run_id)[flipped] == human_label
        assert _rows(store, run_id, "recheck")[flipped]["label_id"] == rec[flipped]["label_id"]  # kept, outranked
        # resuming after the correction retrains on it; the recheck budget is spent, so no new call
        before = scripted.calls["noisy_teacher"]
        def n_models() -> int:
            return store.query("SELECT count(*) AS n FROM models WHERE run_id = ?", [run_id])[0]["n"]

        assert n_models() == 1
        assert execute(store, run_id, show_progress=False).status == "done"
        assert scripted.calls["noisy_teacher"] == before and n_models() == 2
        line = recheck_line(store.recheck_counts(run_id), RECHECK, 120, "LLM")
        assert line.startswith(f"recheck (--recheck 0.25): 30 of 120 LLM labels asked again: {counts['flipped']} "
                               f"flipped to the classifier's alternative, {counts['kept']} kept;")

        # rerunning the same job: zero new model calls, the same answers from the cache
        before = scripted.calls["noisy_teacher"]
        second = store.create_run("c", store.run(run_id)["use_case"], store.run(run_id)["config"])
        again = execute(store, second, show_progress=False)
        assert again.status == "done" and scripted.calls["noisy_teacher"] == before and again.usage.calls == 0
        assert {d: r["label_id"] for d, r in _rows(store, second, "recheck").items()} == \
               {d: r["label_id"] for d, r in rec.items()}


def test_dry_run_estimate_counts_the_recheck_calls():
    from workflow.config import JobConfig
    from workflow.estimate import estimate_run

    texts = [f"document number {i} about cards and transfers" for i in range(400)]
    base = dict(use_case="What do customers ask?", model="scripted/keywords", label_sample=300, teacher="llm")
    steps = {p.step: p.calls for p in estimate_run(JobConfig(**base, recheck=0.1), texts)}
    assert steps["recheck"] == 30 and steps["label"] == 300
    assert "recheck" not in {p.step for p in estimate_run(JobConfig(**base), texts)}
    multi = {p.step for p in estimate_run(JobConfig(**base, recheck=0.1, multi_label=True), texts)}
    assert "recheck" not in multi


class Crash(BaseException):
    """Stands for the process being killed mid-step."""


def test_a_killed_recheck_resumes_without_asking_twice(corpus, db, new_run):
    state = {"answered": 0, "crash_after": 7}

    def crashing(prompt_name: str, messages: list[dict], schema: dict) -> str:
        if prompt_name == "recheck":
            if state["answered"] >= state["crash_after"]:
                raise Crash()
            state["answered"] += 1
        return noisy_teacher(prompt_name, messages, schema)

    scripted.register_script("crashing_teacher", crashing)
    with Store(db) as store:
        run_id = new_run(store, corpus, **{**JOB, "model": "scripted/crashing_teacher"})
        with pytest.raises(Crash):
            execute(store, run_id, show_progress=False)
        assert len(_rows(store, run_id, "recheck")) == 7 and store.latest_model(run_id) is None
        state["crash_after"] = 10**6
        outcome = execute(store, run_id, show_progress=False)
        assert outcome.status == "done", outcome.message
        rec = _rows(store, run_id, "recheck")
        assert len(rec) == 30 and all(r["status"] == "ok" for r in rec.values())
        assert state["answered"] == 30  # every document asked once: 7 before the kill, 23 after
        assert store.latest_model(run_id) is not None


def test_a_hostile_document_cannot_leave_the_two_offered_labels(corpus, db, new_run):
    """A model that obeys the document ("answer L1" / "answer other") is refused by validation when that label was
    not offered: the recheck fails, nothing outside the two is stored, and the original label keeps training."""

    def obedient(prompt_name: str, messages: list[dict], schema: dict) -> str:
        if prompt_name != "recheck":
            return noisy_teacher(prompt_name, messages, schema)
        offered = [i for i, _ in scripted.offered_choices(_user(messages))]
        target = next(i for i in ["L1", "L2", "L3", OTHER_ID] if i not in offered)  # a label it was not offered
        return json.dumps({"label": {"name": "Other" if target == OTHER_ID else target, "id": target},
                           "rationale": "The document told me to.", "confidence": "high"})

    scripted.register_script("obedient_teacher", obedient)
    with Store(db) as store:
        run_id = new_run(store, corpus, **{**JOB, "model": "scripted/obedient_teacher", "max_attempts": 2})
        assert execute(store, run_id, show_progress=False).status == "done"
        rec = _rows(store, run_id, "recheck")
        assert len(rec) == 30 and all(r["status"] == "failed" and r["label_id"] is None for r in rec.values())
        llm = _rows(store, run_id, "llm")
        training = store.training_labels(run_id)
        assert all(training[d] == llm[d]["label_id"] for d in rec)
        assert store.recheck_counts(run_id) == {"rechecked": 30, "flipped": 0, "kept": 0, "failed": 30}


def test_the_recheck_schema_admits_only_the_two_offered_labels():
    model = recheck_model(["L2", "L5"], ["Card payments", "Transfers"])
    schema = json.dumps(model.model_json_schema())
    assert '"L2"' in schema and '"L5"' in schema and '"other"' not in schema and '"L1"' not in schema
    ok = model.model_validate({"label": {"id": "L5", "name": "Transfers"}, "rationale": "x"},
                              context={"label_names": {"L2": "Card payments", "L5": "Transfers"}})
    assert ok.label_id == "L5"
    for bad in ("L1", "other"):
        with pytest.raises(ValueError):
            model.model_validate({"label": {"id": bad, "name": "Transfers"}, "rationale": "x"})
    with pytest.raises(ValueError):  # an id paired with the other offered label's name is confusion, refused
        model.model_validate({"label": {"id": "L2", "name": "Transfers"}, "rationale": "x"},
                             context={"label_names": {"L2": "Card payments", "L5": "Transfers"}})
    with pytest.raises(ValueError):
        recheck_model(["L2", "L2"], ["a", "a"])


def test_multi_label_runs_skip_the_recheck_with_a_log_line(corpus, db, new_run, caplog):
    with Store(db) as store:
        run_id = new_run(store, corpus, **{**JOB, "multi_label": True, "model": "scripted/keywords"})
        with caplog.at_level("WARNING", logger="tnt"):
            assert execute(store, run_id, show_progress=False).status == "done"
        assert "--recheck skipped" in caplog.text and "multi-label" in caplog.text
        assert store.recheck_counts(run_id)["rechecked"] == 0


def test_with_the_nearest_teacher_the_model_chooses_between_the_nearest_label_and_the_alternative(corpus, db, new_run):
    with Store(db) as store:
        run_id = new_run(store, corpus, **{**JOB, "model": "scripted/keywords", "teacher": "nearest"})
        assert execute(store, run_id, show_progress=False).status == "done"
        nearest, rec = _rows(store, run_id, "llm"), _rows(store, run_id, "recheck")
        assert all(r["call_id"] is None for r in nearest.values())  # the nearest teacher made no label call
        assert len(rec) == 30 and all(r["call_id"] for r in rec.values())
        assert all(r["offered_ids"][0] == nearest[d]["label_id"] and r["label_id"] in r["offered_ids"]
                   for d, r in rec.items())
        calls = store.query("SELECT step, count(*) AS n FROM llm_calls WHERE run_id = ? AND step IN ('label', "
                            "'recheck') GROUP BY step", [run_id])
        assert {r["step"]: r["n"] for r in calls} == {"recheck": 30}
