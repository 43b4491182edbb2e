"""tnt train / export / predict end to end on a real (scripted-label) run, through the typer app."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from workflow.classify.embed import get_embedder
from workflow.classify.export import load_artifact
from workflow.cli import app
from workflow.store import Store, StoreError

runner = CliRunner()


def tnt(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def rows_of(path: Path) -> dict[str, dict]:
    return {r["doc_id"]: r for r in pq.read_table(path).to_pylist()}


def test_train_stores_a_new_model_and_reports_agreement(trained):
    with Store(trained.db) as store:
        doc = sorted(store.training_labels(trained.run_id))[0]
        version, labels = store.taxonomy(trained.run_id)
        other = next(lb.label_id for lb in labels if lb.label_id != store.training_labels(trained.run_id)[doc])
        store.save_assignment(trained.run_id, doc, "human", other, taxonomy_version=version)
        before = store.query("SELECT count(*) AS n FROM models WHERE run_id = ?", [trained.run_id])[0]["n"]
    res = tnt("train", trained.run_id, "--db", trained.db, "-q")
    assert res.exit_code == 0, res.output
    for word in ("precision", "recall", "Cohen's kappa", "macro-F1", "1 human corrections"):
        assert word in res.output
    with Store(trained.db) as store:
        rows = store.query("SELECT model_id, metrics FROM models WHERE run_id = ? ORDER BY created_at",
                           [trained.run_id])
        assert len(rows) == before + 1
        assert json.loads(rows[-1]["metrics"])["n_human_labels"] == 1
        store._exec("DELETE FROM assignments WHERE source = 'human'")
    forget_models_after(trained, before)


def forget_models_after(trained, n_models: int) -> None:
    """Drop the models a test trained beyond the run's first ``n_models`` (and their corpus predictions), so the
    run's latest model is the fixture's again for the other tests."""
    with Store(trained.db) as store:
        ids = [r["model_id"] for r in store.query("SELECT model_id FROM models WHERE run_id = ? ORDER BY created_at",
                                                  [trained.run_id])][n_models:]
        for model_id in ids:
            store._exec("DELETE FROM predictions WHERE model_id = ?", [model_id])
            store._exec("DELETE FROM models WHERE model_id = ?", [model_id])


def _n_models(trained) -> int:
    with Store(trained.db) as store:
        return store.query("SELECT count(*) AS n FROM models WHERE run_id = ?", [trained.run_id])[0]["n"]


def test_train_shows_each_candidate_with_its_selection_score_and_marks_the_chosen_one(trained):
    """Issue 20: `tnt train` printed only the winner's held-out scores, so a user could not see why logreg won."""
    before = _n_models(trained)
    try:
        res = tnt("train", trained.run_id, "--db", trained.db, "--algorithms", "logreg,mlp", "-q")
        assert res.exit_code == 0, res.output
        with Store(trained.db) as store:
            m = store.model(run_id=trained.run_id)["metrics"]
    finally:
        forget_models_after(trained, before)
    scores = m["candidate_scores"]
    assert len(scores) >= 6 and "mlp(256)" in scores and "logreg(C=0.01)" in scores
    rows = [ln for ln in res.output.splitlines() if ln.startswith("│")]  # table rows
    for name, score in scores.items():
        (row,) = [ln for ln in rows if f" {name} " in ln]
        assert (f"{score:.3f}" if score is not None else "n/a") in row, row
        assert ("<- chosen" in row) == (name == m["model"]), row
    assert "macro-F1" in res.output and m["selection"] in " ".join(res.output.split())


