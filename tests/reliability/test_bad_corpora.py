"""Corpora that are wrong or odd in ways tests/unit/test_cli_input.py does not cover: wrong column types, ragged
CSV, a file in another format than its name says; and odd but valid ones that must run to the end with a clear
note (blank texts mixed in, a 1 MB document, fewer documents than one minibatch, a corpus with a single topic)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from tests.reliability.conftest import USE_CASE, no_traceback, tnt, write_jsonl
from workflow.store import Store
from workflow.testing.scripted import _taxonomy_lines, keywords, register_script

pytestmark = pytest.mark.integration


def _parquet(path: Path, columns: dict) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table(columns), path)
    return path


def _bytes_of_parquet(path: Path) -> bytes:
    return _parquet(path.with_suffix(".tmp.parquet"), {"id": ["1"], "text": ["a"]}).read_bytes()


BAD = {
    "parquet text column of ints": (
        "c.parquet", lambda p: _parquet(p, {"id": [1, 2], "text": [11, 22]}), "field 'text' holds int values"),
    "parquet text column of lists": (
        "c.parquet", lambda p: _parquet(p, {"id": [1, 2], "text": [[1], [2, 3]]}), "field 'text' holds list values"),
    "parquet text column of bytes": (
        "c.parquet", lambda p: _parquet(p, {"id": [1], "text": [b"\x00\x01"]}), "field 'text' holds bytes values"),
    "csv without header": (
        "c.csv", lambda p: p.write_text("q1,my card is lost\nq2,where is my money\n"), "no field 'text'"),
    "csv row missing a field": (
        "c.csv", lambda p: p.write_text("id,text,label\nq1,card lost,x\nq2\n"), ":3: 1 fields where the header has 3"),
    "csv row with an extra field": (
        "c.csv", lambda p: p.write_text("id,text\nq1,my card, it is lost\n"), ":2: 3 fields where the header has 2"),
    "jsonl that is parquet": (
        "c.jsonl", lambda p: p.write_bytes(_bytes_of_parquet(p)), "c.jsonl:1: not valid"),
    "parquet that is jsonl": (
        "c.parquet", lambda p: p.write_text('{"text": "x"}\n'), "not a readable Parquet file"),
    "plain text file": ("c.txt", lambda p: p.write_text("my card is lost\n"), "unknown format '.txt'"),
    "a directory": ("corpus.d", lambda p: p.mkdir(), "corpus.d: is a directory"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_corpus_one_clear_line_exit_2_and_nothing_ingested(case, tmp_path):
    name, make, expected = BAD[case]
    path = tmp_path / name
    make(path)
    db = tmp_path / "tnt.duckdb"
    res = tnt("run", path, "--use-case", USE_CASE, "--db", db, "--model", "scripted/keywords", "-q")
    no_traceback(res.output)
    assert res.exit_code == 2, res.output
    flat = " ".join(res.output.split())
    assert expected in flat, flat
    assert flat.startswith("error:") and len(res.output.strip().splitlines()) <= 2, res.output
    assert not db.exists() or Store(db, read_only=True).corpus_size(path.stem) == 0


def _refused(tmp_path: Path, corpus: Path) -> str:
    """Run the CLI on a bad corpus; check exit 2, one `error:` line, no traceback and no database. The line."""
    db = tmp_path / "tnt.duckdb"
    res = tnt("run", corpus, "--use-case", USE_CASE, "--db", db, "--model", "scripted/keywords", "-q")
    no_traceback(res.output)
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), res.output
    assert not db.exists(), "nothing may be ingested"
    return lines[0]


def _csv_rows(n: int = 40) -> list[str]:
    return [f"q{i},question number {i} about my card" for i in range(1, n + 1)]


STRAY_QUOTE = {  # row q17 (file line 18) opens a quote it never closes properly
    # the stray quote pairs cleanly with the quote ending row q18: a lenient parser gives 39 documents, exit 0
    "closed by a quote ending a later field": {17: 'q17,"my card is lost and', 18: 'q18,my screen is 12"'},
    # nothing closes it: a lenient parser puts rows q18..q40 into q17's text
    "never closed": {17: 'q17,"my card is lost and'},
    # closed by the opening quote of a later quoted field
    "closed by a later quoted field": {17: 'q17,"my card is lost and', 19: 'q19,"blocked card" please'},
}


@pytest.mark.parametrize("case", sorted(STRAY_QUOTE))
def test_csv_stray_quote_is_refused_naming_the_file_and_line_not_rows_merged(case, tmp_path):
    rows = _csv_rows()
    for k, line in STRAY_QUOTE[case].items():
        rows[k - 1] = line
    corpus = tmp_path / "c.csv"
    corpus.write_text("id,text\n" + "\n".join(rows) + "\n")
    line = _refused(tmp_path, corpus)
    assert f"{corpus}:18: a quoted field opened on this line" in line, line
    assert "rows would run together" in line


def test_csv_quoted_line_breaks_commas_and_quotes_are_still_accepted(tmp_path):
    from workflow.ingest import read_corpus

    letter = 'Dear team,\nq2,the card I ordered\n2019, I opened my account\nsee "this", thanks'
    corpus = tmp_path / "c.csv"
    quoted = '"' + letter.replace('"', '""') + '"'
    corpus.write_text("id,text\n" + "\n".join([f"q1,{quoted}", *_csv_rows()[1:], 'q41,my 12" screen broke',
                                               'q42,"he said ""hi"", twice"', "q43,\"a\r\nb\""]) + "\n")
    got = {d: t for d, t, _ in read_corpus(str(corpus)).records}
    assert len(got) == 43
    assert got["q1"] == letter and got["q41"] == 'my 12" screen broke' and got["q42"] == 'he said "hi", twice'
    assert got["q43"] == "a\r\nb"


def test_jsonl_parse_error_gives_the_full_reason_with_line_and_column(tmp_path):
    lines = [json.dumps({"id": i, "text": f"question {i}"}) for i in range(1, 21)]
    lines[16] = '{"id": 17, "text": "a\tb"}'  # a raw tab inside a string
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("\n".join(lines) + "\n")
    line = _refused(tmp_path, corpus)
    assert f"{corpus}:17: not valid JSON: Invalid control character at column 22 ('\\t')" in line, line


def test_a_directory_given_as_the_corpus_is_named_as_one_with_what_is_accepted(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "part-1.jsonl").write_text('{"text": "my card is lost"}\n')
    line = _refused(tmp_path, corpus)
    assert f"{corpus}: is a directory" in line and ".jsonl, .csv, .parquet or file.duckdb:table" in line, line
    assert "unknown format" not in line


def test_a_later_jsonl_row_without_the_text_field_is_an_error_naming_line_and_fields(tmp_path):
    rows = [{"id": f"q{i}", "text": f"question {i}"} for i in range(1, 21)]
    rows[11] = {"id": "q12", "body": "question 12", "label": "x"}
    line = _refused(tmp_path, write_jsonl(tmp_path / "c.jsonl", rows))
    assert f"{tmp_path / 'c.jsonl'}:12: no field 'text' (fields: id, body, label)" in line, line
    assert "empty" not in line.split(";")[0]


class Recorder:
    def __init__(self) -> None:
        self.prompts: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def __call__(self, prompt_name: str, messages: list[dict], schema: dict) -> str:
        with self.lock:
            self.prompts.append((prompt_name, messages[1]["content"]))
        return keywords(prompt_name, messages, schema)


@pytest.fixture
def recorder():
    rec = Recorder()
    register_script("recorder", rec)
    return rec


def _run(tmp_path: Path, corpus: Path, *extra, model: str = "scripted/recorder") -> tuple[object, Path]:
    db = tmp_path / "tnt.duckdb"
    res = tnt("run", corpus, "--use-case", USE_CASE, "--db", db, "--model", model, "-q",
              "--max-labels", 5, *extra)
    no_traceback(res.output)
    return res, db


def test_blank_texts_mixed_in_are_skipped_with_a_count(tmp_path, rows, recorder):
    blanks = [{"id": "b1", "text": None}, {"id": "b2", "text": "   "}, {"id": "b3", "text": "\n\t "},
              {"id": "b4", "text": ""}, {"id": "b5", "text": "\r\n"}]  # a row with no text field at all: an error
    mixed = rows[:10] + blanks[:3] + rows[10:20] + blanks[3:]
    res, db = _run(tmp_path, write_jsonl(tmp_path / "c.jsonl", mixed))
    assert res.exit_code == 0, res.output
    assert "skipped 5 empty" in res.output
    with Store(db, read_only=True) as store:
        assert store.corpus_size("c") == 20
    assert not any(p.strip() == "" for _, p in recorder.prompts)


def test_a_1mb_document_is_kept_whole_cut_in_prompts_with_a_warning(tmp_path, rows, recorder):
    huge = "my card was charged twice " + "and the charge is still pending on the card " * 24_000
    assert len(huge) > 1_000_000
    corpus = write_jsonl(tmp_path / "c.jsonl", rows[:15] + [{"id": "huge", "text": huge}])
    res, db = _run(tmp_path, corpus)
    assert res.exit_code == 0, res.output
    assert "1 very long documents will be cut in prompts" in " ".join(res.output.split())
    with Store(db, read_only=True) as store:
        assert store.documents("c", ["huge"])[0].text == huge  # stored whole
        run_id = store.latest_run_id()
        assert store.summaries(run_id, ["huge"])  # and summarised
        assert "huge" in store.assignments(run_id)  # and labeled
    longest = max(len(p) for name, p in recorder.prompts if name in ("summarize", "label"))
    assert longest < 600 * 4 + 3000  # --max-doc-tokens (600) x 4 characters, plus the template
    assert any("[truncated]" in p for _, p in recorder.prompts)


def test_a_corpus_smaller_than_one_minibatch_runs_to_the_end(tmp_path, rows, recorder):
    res, db = _run(tmp_path, write_jsonl(tmp_path / "c.jsonl", rows[:6]))  # default minibatch: 200
    assert res.exit_code == 0, res.output
    with Store(db, read_only=True) as store:
        run_id = store.latest_run_id()
        assert store.run(run_id)["status"] == "done"
        assert [v["stage"] for v in store.taxonomy_versions(run_id)] == ["propose", "review"]
        assert len(store.summaries(run_id)) == len(store.assignments(run_id)) == 6


def test_a_single_label_corpus_keeps_its_llm_labels_but_fails_saying_why_there_is_no_classifier(tmp_path, recorder):
    docs = [{"id": f"d{i}", "text": f"my card number {i} is {w}"} for i, w in
            enumerate(["lost", "stolen", "blocked", "broken", "expired", "bent", "frozen", "missing"] * 2)]

    def first_label(prompt_name: str, messages: list[dict], schema: dict) -> str:
        """A model that gives every document the taxonomy's first label (L1), whatever order the prompt offers."""
        if prompt_name != "label":
            return keywords(prompt_name, messages, schema)
        label_id, name = min(_taxonomy_lines(messages[1]["content"]), key=lambda p: int(p[0][1:]))
        return json.dumps({"label": {"name": name, "id": label_id}, "rationale": "first", "confidence": "high"})

    register_script("first_label", first_label)
    res, db = _run(tmp_path, write_jsonl(tmp_path / "c.jsonl", docs), model="scripted/first_label")
    assert res.exit_code == 1, res.output  # a run without the classifier it was asked for is not done
    flat = " ".join(res.output.split())
    assert "failed: no classifier: need at least two distinct labels" in flat
    with Store(db, read_only=True) as store:
        run_id = store.latest_run_id()
        assert store.run(run_id)["status"] == "failed"
        labels = store.assignments(run_id)
        assert len(labels) == 16 and len(set(labels.values())) == 1
        assert store.query("SELECT count(*) AS n FROM models")[0]["n"] == 0


