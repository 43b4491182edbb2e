"""Corpora that are wrong or odd in ways tests/unit/test_cli_input.py does not cover: wrong column types, ragged
CSV, a file in another format than its name says; and odd but valid ones that must run to the end with a clear
note (blank texts mixed in, a 1 MB document, fewer documents than one minibatch, a corpus with a single topic)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from tests.reliability.conftest import USE_CASE, no_traceback, tnt, write_jsonl
from workflow.llm.scripted import _taxonomy_lines, keywords, register_script
from workflow.store import Store

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
    "a directory": ("corpus.d", lambda p: p.mkdir(), "corpus.d"),
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
              {"id": "b4", "text": ""}, {"id": "b5"}]
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


def test_a_single_label_corpus_finishes_with_llm_labels_and_says_why_there_is_no_classifier(tmp_path, recorder):
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
    assert res.exit_code == 0, res.output
    flat = " ".join(res.output.split())
    assert "skipping the classifier: need at least two distinct labels" in flat
    with Store(db, read_only=True) as store:
        run_id = store.latest_run_id()
        assert store.run(run_id)["status"] == "done"
        labels = store.assignments(run_id)
        assert len(labels) == 16 and len(set(labels.values())) == 1
        assert store.query("SELECT count(*) AS n FROM models")[0]["n"] == 0