def test_train_labels_the_corpus_so_eval_scores_the_new_model(trained):
    """Issue 20: after `tnt train`, `tnt eval` silently dropped its classifier rows (the new model had labeled
    nothing). Now train labels the run's corpus as `tnt run` does; with --no-predict, eval says why they are
    missing."""
    before = _n_models(trained)
    try:
        res = tnt("train", trained.run_id, "--db", trained.db, "-q")
        assert res.exit_code == 0, res.output
        assert "labeled the 120 documents of corpus 'c'" in " ".join(res.output.split())
        with Store(trained.db) as store:
            new = store.model(run_id=trained.run_id)["model_id"]
            assert new != trained.model_id and len(store.predictions(new)) == 120
        ev = runner.invoke(app, ["eval", trained.run_id, "--db", trained.db, "--json"])
        assert ev.exit_code == 0, ev.output
        metrics = json.loads(ev.stdout)["metrics"]
        assert metrics["classifier_vs_llm_accuracy"]["model_id"] == new
        assert metrics["gold_classifier_ari"]["n"] == 120
        assert "classifier metrics skipped" not in ev.output

        res = tnt("train", trained.run_id, "--db", trained.db, "--no-predict", "-q")
        assert res.exit_code == 0, res.output
        assert "--no-predict" in res.output  # the note says the corpus was not labeled
        ev = runner.invoke(app, ["eval", trained.run_id, "--db", trained.db])
        assert ev.exit_code == 0, ev.output
        assert "classifier_vs_llm_accuracy" not in ev.stdout
        assert "classifier metrics skipped" in " ".join(ev.output.split()), ev.output
    finally:
        forget_models_after(trained, before)


def test_train_rejects_unknown_algorithm(trained):
    res = tnt("train", trained.run_id, "--db", trained.db, "--algorithms", "logreg,svm")
    assert res.exit_code == 2 and "unknown algorithm" in res.output and "Traceback" not in res.output


def test_exported_artifact_predicts_like_the_stored_model(trained, tmp_path):
    art = tmp_path / "art"
    res = tnt("export", trained.run_id, "--out", art, "--db", trained.db)
    assert res.exit_code == 0, res.output
    assert {p.name for p in art.iterdir()} >= {"model.skops", "taxonomy.json", "manifest.json", "README.md"}
    assert json.loads((art / "manifest.json").read_text())["embedding_model"] == "minilm-int8"

    stored, exported = tmp_path / "stored.parquet", tmp_path / "exported.parquet"
    res = tnt("predict", "--model", trained.model_id, "--db", trained.db, "--input", trained.corpus,
              "--output", stored, "-q")
    assert res.exit_code == 0, res.output
    assert "uncertain" in res.output and "Other" in res.output
    res = tnt("predict", "--model", art, "--db", trained.db, "--input", trained.corpus_file, "--output", exported,
              "--batch-size", "17", "-q")
    assert res.exit_code == 0, res.output
    a, b = rows_of(stored), rows_of(exported)
    assert len(a) == len(b) == 120
    for d in a:
        assert (a[d]["label_id"], a[d]["label_name"], a[d]["uncertain"]) == \
               (b[d]["label_id"], b[d]["label_name"], b[d]["uncertain"])
        # serving runs one float32 matmul (workflow/classify/loader.py); float32 products round differently with
        # the batch's shape (here 32k rows vs 17), by ~1e-7
        assert a[d]["probability"] == pytest.approx(b[d]["probability"], abs=1e-6)
        assert a[d]["model_version"] == trained.model_id

    # a plain Python user of the artifact: load_artifact + get_embedder, no tnt serving code
    clf, manifest, taxonomy = load_artifact(art)
    X = get_embedder(manifest["embedding_model"]).embed(trained.texts)
    labels, _ = clf.predict(X)
    assert [b[i]["label_id"] for i in trained.ids] == labels
    names = {t["label_id"]: t["name"] for t in taxonomy}
    assert all(b[i]["label_name"] == names.get(b[i]["label_id"], "Other") for i in trained.ids)

    # and the graph's stored predictions agree too
    with Store(trained.db) as store:
        graph = store.predictions(trained.model_id)
    assert {d: r["label_id"] for d, r in a.items()} == graph