def test_a_teacher_that_answers_other_for_everything_fails_saying_so_and_what_to_use_instead(tmp_path, recorder):
    """The embedded 135M model as --teacher llm was seen answering Other for every document (valid answers, so no
    rejection to point at): the run fails for want of a classifier and says the teacher put everything in Other,
    with --teacher nearest and a stronger model as the ways out."""
    docs = [{"id": f"d{i}", "text": t} for i, t in enumerate(
        ["my card was lost", "my card got stolen", "card blocked today", "I lost my card again",
         "transfer did not arrive", "my transfer is pending", "where is my transfer", "transfer failed twice",
         "exchange rate for euros", "what exchange rate do you use", "exchange rate is wrong", "euro exchange rate"])]

    def all_other(prompt_name: str, messages: list[dict], schema: dict) -> str:
        if prompt_name != "label":
            return keywords(prompt_name, messages, schema)
        return json.dumps({"label": {"name": "Other", "id": "other"}, "rationale": "none fits", "confidence": "low"})

    register_script("all_other", all_other)
    res, db = _run(tmp_path, write_jsonl(tmp_path / "c.jsonl", docs), "--teacher", "llm",
                   model="scripted/all_other")
    assert res.exit_code == 1, res.output
    flat = " ".join(res.output.split())
    assert "no classifier: need at least two distinct labels" in flat
    assert "answered Other for all 12 documents it labeled" in flat and "--teacher nearest" in flat
    with Store(db, read_only=True) as store:
        assert set(store.assignments(store.latest_run_id()).values()) == {"other"}
