"""The streaming ingest (workflow.ingest_stage) stores exactly what the in-memory reader returns, refuses the same
corpora with the same line, and takes DataFrames and lists of texts too."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from workflow.ingest import InputError, read_corpus
from workflow.ingest_stage import stage_corpus
from workflow.runner import ingest
from workflow.store import Store, StoreError

COLS = "corpus, doc_id, text, text_hash, n_chars, meta::VARCHAR"


def _rows(n: int) -> list[dict]:
    return [{"id": f"q{i}", "text": f"héllo 😀 wörld, number {i}", "label": i % 3} for i in range(n)]


def _sources(tmp_path: Path, rows: list[dict]) -> list[str]:
    import duckdb

    jsonl = tmp_path / "c.jsonl"
    jsonl.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    con = duckdb.connect(str(tmp_path / "src.duckdb"))
    con.execute(f"CREATE TABLE docs AS SELECT * FROM read_json_auto('{jsonl}')")
    con.execute(f"COPY docs TO '{tmp_path / 'c.parquet'}' (FORMAT parquet)")
    con.execute(f"COPY docs TO '{tmp_path / 'c.csv'}' (HEADER)")
    con.close()
    return [str(jsonl), str(tmp_path / "c.csv"), str(tmp_path / "c.parquet"), f"{tmp_path / 'src.duckdb'}:docs"]


def test_streamed_documents_equal_the_in_memory_path_for_every_format(tmp_path):
    rows = _rows(2500) + [{"text": "no id"}, {"id": "e", "text": " "}]  # "" ids in CSV: repeats are errors
    for k, src in enumerate(_sources(tmp_path, rows)):
        old, new = Store(tmp_path / f"old{k}.duckdb"), Store(tmp_path / f"new{k}.duckdb")
        old.insert_documents("c", read_corpus(src).records)
        name, report, added = ingest(new, src, corpus="c")
        assert (name, added, report.n_docs, report.skipped_empty) == ("c", 2501, 2501, 1), src
        sql = f"SELECT {COLS} FROM documents ORDER BY rowid"
        assert new.con.execute(sql).fetchall() == old.con.execute(sql).fetchall(), src  # hash, length, meta, order
        assert ingest(new, src, corpus="c")[2] == 0  # re-ingesting is a no-op
        old.close(), new.close()


def test_small_batches_cross_boundaries_without_changing_anything(tmp_path):
    src = _sources(tmp_path, _rows(95))[0]
    with stage_corpus(src, batch_rows=7) as staged:
        got = staged.con.execute("SELECT doc_id, text FROM staged ORDER BY n").fetchall()
        assert list(staged.texts()) == [t for _, t in got]
    assert got == [(d, t) for d, t, _ in read_corpus(src).records]


def _bad_csv_stray(p: Path) -> None:
    rows = [f"q{i},question number {i} about my card" for i in range(1, 41)]
    rows[16], rows[17] = 'q17,"my card is lost and', 'q18,my screen is 12"'
    p.write_text("id,text\n" + "\n".join(rows) + "\n")


BAD = {
    "duplicate id across batches": ("c.jsonl", lambda p: p.write_text(
        "".join(json.dumps({"id": i % 30, "text": f"t{i}"}) + "\n" for i in range(40)))),
    "duplicate before a later broken line": ("c.jsonl", lambda p: p.write_text(
        '{"id": 1, "text": "a"}\n{"id": 1, "text": "b"}\n{"id": 2, "text": \n')),
    "broken line before a duplicate": ("c.jsonl", lambda p: p.write_text(
        '{"id": 1, "text": "a"}\n{"id": 2, "text": \n{"id": 1, "text": "b"}\n')),
    "text then the same text under an explicit id": ("c.jsonl", lambda p: p.write_text(
        json.dumps({"text": "a"}) + "\n" + json.dumps({"id": "dca978112ca1bbdc", "text": "a"}) + "\n")),
    "invalid utf-8": ("c.jsonl", lambda p: p.write_bytes(b'{"id": 1, "text": "ok"}\n{"id": 2, "text": "caf\xe9"}\n')),
    "csv invalid utf-8 after the first MiB": ("c.csv", lambda p: p.write_bytes(
        b"id,text\n" + b"".join(b"q%d,question %d\n" % (i, i) for i in range(80_000)) + b"q9x,caf\xe9\n")),
    "csv stray quote": ("c.csv", _bad_csv_stray),
    "csv ragged row": ("c.csv", lambda p: p.write_text("id,text,label\nq1,card lost,x\nq2\n")),
    "missing text field later": ("c.jsonl", lambda p: p.write_text('{"id": 1, "text": "a"}\n{"id": 2, "body": "b"}\n')),
    "only empty texts": ("c.jsonl", lambda p: p.write_text('{"id": 1, "text": "  "}\n{"id": 2, "text": null}\n')),
    "text of numbers": ("c.jsonl", lambda p: p.write_text('{"id": 1, "text": 5}\n')),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_corpus_gets_the_same_line_streamed_as_read_whole(case, tmp_path):
    name, make = BAD[case]
    path = tmp_path / name
    make(path)
    with pytest.raises(InputError) as whole:
        read_corpus(str(path))
    with pytest.raises(InputError) as streamed:
        stage_corpus(str(path), batch_rows=8, tmp_dir=tmp_path).close()
    assert str(streamed.value) == str(whole.value)
    assert [p.name for p in tmp_path.iterdir()] == [name]  # the scratch database is gone


def test_csv_utf8_error_line_is_counted_across_read_chunks(tmp_path):
    path = tmp_path / "c.csv"
    make = BAD["csv invalid utf-8 after the first MiB"][1]
    make(path)
    with pytest.raises(InputError, match=r"c\.csv:80002: not valid UTF-8"):
        stage_corpus(str(path)).close()


def test_dataframes_and_lists_of_texts_or_dicts_are_ingested(tmp_path):
    import pandas as pd

    store = Store(tmp_path / "s.duckdb")
    df = pd.DataFrame({"id": ["a", "b", "c"], "text": ["card lost", None, "refund please"], "src": ["x", "y", "z"]})
    name, report, added = ingest(store, df, corpus="df")
    assert (name, added, report.skipped_empty) == ("df", 2, 1)
    assert store.con.execute("SELECT doc_id, text, meta::VARCHAR FROM documents WHERE corpus = 'df' ORDER BY 1"
                             ).fetchall() == [("a", "card lost", '{"src": "x"}'),
                                              ("c", "refund please", '{"src": "z"}')]
    _, _, added = ingest(store, ["one", "two", "one"], corpus="texts")  # repeated text without id: one document
    assert added == 2 and store.corpus_size("texts") == 2
    _, _, added = ingest(store, [{"id": 7, "text": "seven"}], corpus="dicts")
    assert added == 1 and store.documents("dicts", ["7"])[0].text == "seven"
    with pytest.raises(InputError, match=r"<records>:2: expected a text or a dict, got int"):
        ingest(store, ["fine", 3], corpus="bad")
    with pytest.raises(InputError, match="<DataFrame>: no field 'text'"):
        ingest(store, pd.DataFrame({"body": ["x"]}), corpus="bad")
    assert store.corpus_size("bad") == 0


def test_a_changed_text_under_a_known_id_is_refused_and_nothing_is_added(tmp_path):
    store = Store(tmp_path / "s.duckdb")
    ingest(store, [{"id": "1", "text": "a"}], corpus="c")
    with pytest.raises(StoreError, match="already has a document with id '1' and a different text"):
        ingest(store, [{"id": "2", "text": "b"}, {"id": "1", "text": "changed"}], corpus="c")
    assert store.corpus_size("c") == 1
    assert store.con.execute("SELECT current_setting('memory_limit')").fetchone()[0] != "48.0 MiB"  # restored


def test_commits_in_chunks_and_a_failing_chunk_takes_back_what_this_ingest_added(tmp_path, monkeypatch):
    from contextlib import contextmanager

    from workflow.ingest_stage import insert_staged

    rows = [{"id": f"q{i}", "text": f"text {i}"} for i in range(50)]
    store = Store(tmp_path / "s.duckdb")
    ingest(store, rows[:5], corpus="c")  # already stored: kept whatever happens
    real, calls = store.transaction, []

    @contextmanager
    def third_chunk_fails():
        calls.append(1)
        with real() as con:
            if len(calls) == 3:
                raise OSError("disk full")
            yield con

    monkeypatch.setattr(store, "transaction", third_chunk_fails)
    with pytest.raises(OSError), stage_corpus(rows) as staged:
        insert_staged(store, "c", staged, chunk_rows=10)
    assert store.corpus_size("c") == 5
    monkeypatch.setattr(store, "transaction", real)
    with stage_corpus(rows) as staged:
        assert insert_staged(store, "c", staged, chunk_rows=10) == (45, 5)
    assert [r[0] for r in store.con.execute("SELECT doc_id FROM documents ORDER BY rowid").fetchall()] == \
        [f"q{i}" for i in range(50)]
