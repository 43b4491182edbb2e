"""Active label selection (--label-selection active): the selection function on synthetic data, and the graph's
rounds on the scripted model through the production gateway (budget, rounds stored, resume, teachers)."""

from __future__ import annotations

import duckdb
import numpy as np
import pytest
from typer.testing import CliRunner

from workflow.classify.active import margins, round_sizes, select_batch
from workflow.classify.fit import drawn_at_random
from workflow.cli import app, print_summary
from workflow.config import JobConfig
from workflow.estimate import estimate_run
from workflow.graph.nodes import label as label_node
from workflow.graph.nodes.sample import sample
from workflow.graph.selection import candidate_pool
from workflow.runner import execute, run_context
from workflow.store import Store, text_hash
from workflow.testing import scripted

# -- the selection function ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("total", [1, 2, 9, 10, 11, 14, 15, 60, 250, 1000, 2001])
def test_round_sizes_spend_the_budget_exactly_seed_first(total):
    sizes = round_sizes(total)
    assert sum(sizes) == total
    assert sizes[0] == min(total, max(10, -(-total // 4)))  # a quarter, at least 10
    assert len(sizes) <= 5 and all(s >= 1 for s in sizes)


def _blobs(rng: np.random.Generator, n: int, center: np.ndarray, spread: float = 0.3) -> np.ndarray:
    return center + spread * rng.standard_normal((n, len(center)))


def _separable_with_ambiguous_region(rng: np.random.Generator):
    """Three well separated classes in 8 dimensions; the pool also holds 30 points half-way between A and B."""
    A, B, C = (3.0 * np.eye(8)[i] for i in range(3))
    X_lab = np.vstack([_blobs(rng, 10, A), _blobs(rng, 10, B), _blobs(rng, 10, C)])
    y_lab = ["A"] * 10 + ["B"] * 10 + ["C"] * 10
    clear = np.vstack([_blobs(rng, 100, A), _blobs(rng, 100, B), _blobs(rng, 100, C)])
    ambiguous = _blobs(rng, 30, (A + B) / 2, spread=0.2)
    return X_lab, y_lab, np.vstack([clear, ambiguous]), np.arange(300, 330)


def test_active_picks_the_ambiguous_region_random_does_not():
    rng = np.random.default_rng(0)
    X_lab, y_lab, X_pool, boundary = _separable_with_ambiguous_region(rng)
    picked = select_batch(X_lab, y_lab, X_pool, 10, seed=0)
    assert len(picked) == len(set(picked.tolist())) == 10
    # 30 of 330 pool rows are ambiguous: a random pick finds ~1; the diversity step spends a few picks elsewhere
    assert np.isin(picked, boundary).sum() >= 6
    chance = np.isin(np.random.default_rng(1).choice(len(X_pool), 10, replace=False), boundary).sum()
    assert chance <= 4
    assert np.array_equal(picked, select_batch(X_lab, y_lab, X_pool, 10, seed=0))  # deterministic


def test_diversity_one_pick_among_copies_of_the_most_uncertain_document():
    rng = np.random.default_rng(2)
    X_lab, y_lab, X_pool, _ = _separable_with_ambiguous_region(rng)
    A, B, C = (3.0 * np.eye(8)[i] for i in range(3))
    copies = np.repeat(((A + B) / 2)[None, :], 20, axis=0)  # 20 identical, maximally ambiguous documents
    bc = _blobs(rng, 30, (B + C) / 2, spread=0.2)  # a second ambiguous region
    pool = np.vstack([X_pool, copies, bc])
    copy_rows = np.arange(len(X_pool), len(X_pool) + 20)
    m = margins(X_lab, y_lab, pool)
    assert np.isin(np.argsort(m)[:10], copy_rows).sum() >= 5  # uncertainty alone would spend half a round on them
    picked = select_batch(X_lab, y_lab, pool, 10, seed=0)
    assert len(set(picked.tolist())) == 10
    assert np.isin(picked, copy_rows).sum() <= 1
    assert np.isin(picked, np.arange(len(pool) - 30, len(pool))).sum() >= 3  # the other region gets its share


def test_select_batch_edge_cases():
    rng = np.random.default_rng(3)
    pool = rng.standard_normal((12, 4))
    one_class = select_batch(pool[:3], ["A", "A", "A"], pool, 5, seed=0)  # no uncertainty yet: diversity only
    assert len(set(one_class.tolist())) == 5
    assert sorted(select_batch(pool[:3], ["A", "B", "A"], pool, 50).tolist()) == list(range(12))  # k > pool
    assert len(select_batch(pool[:3], ["A", "B", "A"], pool, 0)) == 0


# -- the graph's rounds -------------------------------------------------------------------------------------------


def _label_calls(store: Store, run_id: str) -> int:
    return store.query("SELECT count(*) AS n FROM llm_calls WHERE run_id = ? AND step = 'label'", [run_id])[0]["n"]


def test_active_run_spends_the_budget_in_recorded_rounds_and_resumes_the_same(corpus, db, new_run, tmp_path,
                                                                              monkeypatch, capsys):
    # reference: an uninterrupted active run
    with Store(db) as store:
        run_id = new_run(store, corpus, label_selection="active")
        assert execute(store, run_id, show_progress=False).status == "done"
        rounds = store.sample_rounds(run_id, 2)
        counts = [sum(1 for r in rounds.values() if r == i) for i in range(5)]
        assert counts == round_sizes(60) == [15, 12, 11, 11, 11]
        assert list(rounds.values()) == sorted(rounds.values())  # stored in round order
        labelled = store.assignments(run_id)
        assert set(labelled) == set(rounds) and len(labelled) == 60 == _label_calls(store, run_id)
        texts = [d.text for d in store.documents("c", list(rounds))]
        assert len({text_hash(t) for t in texts}) == 60  # never the same document (or text) twice
        by_round = store.query("SELECT round, count(*) AS n FROM samples WHERE run_id = ? AND phase = 2 "
                               "GROUP BY round ORDER BY round", [run_id])  # queryable
        assert [r["n"] for r in by_round] == counts
        # the seed set is random: the first documents a random run of the same seed labels
        random_run = new_run(store, corpus)
        sample(run_context(store, random_run, False), {})
        assert [d for d, r in rounds.items() if r == 0] == store.sample(random_run, 2)[:15]
        assert set(store.sample(random_run, 2)) != set(rounds)  # later rounds chose differently
        model = store.model(run_id=run_id)
        assert model["metrics"]["n_train"] + model["metrics"]["n_test"] <= 60
        # the seed round is the classifier's random sample (too small here to score model selection on)
        drawn = drawn_at_random(store, run_id, sorted(labelled))
        assert sum(drawn) == 15 and drawn_at_random(store, random_run, store.sample(random_run, 2)) is None
        assert 0 <= model["metrics"]["random_rows"]["n"] <= 15
        # the candidate pool is embedded already: the classifier learns from the candidates it is sure of
        pool = candidate_pool(store, "c", JobConfig.model_validate(store.run(run_id)["config"]), set(rounds))
        assert pool and not set(pool) & set(labelled)
        assert model["metrics"]["self_training"]["unlabeled"] == len(pool)
        capsys.readouterr()
        print_summary(store, run_id)
        text = " ".join(capsys.readouterr().out.split())
        assert f"on the {model['metrics']['random_rows']['n']} of them drawn at random: accuracy" in text
        # 15 random labels are too few to hold out alone: the test split mixes in the chosen documents, and says so
        assert "The held-out figures below are mostly on these harder documents" in text
        st = model["metrics"]["self_training"]
        assert f"self-training: {st['added']} of {st['unlabeled']} unlabeled documents joined the fit" in text

    # killed after round 2 was chosen, before it was labelled: resume labels it and goes on, asking nothing twice
    real = label_node.next_round

    def killed_after_round_2(ctx, version):
        picked = real(ctx, version)
        if picked and picked[0] == 2:
            raise KeyboardInterrupt
        return picked

    db2 = str(tmp_path / "killed.duckdb")
    with Store(db2) as store:
        run2 = new_run(store, corpus, label_selection="active")
        monkeypatch.setattr(label_node, "next_round", killed_after_round_2)
        with pytest.raises(KeyboardInterrupt):
            execute(store, run2, show_progress=False)
        assert _label_calls(store, run2) == 27 and len(store.sample_rounds(run2, 2)) == 38
        monkeypatch.setattr(label_node, "next_round", real)
        before = scripted.calls["keywords"]
        assert execute(store, run2, show_progress=False).status == "done"
        assert scripted.calls["keywords"] - before == 60 - 27  # only the unlabelled documents
        assert _label_calls(store, run2) == 60
        assert store.sample_rounds(run2, 2) == rounds  # same rounds, same documents, same order


def test_active_with_the_nearest_teacher_makes_no_label_calls(corpus, db, new_run):
    with Store(db) as store:
        run_id = new_run(store, corpus, label_selection="active", teacher="nearest", label_sample=40)
        assert execute(store, run_id, show_progress=False).status == "done"
        rounds = store.sample_rounds(run_id, 2)
        assert sorted(set(rounds.values())) == list(range(len(round_sizes(40))))
        assert len(store.assignments(run_id)) == len(rounds) == 40
        assert _label_calls(store, run_id) == 0


def test_tiny_corpus_budget_larger_than_the_corpus(tmp_path, db, new_run):
    import json

    from tests.conftest import sample_rows

    path = tmp_path / "tiny.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in sample_rows(30)))
    with Store(db) as store:
        run_id = new_run(store, path, label_selection="active", taxonomy_sample=20, label_sample=60, batch_size=10)
        assert execute(store, run_id, show_progress=False).status == "done"
        assert len(store.sample_rounds(run_id, 2)) == len(store.assignments(run_id)) == 30  # the whole corpus


def test_dry_run_estimate_counts_the_same_label_calls_for_both_selections():
    texts = [f"document number {i} about cards and transfers" for i in range(500)]
    base = dict(use_case="support intents", model="gpt-4o-mini", label_sample=200, taxonomy_sample=100)
    calls = {sel: next(p.calls for p in estimate_run(JobConfig(**base, label_selection=sel), texts)
                       if p.step == "label") for sel in ("random", "active")}
    assert calls == {"random": 200, "active": 200}


def test_old_database_gets_the_round_column(tmp_path):
    path = str(tmp_path / "old.duckdb")
    con = duckdb.connect(path)
    con.execute("CREATE TABLE samples(run_id VARCHAR, phase INTEGER, doc_id VARCHAR, batch INTEGER, "
                "PRIMARY KEY(run_id, phase, doc_id))")
    con.execute("INSERT INTO samples VALUES ('r', 2, 'd1', 0), ('r', 2, 'd2', 0)")
    con.close()
    with Store(path) as store:
        assert store.sample_rounds("r", 2) == {"d1": None, "d2": None}
        store.extend_sample("r", 2, ["d2", "d3"], 200, round=1)
        assert store.sample_rounds("r", 2) == {"d1": None, "d2": None, "d3": 1}


def test_unknown_selection_is_a_clear_usage_error(corpus, db):
    res = CliRunner().invoke(app, ["run", str(corpus), "-u", "support intents", "--db", db, "--model",
                                   "scripted/keywords", "--label-selection", "smart", "-q"])
    assert res.exit_code == 2 and "invalid option --label-selection" in res.output and "Traceback" not in res.output
