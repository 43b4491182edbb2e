"""tnt_classify* as vectorised DuckDB functions in a user's own session."""

from __future__ import annotations

import duckdb

from workflow.classify.duckdb_udf import register
from workflow.classify.embed import get_embedder
from workflow.classify.loader import from_artifact


def test_sql_functions_match_the_model(artifact, trained):
    con = duckdb.connect()
    con.execute("CREATE TABLE docs(id VARCHAR, text VARCHAR)")
    texts = trained.texts[:40]
    con.executemany("INSERT INTO docs VALUES (?, ?)", [(str(i), t) for i, t in enumerate(texts)] + [("null", None)])
    model = register(con, artifact)
    rows = con.execute(
        "SELECT id, tnt_classify(text), tnt_classify_id(text), tnt_classify_proba(text), "
        "tnt_classify_uncertain(text) FROM docs ORDER BY id"
    ).fetchall()
    got = {r[0]: r[1:] for r in rows}
    assert got["null"] == (None, None, None, None)
    expected = from_artifact(artifact).records(get_embedder(model.embedding_model).embed(texts))
    for i, e in enumerate(expected):
        name, lid, p, unc = got[str(i)]
        assert (name, lid, unc) == (e["label_name"], e["label_id"], e["uncertain"])
        assert abs(p - e["probability"]) < 1e-9
    assert len({r[1] for r in rows if r[1]}) >= 2  # not a constant function


def test_vector_function_on_fixed_size_arrays(artifact, trained):
    con = duckdb.connect()
    model = register(con, artifact)
    X = get_embedder(model.embedding_model).embed(trained.texts[:30])
    con.execute("CREATE TABLE emb(id INTEGER, v FLOAT[384])")
    con.executemany("INSERT INTO emb VALUES (?, ?)", [(i, x.tolist()) for i, x in enumerate(X)])
    got = [r[0] for r in con.execute("SELECT tnt_classify_vector(v) FROM emb ORDER BY id").fetchall()]
    idx, _, _ = model.classify(X)
    assert got == [model.labels[i] for i in idx]
    assert con.execute("SELECT tnt_classify_vector(NULL::FLOAT[])").fetchone()[0] is None


def test_register_is_idempotent(artifact):
    con = duckdb.connect()
    register(con, artifact)
    register(con, artifact)
    assert con.execute("SELECT tnt_classify('I lost my card')").fetchone()[0]
