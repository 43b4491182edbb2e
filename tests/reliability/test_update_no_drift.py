"""`tnt update` on documents that did not drift must leave the taxonomy alone (issue 20, item 9): it used to add
labels on any update, some near-duplicates of existing ones, and old-label accuracy fell. Through the CLI on the
scripted model: no drift -> "no drift: no labels added" and the same taxonomy version; a corpus with a new topic
still drifts and gets a label; --new-labels is checked before anything runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import SCRIPTED_JOB, sample_rows
from tests.reliability.conftest import no_traceback, tnt, write_jsonl
from workflow.config import JobConfig
from workflow.ingest import read_corpus
from workflow.runner import execute
from workflow.store import Store

pytestmark = pytest.mark.integration


def _is_top_up(row: dict) -> bool:
    return "top_up" in row["label"] or "topping_up" in row["label"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, Path, Path]:
    """A finished scripted run on the sample's first 120 documents; a corpus of 120 others with the same intents
    (no drift) and one two thirds about topping up, a topic the run has no label for."""
    root = tmp_path_factory.mktemp("update_no_drift")
    rows = sample_rows(1000)
    intents = {r["label"] for r in rows[:120]}
    same = write_jsonl(root / "same.jsonl", [r for r in rows[240:] if r["label"] in intents][:120])
    rest = rows[120:]
    topic = write_jsonl(root / "topic.jsonl",
                        [r for r in rest if _is_top_up(r)][:80] + [r for r in rest if not _is_top_up(r)][:40])
    db = str(root / "tnt.duckdb")
    with Store(db) as store:
        store.insert_documents("c", read_corpus(str(write_jsonl(root / "old.jsonl", rows[:120]))).records)
        config = JobConfig(**SCRIPTED_JOB)
        run_id = store.create_run("c", config.use_case, config.model_dump())
        assert execute(store, run_id, show_progress=False).status == "done"
    return db, run_id, same, topic


def _flat(output: str) -> str:
    return " ".join(output.split())  # rich wraps long lines


def test_no_drift_no_labels_then_a_new_topic_still_gets_one(finished):
    db, run_id, same, topic = finished
    with Store(db) as store:
        v0, before = store.taxonomy(run_id)

    res = tnt("update", run_id, same, "--db", db, "-q")
    assert res.exit_code == 0, res.output
    no_traceback(res.output)
    out = _flat(res.output)
    assert "drift: no;" in out and "no drift: no labels added" in out and "Labels added" not in out
    assert "old held-out set" in out  # the retrained classifier is still compared with the old one
    with Store(db) as store:
        assert store.taxonomy(run_id) == (v0, before)
        report = store.query("SELECT report FROM updates ORDER BY update_id DESC LIMIT 1")[0]["report"]
        assert '"proposal": "skipped: no drift"' in report

    res = tnt("update", run_id, topic, "--db", db, "-q")
    assert res.exit_code == 0, res.output
    out = _flat(res.output)
    assert "drift: yes, from batch 0" in out and "Labels added" in out
    assert re.search(r"drift: \d+ labels added", out), out
    with Store(db) as store:
        v1, after = store.taxonomy(run_id)
        assert v1 > v0 and after[: len(before)] == before and len(after) > len(before)


def test_new_labels_option_is_checked_before_anything_runs(finished):
    db, run_id, same, _ = finished
    res = tnt("update", run_id, same, "--db", db, "--new-labels", "sometimes")
    assert res.exit_code == 2, res.output
    assert "--new-labels must be auto, always or never" in _flat(res.output)