def test_predict_into_a_table_refuses_to_clobber(trained, tmp_path):
    args = ["predict", "--model", trained.model_id, "--db", trained.db, "--input", trained.corpus, "-q"]
    res = tnt(*args, "--output", "preds_t")
    assert res.exit_code == 0, res.output
    res = tnt(*args, "--output", "preds_t")
    assert res.exit_code == 2 and "already exists" in res.output
    res = tnt(*args, "--output", "preds_t", "--overwrite", "--batch-size", "50")
    assert res.exit_code == 0, res.output
    res = tnt(*args, "--output", "documents")
    assert res.exit_code == 2 and "tnt's own tables" in res.output
    with Store(trained.db) as store:
        rows = store.query("SELECT count(*) AS n, count(DISTINCT doc_id) AS d FROM preds_t")[0]
        assert rows == {"n": 120, "d": 120}
        store._exec("DROP TABLE preds_t")


def test_every_table_tnt_creates_is_refused_as_an_output_table(tmp_path):
    """A hand-kept list of tnt's tables missed the ones added later (label_members, structured_modes): `--output
    label_members --overwrite` would have replaced a table of the run with predictions."""
    with Store(tmp_path / "t.duckdb") as store:
        created = {r["table_name"] for r in store.query("SELECT table_name FROM duckdb_tables()")}
        assert {"label_members", "structured_modes", "documents"} <= created
        for table in created:
            with pytest.raises(StoreError, match="tnt's own tables"):
                store.create_prediction_table(table, overwrite=True)
            with pytest.raises(StoreError, match="tnt's own tables"):
                store.create_prediction_table(table.upper(), overwrite=True)


def test_predict_from_precomputed_vectors_and_duckdb_table(trained, tmp_path):
    emb = get_embedder("minilm-int8").embed(trained.texts)
    vec_file = tmp_path / "vecs.parquet"
    pq.write_table(pa.table({"id": trained.ids, "vector": pa.FixedSizeListArray.from_arrays(
        pa.array(emb.ravel()), 384)}), vec_file)
    out_vec, out_txt = tmp_path / "v.parquet", tmp_path / "t.parquet"
    res = tnt("predict", "--model", trained.model_id, "--db", trained.db, "--input", vec_file,
              "--vector-field", "vector", "--output", out_vec, "-q")
    assert res.exit_code == 0, res.output

    ext = tmp_path / "ext.duckdb"
    import duckdb

    con = duckdb.connect(str(ext))
    con.execute("CREATE TABLE docs(id VARCHAR, body VARCHAR)")
    con.executemany("INSERT INTO docs VALUES (?, ?)", list(zip(trained.ids, trained.texts)))
    con.close()
    res = tnt("predict", "--model", trained.model_id, "--db", trained.db, "--input", f"{ext}:docs",
              "--text-field", "body", "--output", out_txt, "--batch-size", "25", "--memory-limit", "64MB", "-q")
    assert res.exit_code == 0, res.output
    a, b = rows_of(out_vec), rows_of(out_txt)
    assert set(a) == set(trained.ids) and {d: r["label_id"] for d, r in a.items()} == \
        {d: r["label_id"] for d, r in b.items()}


@pytest.mark.parametrize("args,message", [
    (["--model", "no-such-model"], "no stored model or run"),
    (["--input", "missing.jsonl"], "no such file"),
    (["--text-field", "nope"], "no field 'nope'"),
    (["--output", "bad name!"], "not a plain table name"),
    (["--memory-limit", "lots"], "bad memory limit 'lots'"),
])
def test_predict_errors_are_one_line(trained, tmp_path, args, message):
    base = {"--model": trained.model_id, "--input": str(trained.corpus_file), "--output": str(tmp_path / "o.parquet")}
    extra = []
    for k, v in zip(args[::2], args[1::2]):
        if k in base:
            base[k] = v
        else:
            extra += [k, v]
    flat = [x for kv in base.items() for x in kv]
    res = tnt("predict", "--db", trained.db, "-q", *flat, *extra)
    assert res.exit_code == 2, res.output
    assert message in res.output and "Traceback" not in res.output
