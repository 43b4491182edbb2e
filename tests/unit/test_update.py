"""`tnt update` on the scripted model through the production gateway: stable ids, a logged taxonomy edit, drift
rows, targeted labeling, --review, and no new model calls when the update is run again."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.conftest import SCRIPTED_JOB, sample_rows
from workflow.classify.fit import held_out_ids
from workflow.cli import app
from workflow.config import JobConfig
from workflow.evolve.update import LABEL_ROUNDS, UpdateError, update_run
from workflow.ingest import read_corpus
from workflow.llm import scripted
from workflow.runner import execute
from workflow.store import Store

cli = CliRunner()


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, Path]:
    """A finished scripted run on 120 documents, and 120 other documents as the new corpus."""
    root = tmp_path_factory.mktemp("update")
    rows = sample_rows(240)
    old, new = root / "old.jsonl", root / "new.jsonl"
    old.write_text("".join(json.dumps(r) + "\n" for r in rows[:120]))
    new.write_text("".join(json.dumps(r) + "\n" for r in rows[120:]))
    db = root / "tnt.duckdb"
    with Store(db) as store:
        store.insert_documents("c", read_corpus(str(old)).records)
        config = JobConfig(**SCRIPTED_JOB)
        run_id = store.create_run("c", config.use_case, config.model_dump())
        assert execute(store, run_id, show_progress=False).status == "done"
    return db, run_id, new


@pytest.fixture
def db_copy(finished, tmp_path: Path) -> tuple[str, str, Path]:
    src, run_id, new = finished
    dst = tmp_path / "tnt.duckdb"
    shutil.copy(src, dst)
    ckpt = Path(f"{src}.checkpoints.sqlite")
    if ckpt.exists():
        shutil.copy(ckpt, f"{dst}.checkpoints.sqlite")
    return str(dst), run_id, new


def config_of(store: Store, run_id: str) -> JobConfig:
    return JobConfig.model_validate(store.run(run_id)["config"])


def test_update_adds_labels_and_keeps_every_old_id(db_copy):
    db, run_id, new = db_copy
    with Store(db) as store:
        v0, before = store.taxonomy(run_id)
        old_llm = {d: lab for d, lab in store.assignments(run_id, "llm").items()}
        report = update_run(store, run_id, str(new), show_progress=False)
        v1, after = store.taxonomy(run_id)
        assert v1 > v0
        # unchanged labels: identical ids, names and descriptions; new labels get ids never used before
        assert after[: len(before)] == before
        added = after[len(before):]
        assert added and [a["label_id"] for a in report["added"]] == [lb.label_id for lb in added]
        assert not {lb.label_id for lb in added} & {lb.label_id for lb in before}
        # recorded like a review edit
        edit = store.reviews(run_id)[-1]
        assert edit["action"] == "update" and edit["reviewer"] == "tnt update"
        assert [a["label_id"] for a in edit["details"]["added"]] == [lb.label_id for lb in added]
        # old documents keep their LLM labels; only the unexplained new documents and the refresh were labeled
        llm = store.assignments(run_id, "llm")
        assert {d: llm[d] for d in old_llm} == old_llm
        new_ids = {d for d, _, _ in read_corpus(str(new)).records}
        labeled_new = set(llm) & new_ids
        assert len(labeled_new) == report["n_labeled"] < len(new_ids)
        # a new classifier over the new taxonomy, compared with the old one on the old held-out set
        model = store.latest_model(run_id)
        assert model["model_id"] == report["model_after"] != report["model_before"]
        assert report["held_out"]["old"]["n"] == report["held_out"]["new"]["n"] > 0
        # the new model's test split is the old model's held-out set, stored with it; every labeled new document
        # trains (none is held out), and drift baselines and the next update read that same set
        old_held = held_out_ids(store, run_id, config_of(store, run_id), report["model_before"])
        assert model["metrics"]["held_out_ids"] == old_held == held_out_ids(store, run_id, config_of(store, run_id))
        assert not set(old_held) & labeled_new and model["metrics"]["n_test"] == len(old_held)
        # the new documents left unlabeled teach the final fit where it is sure of them (self-training)
        assert model["metrics"]["self_training"]["unlabeled"] == len(new_ids - labeled_new)
        assert "self_training" not in store.model(report["model_before"])["metrics"]  # a random run embeds no pool
        # drift figures per batch of new documents, against the held-out baseline
        rows = store.drift(run_id)
        assert rows and rows[0]["model_id"] == report["model_before"] and rows[0]["baseline"]["n"] > 0
        assert store.run(run_id)["status"] == "done"
    with Store(db) as store:  # the checkpoint knows the update: resuming the run redoes nothing
        assert execute(store, run_id, show_progress=False).message == "the run had already finished"


def test_running_the_update_again_makes_no_calls(db_copy):
    db, run_id, new = db_copy
    with Store(db) as store:
        first = update_run(store, run_id, str(new), show_progress=False)
        calls = scripted.calls["keywords"]
        rows = store.query("SELECT count(*) AS n FROM llm_calls")[0]["n"]
        again = update_run(store, run_id, str(new), show_progress=False)
        assert scripted.calls["keywords"] == calls
        assert store.query("SELECT count(*) AS n FROM llm_calls")[0]["n"] == rows
        assert again["already_done"] and again["model_after"] == first["model_after"]


def test_review_pauses_then_the_same_command_finishes_without_re_proposing(db_copy):
    db, run_id, new = db_copy
    with Store(db) as store:
        paused = update_run(store, run_id, str(new), show_progress=False, review=True)
        assert paused["status"] == "review"
        assert store.run(run_id)["status"] == "paused"
        _, labels = store.taxonomy(run_id)
        added = [lb for lb in labels if lb.label_id in paused["added"]]
        from workflow.review import edits

        edits.rename(store, run_id, added[0].label_id, "Renamed by a reviewer", reviewer="ann")
        child_calls = store.query("SELECT count(*) AS n FROM llm_calls WHERE run_id LIKE ?", [f"{run_id}-update%"])
        done = update_run(store, run_id, str(new), show_progress=False, review=True)
        assert done["status"] == "done"
        assert store.query("SELECT count(*) AS n FROM llm_calls WHERE run_id LIKE ?", [f"{run_id}-update%"]) == child_calls
        assert {a["label_id"]: a["name"] for a in done["added"]}[added[0].label_id] == "Renamed by a reviewer"


def test_update_of_an_unfinished_run_or_clashing_ids_is_refused(db_copy, tmp_path: Path):
    db, run_id, new = db_copy
    clash = tmp_path / "clash.jsonl"
    first = sample_rows(1)[0]
    clash.write_text(json.dumps({"id": first["id"], "text": "a different text"}) + "\n")
    with Store(db) as store:
        with pytest.raises(Exception, match="different text"):
            update_run(store, run_id, str(clash), show_progress=False)
        store.set_run_stage(run_id, "label", status="failed")
        with pytest.raises(UpdateError, match="finish it first"):
            update_run(store, run_id, str(new), show_progress=False)


def test_cli_update_prints_the_report(db_copy):
    db, run_id, new = db_copy
    res = cli.invoke(app, ["update", run_id, str(new), "--db", db, "-q"])
    assert res.exit_code == 0, res.output
    assert "Labels added" in res.output and "old held-out set" in res.output and "model calls" in res.output
    res = cli.invoke(app, ["status", run_id, "--db", db])
    assert res.exit_code == 0 and "Drift" in res.output


def test_predict_stores_per_batch_drift_and_status_shows_it(db_copy):
    db, run_id, new = db_copy
    res = cli.invoke(app, ["predict", "--model", run_id, "--db", db, "--input", str(new), "--output", "preds",
                           "--batch-size", "50", "-q"])
    assert res.exit_code == 0, res.output
    with Store(db) as store:
        rows = [r for r in store.drift(run_id) if r["source"] == str(new)]
        model_id = store.latest_model(run_id)["model_id"]
    assert [r["batch"] for r in rows] == [0, 1, 2] and [r["n"] for r in rows] == [50, 50, 20]
    assert all(r["model_id"] == model_id and 0 <= r["uncertain_share"] <= 1 for r in rows)
    assert rows[0]["baseline"]["n"] > 0
    res = cli.invoke(app, ["status", run_id, "--db", db])
    assert res.exit_code == 0 and f"Driftof{new}" in "".join(res.output.split())  # rich wraps and pads the title


def _prompts(store: Store, run_id: str) -> set[str]:
    return {r["prompt_name"] for r in store.query("SELECT DISTINCT prompt_name FROM llm_calls WHERE run_id = ?",
                                                 [run_id])}


def test_cluster_seeded_proposal_places_new_labels_at_their_documents(db_copy):
    db, run_id, new = db_copy
    with Store(db) as store:
        assert JobConfig.model_validate(store.run(run_id)["config"]).proposal == "clusters"
        report = update_run(store, run_id, str(new), show_progress=False)
        child = f"{run_id}-update{report['update_id']}"
        assert {"name_cluster", "merge_labels"} <= _prompts(store, child)
        assert not {"propose", "update"} & _prompts(store, child)
        # the cap fits the few documents proposed from, not the run's max_labels (6)
        n = len(store.sample(child, 1))
        cap = JobConfig.model_validate(store.run(child)["config"]).max_labels
        assert cap == max(2, -(-n // 12.5)) < 6
        assert 1 <= len(report["added"]) <= cap
        # each added label sits where the unexplained documents it was built from are (labeling shortlists)
        members = store.cluster_members(run_id)
        added = {a["label_id"] for a in report["added"]}
        mine = {d for d, lid in members.items() if lid in added}
        assert {members[d] for d in mine} == added
        new_ids = {d for d, _, _ in read_corpus(str(new)).records}
        assert mine <= new_ids and set(store.sample(child, 1)) >= mine


def test_minibatch_runs_update_with_minibatch_proposals(tmp_path: Path):
    rows = sample_rows(240)
    old, new = tmp_path / "old.jsonl", tmp_path / "new.jsonl"
    old.write_text("".join(json.dumps(r) + "\n" for r in rows[:120]))
    new.write_text("".join(json.dumps(r) + "\n" for r in rows[120:]))
    with Store(tmp_path / "tnt.duckdb") as store:
        store.insert_documents("c", read_corpus(str(old)).records)
        config = JobConfig(**{**SCRIPTED_JOB, "proposal": "minibatch"})
        run_id = store.create_run("c", config.use_case, config.model_dump())
        assert execute(store, run_id, show_progress=False).status == "done"
        _, before = store.taxonomy(run_id)
        report = update_run(store, run_id, str(new), show_progress=False)
        child = f"{run_id}-update{report['update_id']}"
        assert "propose" in _prompts(store, child) and "name_cluster" not in _prompts(store, child)
        _, after = store.taxonomy(run_id)
        assert after[: len(before)] == before and len(after) == len(before) + len(report["added"]) > len(before)


def test_seeds_take_turns_between_new_labels():
    from workflow.evolve.update import _seeds

    label_of = {"a1": "L7", "a2": "L7", "a3": "L7", "b1": "L8", "c1": "L9", "c2": "L9"}
    order = ["a1", "a2", "a3", "b1", "c1", "c2"]
    assert _seeds(order, label_of, 4) == ["a1", "b1", "c1", "a2"]
    assert _seeds(order, label_of, 10) == ["a1", "b1", "c1", "a2", "c2", "a3"]
    assert _seeds([], {}, 3) == []


def test_interim_rounds_pick_the_border_of_a_new_label_not_its_core():
    """Of documents whose top two labels include a new one, the least sure; a document sure of a new label, or
    unsure only between old labels, is not picked."""
    from workflow.evolve.update import _border_rows

    labels = ["L1", "L2", "L9"]  # L9 is new
    P = np.array([
        [0.05, 0.05, 0.90],  # 0: the core of the new label
        [0.48, 0.04, 0.48],  # 1: on the border of old L1 and new L9
        [0.50, 0.46, 0.04],  # 2: unsure, but between two old labels
        [0.04, 0.41, 0.55],  # 3: near the border of old L2 and new L9
        [0.90, 0.05, 0.05],  # 4: old, sure
    ])
    X = np.eye(5)
    assert _border_rows(P, labels, {"L9"}, X, 2).tolist() == [1, 3]
    assert sorted(_border_rows(P, labels, {"L9"}, X, 10).tolist()) == [0, 1, 3]  # never a row without a new label
    assert _border_rows(P, labels, {"L9"}, X, 0).tolist() == []
    assert _border_rows(P, labels, set(), X, 3).tolist() == []
    assert _border_rows(P[:0], labels, {"L9"}, X[:0], 3).tolist() == []


def test_budget_goes_first_to_the_new_labels_seed_documents(db_copy):
    db, run_id, new = db_copy
    with Store(db) as store:
        report = update_run(store, run_id, str(new), show_progress=False, label_budget=30, refresh_per_label=0)
        state = store.find_update(run_id, store.query("SELECT source_key FROM updates")[0]["source_key"])["state"]
        added = {a["label_id"] for a in report["added"]}
        members = store.cluster_members(run_id)
        seeds = state["to_label"][: report["n_seeds"]]
        # seeds are documents the new labels were built from, every new label gets one before any gets two
        assert seeds and all(members[d] in added for d in seeds)
        assert len({members[d] for d in seeds[: len(added)]}) == min(len(added), len(seeds))
        # the budget is spent, not exceeded: seeds + interim-classifier rounds
        assert report["n_labeled"] == len(seeds) + sum(report["n_rounds"]) <= 30
        assert len(report["n_rounds"]) == LABEL_ROUNDS and not set(seeds) & {d for r in state["rounds"] for d in r}
