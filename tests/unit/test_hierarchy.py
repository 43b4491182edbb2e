"""Two-level taxonomies on the scripted model, through the production gateway: the graph step, the tables, the
fallbacks, exports, `tnt predict`, the DuckDB functions, `tnt eval` and review moves."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from tests.conftest import SCRIPTED_JOB
from workflow.cli import app
from workflow.config import JobConfig
from workflow.graph.nodes.hierarchy import build_hierarchy
from workflow.ingest import read_corpus
from workflow.llm.gateway import Gateway
from workflow.review import edits
from workflow.review.edits import ReviewError
from workflow.runner import execute
from workflow.store import Label, Store
from workflow.testing import scripted

cli = CliRunner()


def tnt(*args: object):
    return cli.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def two_level(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, Path]:
    """A finished `--levels 2` scripted run (built once; tests that edit it copy the file)."""
    from tests.conftest import sample_rows

    root = tmp_path_factory.mktemp("hier")
    corpus = root / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(r) + "\n" for r in sample_rows(120)))
    db = str(root / "tnt.duckdb")
    with Store(db) as store:
        store.insert_documents("c", read_corpus(str(corpus)).records)
        config = JobConfig(**{**SCRIPTED_JOB, "levels": 2, "max_parents": 3})
        run_id = store.create_run("c", config.use_case, config.model_dump())
        assert execute(store, run_id, show_progress=False).status == "done"
    return db, run_id, corpus


@pytest.fixture
def copy_db(two_level, tmp_path: Path) -> tuple[str, str]:
    import shutil

    db, run_id, _ = two_level
    dst = tmp_path / "tnt.duckdb"
    shutil.copy(db, dst)
    return str(dst), run_id


def test_levels_2_stores_parents_in_the_labels_table(two_level):
    db, run_id, _ = two_level
    with Store(db) as store:
        versions = store.taxonomy_versions(run_id)
        assert versions[-1]["stage"] == "hierarchy"
        before = store.taxonomy(run_id, versions[-2]["version"])[1]
        version, leaves = store.taxonomy(run_id)
        parents = store.parents(run_id)
        assert 2 <= len(parents) <= 3
        # leaves are unchanged (same ids, names, descriptions, order), each under a parent of this version
        assert [(lb.label_id, lb.name) for lb in leaves] == [(lb.label_id, lb.name) for lb in before]
        assert {lb.parent_id for lb in leaves} == {p.label_id for p in parents}
        assert all(p.label_id.startswith("P") for p in parents)
        rows = store.query("SELECT level, count(*) AS n FROM labels WHERE run_id = ? AND version = ? GROUP BY level "
                           "ORDER BY level", [run_id, version])
        assert [(r["level"], r["n"]) for r in rows] == [(1, len(leaves)), (2, len(parents))]
        # the run's labels moved to the hierarchy version, so a resume has nothing to re-label
        assert set(store.assignments(run_id, "llm", taxonomy_version=version)) == set(store.sample(run_id, 2))
        # the scripted model's grouping: a label sits under the parent that names its keyword
        names = {p.label_id: p.name.lower() for p in parents}
        assert all(lb.name.split()[0].lower() in names[lb.parent_id].split() for lb in leaves)
        calls = store.call_stats(run_id)
    assert {"hierarchy"} <= {c["step"] for c in calls}
    before_calls = scripted.calls["keywords"]
    with Store(db) as store:
        assert execute(store, run_id, show_progress=False).message == "the run had already finished"
    assert scripted.calls["keywords"] == before_calls


def test_old_database_without_parent_columns_still_opens(tmp_path: Path):
    db = str(tmp_path / "old.duckdb")
    con = duckdb.connect(db)
    con.execute("CREATE TABLE labels(run_id VARCHAR, version INTEGER, label_id VARCHAR, name VARCHAR, "
                "description VARCHAR, position INTEGER, PRIMARY KEY(run_id, version, label_id))")
    con.execute("CREATE TABLE taxonomies(run_id VARCHAR, version INTEGER, stage VARCHAR, batch INTEGER, rating INTEGER,"
                " notes VARCHAR, author VARCHAR, call_id VARCHAR, created_at TIMESTAMP, PRIMARY KEY(run_id, version))")
    con.execute("INSERT INTO taxonomies VALUES ('r', 1, 'review', NULL, NULL, NULL, 'llm', NULL, now())")
    con.execute("INSERT INTO labels VALUES ('r', 1, 'L1', 'Cards', 'Card things.', 0), "
                "('r', 1, 'L2', 'Fees', 'Fees.', 1)")
    con.close()
    with Store(db) as store:
        assert store.taxonomy("r") == (1, [Label("L1", "Cards", "Card things."), Label("L2", "Fees", "Fees.")])
        assert store.parents("r") == []


def _script_failing(prompts: set[str]) -> str:
    name = "hier-fail-" + "-".join(sorted(prompts))

    def answer(prompt_name, messages, schema):
        return "not json" if prompt_name in prompts else scripted.keywords(prompt_name, messages, schema)

    scripted.register_script(name, answer)
    return f"scripted/{name}"


def _gateway(store: Store, run_id: str) -> Gateway:
    return Gateway(store, run_id, max_attempts=2, show_progress=False)


def _toy_run(store: Store) -> str:
    store.insert_documents("c", [("d1", "x", {})])
    run_id = store.create_run("c", "test", JobConfig(use_case="test").model_dump())
    store.save_taxonomy(run_id, [Label("L1", "Card delivery", "Card arrival."), Label("L2", "Card fees", "Card fees."),
                                 Label("L3", "Transfers", "Sending money."), Label("L4", "Top ups", "Adding money.")],
                        "review")
    return run_id


def fake_embed(texts: list[str]):
    """Two obvious groups: texts about cards vs the rest (a stand-in for a sentence embedder)."""
    import numpy as np

    return np.array([[1.0, 0.1] if "card" in t.lower() else [0.1, 1.0] for t in texts], dtype=np.float32)


def test_failed_proposal_falls_back_to_clustering(tmp_path: Path):
    with Store(tmp_path / "t.duckdb") as store:
        run_id = _toy_run(store)
        config = JobConfig(use_case="test", model=_script_failing({"hierarchy_propose"}))
        version = build_hierarchy(store, _gateway(store, run_id), run_id, config, max_parents=2, embed=fake_embed)
        _, leaves = store.taxonomy(run_id, version)
        parent = {lb.label_id: lb.parent_id for lb in leaves}
        assert parent["L1"] == parent["L2"] != parent["L3"] == parent["L4"]
        assert len(store.parents(run_id, version)) == 2
        assert "clustered" in store.taxonomy_versions(run_id)[-1]["notes"]


def test_failed_placement_goes_to_the_nearest_parent(tmp_path: Path):
    with Store(tmp_path / "t.duckdb") as store:
        run_id = _toy_run(store)
        config = JobConfig(use_case="test", model=_script_failing({"hierarchy_assign"}))
        version = build_hierarchy(store, _gateway(store, run_id), run_id, config, max_parents=2, embed=fake_embed)
        _, leaves = store.taxonomy(run_id, version)
        parents = {p.label_id: p for p in store.parents(run_id, version)}
        assert all(lb.parent_id in parents for lb in leaves)
        assert "embedding similarity" in store.taxonomy_versions(run_id)[-1]["notes"]


def test_rebuilding_keeps_parent_ids_and_places_only_new_labels(copy_db):
    db, run_id = copy_db
    with Store(db) as store:
        config = JobConfig.model_validate(store.run(run_id)["config"])
        first = {p.name: p.label_id for p in store.parents(run_id)}
        again = build_hierarchy(store, _gateway(store, run_id), run_id, config)  # full rebuild: same names, same ids
        assert {p.name: p.label_id for p in store.parents(run_id, again)} == first
        word = store.taxonomy(run_id)[1][0].name.split()[0]  # a keyword one parent's name carries
        edits.add(store, run_id, f"{word} fees", f"Fees for {word.lower()}.", reviewer="t", relabel_other=False)
        _, leaves = store.taxonomy(run_id)
        assert leaves[-1].parent_id is None  # a new label has no parent yet
        before = scripted.calls["keywords"]
        version = build_hierarchy(store, _gateway(store, run_id), run_id, config, only=[leaves[-1].label_id])
        assert scripted.calls["keywords"] == before + 1  # one placement call, no new proposal
        _, now = store.taxonomy(run_id, version)
        assert [lb.parent_id for lb in now[:-1]] == [lb.parent_id for lb in leaves[:-1]]
        assert word.lower() in {p.label_id: p.name.lower() for p in store.parents(run_id)}[now[-1].parent_id].split()


def test_export_predict_and_sql_know_both_levels(two_level, tmp_path: Path):
    from workflow.classify.duckdb_udf import register
    from workflow.classify.loader import from_artifact

    db, run_id, corpus = two_level
    art = tmp_path / "art"
    assert tnt("export", run_id, "--out", art, "--db", db).exit_code == 0
    tax = json.loads((art / "taxonomy.json").read_text())
    parents = {t["label_id"]: t["name"] for t in tax if t.get("level") == 2}
    leaves = [t for t in tax if t.get("level") != 2]
    assert parents and all(t["parent_id"] in parents for t in leaves)
    assert "(level 2)" in (art / "README.md").read_text()

    out = tmp_path / "pred.parquet"
    res = tnt("predict", "--model", art, "--db", db, "--input", corpus, "--output", out, "-q")
    assert res.exit_code == 0, res.output
    rows = duckdb.sql(f"SELECT * FROM '{out}'").fetchall()
    cols = [c[0] for c in duckdb.sql(f"DESCRIBE SELECT * FROM '{out}'").fetchall()]
    rows = [dict(zip(cols, r)) for r in rows]
    parent_of = {t["label_id"]: t["parent_id"] for t in leaves}
    assert rows and all(r["parent_id"] == parent_of.get(r["label_id"]) for r in rows)
    assert all(r["parent_name"] == parents.get(r["parent_id"]) for r in rows)
    assert any(r["parent_id"] for r in rows)

    con = duckdb.connect()
    model = register(con, from_artifact(art))
    texts = [json.loads(line)["text"] for line in corpus.read_text().splitlines()[:20]]
    got = con.execute("SELECT tnt_classify_id(t), tnt_classify_parent_id(t), tnt_classify_parent(t) FROM "
                      "(SELECT unnest(?) AS t)", [texts]).fetchall()
    for lid, pid, pname in got:
        assert pid == parent_of.get(lid) and pname == parents.get(pid)
    assert model.has_hierarchy


def test_eval_reports_gold_metrics_at_both_levels(copy_db):
    db, run_id = copy_db
    res = tnt("eval", run_id, "--db", db, "--json")
    assert res.exit_code == 0, res.output
    metrics = json.loads(res.output)["metrics"]
    with Store(db) as store:
        n_parents = len(store.parents(run_id))
    for prefix in ("gold_llm", "gold_classifier"):
        leaf, top = metrics[f"{prefix}_harmonic_purity"], metrics[f"{prefix}_l2_harmonic_purity"]
        assert top["n"] == leaf["n"]
        assert top["n_labels"] <= n_parents + 1 < leaf["n_labels"] + 1  # parents (+ Other) are fewer than leaves
        # merging clusters never lowers inverse purity nor raises purity
        assert top["inverse_purity"] >= leaf["inverse_purity"] - 1e-9 and top["purity"] <= leaf["purity"] + 1e-9


def test_review_move_keeps_leaves_and_later_edits_keep_parents(copy_db):
    db, run_id = copy_db
    with Store(db) as store:
        version, leaves = store.taxonomy(run_id)
        parents = store.parents(run_id)
        child = leaves[0]
        target = next(p for p in parents if p.label_id != child.parent_id)
        counts = store.label_counts(run_id)
        v = edits.move(store, run_id, child.label_id, target.label_id, reviewer="ann")
        _, now = store.taxonomy(run_id, v)
        assert {lb.label_id: lb.parent_id for lb in now}[child.label_id] == target.label_id
        assert [lb.label_id for lb in now] == [lb.label_id for lb in leaves]
        assert store.label_counts(run_id) == counts  # no document changes label
        assert store.reviews(run_id)[-1]["details"]["to"] == target.label_id
        with pytest.raises(ReviewError, match="already under"):
            edits.move(store, run_id, child.label_id, target.label_id, reviewer="ann")
        with pytest.raises(ReviewError, match="no parent"):
            edits.move(store, run_id, child.label_id, "P999", reviewer="ann")
        # a rename rebuilds the label without a parent: the store keeps the one it had, and the parents
        v2 = edits.rename(store, run_id, child.label_id, "Renamed child", reviewer="ann")
        _, after = store.taxonomy(run_id, v2)
        assert {lb.label_id: lb.parent_id for lb in after} == {lb.label_id: lb.parent_id for lb in now}
        assert store.parents(run_id, v2) == store.parents(run_id, v)
