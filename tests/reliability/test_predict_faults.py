"""`tnt predict` where the database is busy, missing or beside the point (issue 20): an exported artifact on files
needs no database, so it neither opens nor creates ./tnt.duckdb (DuckDB lets one process hold a file, and another
tnt job may be running there); and a bare name as --input is a table in --db as well as a corpus."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import SCRIPTED_JOB, sample_rows, signal_mid_query
from tests.reliability.conftest import no_traceback, tnt, write_jsonl
from workflow.store import Store, StoreError

pytestmark = pytest.mark.integration

# Another process (a long tnt run, a notebook) holding ./tnt.duckdb open: DuckDB locks the file for it.
HOLD = ("import duckdb, sys; con = duckdb.connect(sys.argv[1]); con.execute('CREATE TABLE held(i INTEGER)'); "
        "print('ready', flush=True); sys.stdin.read(); con.close()")


@dataclass(frozen=True)
class Model:
    db: Path
    run_id: str
    model_id: str
    artifact: Path
    corpus_file: Path
    ids: list[str]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Model:
    """A finished scripted run, its model exported as an artifact, and its documents also as a plain table
    'mytable' (id, text) and a table 'bodies' (id, body) in the run's database."""
    from workflow.config import JobConfig
    from workflow.ingest import read_corpus
    from workflow.runner import execute

    root = tmp_path_factory.mktemp("predict_faults")
    rows = sample_rows(120)
    corpus_file = write_jsonl(root / "corpus.jsonl", rows)
    db = root / "runs.duckdb"
    with Store(db) as store:
        store.insert_documents("c", read_corpus(str(corpus_file)).records)
        run_id = store.create_run("c", SCRIPTED_JOB["use_case"], JobConfig(**SCRIPTED_JOB).model_dump())
        assert execute(store, run_id, show_progress=False).status == "done"
        model_id = store.model(run_id=run_id)["model_id"]
        store._exec("CREATE TABLE mytable AS SELECT doc_id AS id, text FROM documents WHERE corpus = 'c'")
        store._exec("CREATE TABLE bodies AS SELECT doc_id AS id, text AS body FROM documents WHERE corpus = 'c'")
    res = tnt("export", run_id, "--db", db, "--out", root / "artifact")
    assert res.exit_code == 0, res.output
    return Model(db, run_id, model_id, root / "artifact", corpus_file, [str(r["id"]) for r in rows])


def labels_of(path: Path) -> dict[str, str]:
    return {r["doc_id"]: r["label_id"] for r in pq.read_table(path).to_pylist()}


def error_lines(output: str) -> list[str]:
    return [ln for ln in output.splitlines() if ln.startswith("error:")]


def test_artifact_predicts_files_while_another_process_holds_tnt_duckdb(model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    held = tmp_path / "tnt.duckdb"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(held)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(StoreError, match="in use"):  # the file really is locked against this process
            Store(held)
        res = tnt("predict", "--model", model.artifact, "--input", model.corpus_file, "--output", "out.parquet", "-q")
        no_traceback(res.output)
        assert res.exit_code == 0, res.output
        assert "predicted 120 documents" in res.output
        assert holder.poll() is None  # it held the file all along
    finally:
        if holder.poll() is None:
            holder.stdin.close()
            holder.wait(timeout=60)
    assert set(labels_of(tmp_path / "out.parquet")) == set(model.ids)
    with Store(held, read_only=True) as store:  # and tnt wrote nothing into it
        assert [r["table_name"] for r in store.query("SELECT table_name FROM duckdb_tables()")] == ["held"]


def test_artifact_predicts_files_without_creating_a_database(model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = tnt("predict", "--model", model.artifact, "--input", model.corpus_file, "--output", "out.parquet", "-q")
    assert res.exit_code == 0, res.output
    assert labels_of(tmp_path / "out.parquet").keys() == set(model.ids)
    assert not (tmp_path / "tnt.duckdb").exists()
    # a missing input file, or a bare name with no database to look it up in, is one line and creates nothing
    res = tnt("predict", "--model", model.artifact, "--input", "missing.jsonl", "--output", "o2.parquet")
    assert res.exit_code == 2 and error_lines(res.output) == ["error: missing.jsonl: no such file"], res.output
    res = tnt("predict", "--model", model.artifact, "--input", "mytable", "--output", "o2.parquet")
    assert res.exit_code == 2, res.output
    (line,) = error_lines(res.output)
    assert "mytable: no such file" in line and "no database tnt.duckdb" in line and "table or corpus" in line
    res = tnt("predict", "--model", "some-model-id", "--input", model.corpus_file, "--output", "o2.parquet")
    assert res.exit_code == 2 and "database tnt.duckdb does not exist" in res.output, res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.parquet"]  # no tnt.duckdb (nor .wal) left behind


def test_predict_reads_a_table_of_the_database_named_bare(model, tmp_path):
    from_file, from_table = tmp_path / "file.parquet", tmp_path / "table.parquet"
    res = tnt("predict", "--model", model.model_id, "--db", model.db, "--input", model.corpus_file,
              "--output", from_file, "-q")
    assert res.exit_code == 0, res.output
    res = tnt("predict", "--model", model.model_id, "--db", model.db, "--input", "mytable", "--output", from_table,
              "--batch-size", "50", "-q")
    no_traceback(res.output)
    assert res.exit_code == 0, res.output
    assert labels_of(from_table) == labels_of(from_file) and len(labels_of(from_file)) == 120
    # an artifact reads it too, and --text-field names another column
    other = tmp_path / "bodies.parquet"
    res = tnt("predict", "--model", model.artifact, "--db", model.db, "--input", "bodies", "--text-field", "body",
              "--output", other, "-q")
    assert res.exit_code == 0, res.output
    assert labels_of(other) == labels_of(from_file)


def test_predict_input_that_is_neither_file_nor_table_says_both_in_one_line(model, tmp_path):
    out = tmp_path / "o.parquet"
    res = tnt("predict", "--model", model.model_id, "--db", model.db, "--input", "nosuch", "--output", out)
    no_traceback(res.output)
    assert res.exit_code == 2, res.output
    (line,) = error_lines(res.output)
    assert "nosuch: no such file" in line and f"no table or corpus of that name in {model.db}" in line, line
    res = tnt("predict", "--model", model.model_id, "--db", model.db, "--input", "bodies", "--output", out)
    assert res.exit_code == 2, res.output
    (line,) = error_lines(res.output)
    assert "table 'bodies'" in line and "no column 'text'" in line and "--text-field" in line, line
    assert not out.exists()


def test_ctrl_c_while_duckdb_is_at_work_ends_predict_with_one_line_and_the_rerun_finishes(model, tmp_path,
                                                                                          monkeypatch):
    """DuckDB answers a Ctrl-C that lands mid-query with its own RuntimeError, which used to be a traceback."""
    out = tmp_path / "o.parquet"
    args = ("predict", "--model", model.model_id, "--db", model.db, "--input", "mytable", "--output", out, "-q")
    with monkeypatch.context() as patched:
        patched.setattr("workflow.classify.predict.predict_stream", lambda *a, **k: signal_mid_query())
        res = tnt(*args)
    no_traceback(res.output)
    assert res.exit_code == 130, res.output
    (line,) = error_lines(res.output)
    assert "interrupted" in line and "same command run again continues" in line, line
    res = tnt(*args)
    assert res.exit_code == 0, res.output
    assert len(labels_of(out)) == 120
