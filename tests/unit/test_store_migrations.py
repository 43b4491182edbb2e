"""An old database (made before numbered migrations) opens, is migrated once, and keeps its data."""

import duckdb

from workflow.store import SCHEMA_VERSION, Label, Store
from workflow.store.migrations import MIGRATIONS

# tables as the first release created them: no owner, parent_id, level, nearest_id, offered_ids, round
OLD = """
CREATE TABLE meta(key VARCHAR PRIMARY KEY, value VARCHAR);
INSERT INTO meta VALUES ('schema_version', '1');
CREATE TABLE runs(run_id VARCHAR PRIMARY KEY, corpus VARCHAR, use_case VARCHAR, config JSON, stage VARCHAR,
    status VARCHAR, error VARCHAR, created_at TIMESTAMP, updated_at TIMESTAMP);
INSERT INTO runs VALUES ('r1', 'c', 'u', '{"use_case": "u"}', 'done', 'done', NULL, now(), now());
CREATE TABLE labels(run_id VARCHAR, version INTEGER, label_id VARCHAR, name VARCHAR, description VARCHAR,
    position INTEGER, PRIMARY KEY(run_id, version, label_id));
CREATE TABLE taxonomies(run_id VARCHAR, version INTEGER, stage VARCHAR, batch INTEGER, rating INTEGER,
    notes VARCHAR, author VARCHAR, call_id VARCHAR, created_at TIMESTAMP, PRIMARY KEY(run_id, version));
INSERT INTO taxonomies VALUES ('r1', 1, 'final', NULL, NULL, NULL, 'llm', NULL, now());
INSERT INTO labels VALUES ('r1', 1, 'a', 'A', 'first', 0);
CREATE TABLE assignments(run_id VARCHAR, doc_id VARCHAR, source VARCHAR, label_id VARCHAR,
    taxonomy_version INTEGER, rationale VARCHAR, confidence DOUBLE, status VARCHAR, call_id VARCHAR,
    created_at TIMESTAMP, PRIMARY KEY(run_id, doc_id, source));
CREATE TABLE samples(run_id VARCHAR, phase INTEGER, doc_id VARCHAR, batch INTEGER, PRIMARY KEY(run_id, phase, doc_id));
"""


def _columns(path, table):
    with duckdb.connect(str(path), read_only=True) as con:
        return [r[0] for r in con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE table_name = ? ORDER BY column_index", [table]).fetchall()]


def test_old_database_is_migrated_once_and_keeps_its_rows(tmp_path):
    path = tmp_path / "old.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute(OLD)
    with Store(path) as store:
        assert [r["id"]
                for r in store.query("SELECT id FROM schema_migrations ORDER BY id")] == [n for n, _ in MIGRATIONS]
        assert store.query("SELECT value FROM meta WHERE key = 'schema_version'") == [{"value": str(SCHEMA_VERSION)}]
        assert store.run("r1")["status"] == "done"
        assert store.taxonomy("r1") == (1, [Label("a", "A", "first")])
        store.save_taxonomy("r1", [Label("b", "B", "leaf", "p")], "human", parents=[Label("p", "P", "parent")])
        store.save_assignment("r1", "d1", "llm", "b", taxonomy_version=2, nearest_id="b", offered_ids=["a", "b"])
        store.save_sample("r1", 2, ["d1"], 10, round=1)
        assert store.parents("r1") == [Label("p", "P", "parent")]
        assert store.sample_rounds("r1") == {"d1": 1}
    assert _columns(path, "runs")[-1] == "owner"
    assert _columns(path, "assignments")[-3:] == ["label_ids", "nearest_id", "offered_ids"]
    with Store(path) as store:  # a second open applies nothing again
        rows = store.query("SELECT id, count(*) AS n FROM schema_migrations GROUP BY id ORDER BY id")
        assert [r["n"] for r in rows] == [1] * len(MIGRATIONS)


def test_new_and_migrated_databases_have_the_same_columns(tmp_path):
    """schema.SCHEMA (a new database) and an old database after the migrations must agree, column order included:
    some writes insert by position."""
    old, new = tmp_path / "old.duckdb", tmp_path / "new.duckdb"
    with duckdb.connect(str(old)) as con:
        con.execute(OLD)
    Store(old).close()
    Store(new).close()
    for table in ("runs", "labels", "assignments", "samples", "taxonomies"):
        assert _columns(old, table) == _columns(new, table), table
