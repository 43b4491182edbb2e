"""`tnt run --labels FILE [--label-mode fixed] [--redact-pii]` from the command line."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from workflow.cli import app
from workflow.store import Store

runner = CliRunner()
SMALL = ["--model", "scripted/keywords", "--batch-size", "30", "--taxonomy-sample", "60", "--label-sample", "40",
         "-q", "--use-case", "What do customers ask the bank's support bot for?"]


def tnt(*args: str):
    return runner.invoke(app, list(args))


def test_run_with_a_labels_file_then_status_says_which_labels_were_given(corpus, db, tmp_path):
    labels = tmp_path / "labels.yaml"
    labels.write_text("- name: Card arrival\n  description: When a new card will arrive.\n"
                      "  examples: [\"Where is my new card?\"]\n- name: Exchange rate\n")
    res = tnt("run", str(corpus), "--db", db, "--labels", str(labels), "--max-labels", "5", "--redact-pii", *SMALL)
    assert res.exit_code == 0, res.output
    assert "labels given with --labels (seeded): L1, L2; discovered: L" in res.output
    assert "--redact-pii:" in res.output
    with Store(db) as store:
        run_id = store.latest_run_id()
        config = store.run(run_id)["config"]
        assert [s["name"] for s in config["seed_labels"]] == ["Card arrival", "Exchange rate"]
        assert config["redact_pii"] is True and config["label_mode"] == "seeded"
    labels.unlink()  # the run no longer needs the file
    res = tnt("status", run_id, "--db", db)
    assert res.exit_code == 0 and "labels given with --labels (seeded): L1, L2" in res.output
    res = tnt("status", "--db", db, "--json")
    assert json.loads(res.output)[0]["redacted_spans"] == 0  # the sample has no personal data


def test_fixed_mode_from_a_csv(corpus, db, tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_text("name,description,examples\nCard arrival,When a new card will arrive,Where is my card?|"
                      "Card not here yet\nTop up,Adding money to the account,How do I top up?\n")
    res = tnt("run", str(corpus), "--db", db, "--labels", str(labels), "--label-mode", "fixed", "--max-labels",
              "2", *SMALL)
    assert res.exit_code == 0, res.output
    with Store(db) as store:
        run_id = store.latest_run_id()
        assert [lb.name for lb in store.taxonomy(run_id)[1]] == ["Card arrival", "Top up"]
        assert set(store.assignments(run_id).values()) <= {"L1", "L2", "other"}


@pytest.mark.parametrize("content, name, says", [
    ("- name: Fees\n- name: fees\n", "l.yaml", "label 'fees' is given twice"),
    ("- name: Fees\n  colour: red\n", "l.yaml", "unknown field(s) colour"),
    ("- name: ''\n", "l.yaml", "label 1: name"),
    ("[\"A\", \"B\", \"C\"]", "l.json", "3 labels given, more than --max-labels 2"),
    (None, "missing.yaml", "does not exist"),
])
def test_bad_labels_files_get_one_line_and_exit_2(corpus, db, tmp_path, content, name, says):
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    res = tnt("run", str(corpus), "--db", db, "--labels", str(path), "--max-labels", "2", *SMALL)
    assert res.exit_code == 2, res.output
    assert says in res.output and "Traceback" not in res.output
    assert len([ln for ln in res.output.strip().splitlines() if ln.strip()]) == 1


def test_fixed_mode_without_labels_is_refused(corpus, db):
    res = tnt("run", str(corpus), "--db", db, "--label-mode", "fixed", *SMALL)
    assert res.exit_code == 2 and "--label-mode fixed needs the labels: give --labels FILE" in res.output
