"""Bad corpora get one clear line and a non-zero exit, never a traceback; nothing is half-ingested."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import signal_mid_query
from workflow.cli import app
from workflow.ingest import read_corpus

runner = CliRunner()


def tnt(*args: str):
    return runner.invoke(app, list(args))


def write(tmp_path: Path, name: str, data: bytes | str) -> str:
    p = tmp_path / name
    p.write_bytes(data if isinstance(data, bytes) else data.encode())
    return str(p)


CASES = {
    "empty file": ("empty.jsonl", b"", "the file is empty"),
    "missing text field": ("c.jsonl", '{"id": 1, "body": "x"}\n', "no field 'text'"),
    "invalid utf-8": ("c.jsonl", b'{"id": 1, "text": "ok"}\n{"id": 2, "text": "caf\xe9"}\n', ":2: not valid UTF-8"),
    "duplicate ids": ("c.jsonl", '{"id": 1, "text": "a"}\n{"id": 1, "text": "b"}\n', "duplicate id '1'"),
    "broken json": ("c.jsonl", '{"id": 1, "text": "a"}\n{"id": 2, "text": \n',
                    ":2: not valid JSON: Expecting value at column 19"),
    "only empty texts": ("c.jsonl", '{"id": 1, "text": "  "}\n{"id": 2, "text": null}\n', "no documents with text"),
    "unknown format": ("c.xlsx", b"PK\x03\x04", "unknown format"),
    "missing file": (None, None, "no such file"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_corpus_one_line_error(case, tmp_path, db):
    name, data, expected = CASES[case]
    path = write(tmp_path, name, data) if name else str(tmp_path / "nope.jsonl")
    res = tnt("run", path, "--use-case", "support intents", "--db", db, "--model", "scripted/keywords", "-q")
    assert res.exit_code == 2, res.output
    assert expected in res.output
    assert "Traceback" not in res.output
    assert len([ln for ln in res.output.strip().splitlines() if ln.strip()]) <= 2


def test_csv_and_parquet_and_duckdb_table_are_read_alike(tmp_path):
    import duckdb

    rows = [{"id": f"q{i}", "text": f"question number {i}", "label": "x"} for i in range(5)]
    jsonl = write(tmp_path, "c.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    con = duckdb.connect(str(tmp_path / "src.duckdb"))
    con.execute(f"CREATE TABLE docs AS SELECT * FROM read_json_auto('{jsonl}')")
    con.execute(f"COPY docs TO '{tmp_path / 'c.parquet'}' (FORMAT parquet)")
    con.execute(f"COPY docs TO '{tmp_path / 'c.csv'}' (HEADER)")
    con.close()
    expected = read_corpus(jsonl).records
    for src in (tmp_path / "c.csv", tmp_path / "c.parquet", f"{tmp_path / 'src.duckdb'}:docs"):
        got = read_corpus(str(src)).records
        assert [(d, t) for d, t, _ in got] == [(d, t) for d, t, _ in expected], src


def test_ids_default_to_a_stable_content_hash_and_exact_duplicates_collapse(tmp_path):
    path = write(tmp_path, "c.jsonl", '{"text": "a"}\n{"text": "b"}\n{"text": "a"}\n')
    first = read_corpus(path, id_field="id").records
    assert len(first) == 2
    assert [d for d, _, _ in first] == [d for d, _, _ in read_corpus(path).records]


def test_empty_texts_are_skipped_with_a_count(tmp_path):
    path = write(tmp_path, "c.jsonl", '{"id": 1, "text": ""}\n{"id": 2, "text": "real"}\n')
    report = read_corpus(path)
    assert report.skipped_empty == 1 and [d for d, _, _ in report.records] == ["2"]


def test_reingesting_changed_text_under_the_same_id_is_refused(tmp_path, db):
    a = write(tmp_path, "a.jsonl", '{"id": 1, "text": "one"}\n{"id": 2, "text": "two"}\n')
    b = write(tmp_path, "b.jsonl", '{"id": 1, "text": "changed"}\n')
    args = ["--use-case", "support intents", "--db", db, "--model", "scripted/keywords", "-q", "--corpus", "same"]
    tnt("run", a, *args)
    res = tnt("run", b, *args)
    assert res.exit_code == 2 and "already has a document with id '1'" in res.output


def test_ctrl_c_mid_ingest_adds_no_document_and_says_so_in_one_line(tmp_path, db, monkeypatch):
    """A real SIGINT while DuckDB copies the third of five chunks in: DuckDB raises its own error for it (a
    traceback before), the chunks already committed are taken back, and no run is created."""
    import functools
    from contextlib import contextmanager

    from workflow import runner
    from workflow.ingest_stage import insert_staged
    from workflow.store import Store
    from workflow.store.connection import Database

    path = write(tmp_path, "c.jsonl", "".join(json.dumps({"id": i, "text": f"text {i}"}) + "\n" for i in range(100)))
    real, opened = Database.transaction, []

    @contextmanager
    def third_is_interrupted(self):
        with real(self) as con:
            opened.append(1)
            if len(opened) == 3:
                signal_mid_query(con)
            yield con

    args = ("run", path, "--use-case", "support intents", "--db", db, "--model", "scripted/keywords", "-q")
    with monkeypatch.context() as patched:
        patched.setattr(runner, "insert_staged", functools.partial(insert_staged, chunk_rows=20))
        patched.setattr(Database, "transaction", third_is_interrupted)
        res = tnt(*args)
    assert res.exit_code == 130, res.output
    assert "Traceback" not in res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert lines == ["error: interrupted; no document was added; run the same command again"], lines
    with Store(db, read_only=True) as store:
        assert store.query("SELECT count(*) AS n FROM documents") == [{"n": 0}]
        assert store.runs() == []
    assert len(opened) >= 3  # two chunks were committed before the third was cut


def test_unknown_embedder_is_refused_naming_the_flag(tmp_path, db):
    path = write(tmp_path, "c.jsonl", '{"id": 1, "text": "card lost"}\n')
    res = tnt("run", path, "--use-case", "support intents", "--db", db, "--model", "scripted/keywords", "-q",
              "--embedder", "bogus")
    assert res.exit_code == 2, res.output
    assert "invalid option --embedder" in res.output and "litellm:" in res.output
    assert "Traceback" not in res.output


def test_embedder_flag_reaches_the_run_and_a_missing_model_is_one_clear_error(tmp_path, db):
    import duckdb

    path = write(tmp_path, "c.jsonl", "".join(json.dumps({"id": i, "text": f"my card number {i} was lost"}) + "\n"
                                          for i in range(12)))
    missing = tmp_path / "no-such-model"
    res = tnt("run", path, "--use-case", "support intents", "--db", db, "--model", "scripted/keywords", "-q",
              "--embedder", f"st:{missing}", "--taxonomy-sample", "10", "--label-sample", "10")
    assert res.exit_code != 0
    assert f"no sentence-transformers model directory at {missing}" in res.output
    assert "Traceback" not in res.output
    with duckdb.connect(db, read_only=True) as con:
        (config,) = con.execute("SELECT config FROM runs").fetchone()
    assert json.loads(config)["embedding_model"] == f"st:{missing}"


def test_python_dash_m_workflow_cli_knows_every_command(tmp_path: Path):
    """`python -m workflow.cli` used to list only run/resume/status: the other commands registered on the importable
    module, not on the copy Python runs as __main__."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "workflow.cli", "--help"], capture_output=True, text=True,
                         cwd=tmp_path, timeout=120, env={"PATH": "", "LITELLM_LOCAL_MODEL_COST_MAP": "True",
                                                         "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    assert out.returncode == 0, out.stderr
    for command in ("run", "train", "predict", "export", "eval", "review", "update"):
        assert f" {command} " in out.stdout, out.stdout
