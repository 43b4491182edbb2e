"""`kill -9` at random points of a real `tnt run` process, then `tnt resume` until done: the result equals an
uninterrupted run's, the database and checkpoints stay readable, and no model answer is paid for twice (only a
call in flight at the moment of the kill may be asked again, since its answer never reached the database).

Odd seeds kill when the scripted model has answered a random number of calls (somewhere in the LLM steps), even
seeds at a random moment of the process (often in embedding, training or prediction). More seeds:
TNT_CRASH_SEEDS=1,2,3,4,5,6 (each costs two or three process starts).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.reliability.conftest import SCRIPTED_CLI, USE_CASE, tnt_subprocess, write_jsonl
from workflow.store import Store

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SEEDS = [int(s) for s in os.environ.get("TNT_CRASH_SEEDS", "1,2,3").split(",")]
CONCURRENCY = 4
ARGS = ["--use-case", USE_CASE, "--model", "scripted/slow", "--batch-size", 15, "--taxonomy-sample", 30,
        "--label-sample", 30, "--max-labels", 5, "--concurrency", CONCURRENCY, "-q"]
ENV = {"TNT_SCRIPTED_SLEEP_S": "0.03"}


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def _start(args: list, cwd: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(SCRIPTED_CLI), *map(str, args)], cwd=cwd, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, env={**os.environ, **ENV, "TNT_SCRIPTED_LOG": str(log)},
    )


def _kill_when(proc: subprocess.Popen, log: Path, *, calls: int | None = None, after_s: float | None = None) -> bool:
    """SIGKILL the process once the model has answered `calls` calls, or `after_s` seconds after its first model
    call (imports before it take long and vary with load); False if it ended by itself first."""
    first_call = None
    while proc.poll() is None:
        n = len(_lines(log))
        if first_call is None and n:
            first_call = time.monotonic()
        if (calls is not None and n >= calls) or (
            after_s is not None and first_call is not None and time.monotonic() - first_call >= after_s
        ):
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.005)
    return False


def _tables(db: Path) -> dict:
    with Store(db, read_only=True) as store:
        run_id = store.latest_run_id()
        version, labels = store.taxonomy(run_id)
        model = store.model(run_id=run_id)
        return {
            "status": store.run(run_id)["status"],
            "taxonomy_versions": [(v["version"], v["stage"], v["batch"]) for v in store.taxonomy_versions(run_id)],
            "labels": [(lb.label_id, lb.name, lb.description) for lb in labels],
            "summaries": store.summaries(run_id),
            "assignments": store.assignments(run_id),
            "predictions": store.predictions(model["model_id"]),
            "ok_calls": Counter(r["request_hash"] for r in store.query(
                "SELECT request_hash FROM llm_calls WHERE status = 'ok'")),
            "failed_calls": store.query("SELECT count(*) AS n FROM llm_calls WHERE status <> 'ok'")[0]["n"],
            "models": store.query("SELECT count(*) AS n FROM models")[0]["n"],
        }


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    from tests.conftest import sample_rows

    tmp = tmp_path_factory.mktemp("crash-ref")
    corpus = write_jsonl(tmp / "corpus.jsonl", sample_rows(120))
    res = tnt_subprocess("run", corpus, "--db", tmp / "ref.duckdb", *ARGS, cwd=tmp,
                         env={**ENV, "TNT_SCRIPTED_LOG": str(tmp / "calls.log")})
    assert res.returncode == 0, res.stderr
    tables = _tables(tmp / "ref.duckdb")
    # the uninterrupted run asks each request once: summaries of shown long documents, cluster names, merge, 30 labels
    n_calls = len(_lines(tmp / "calls.log"))
    assert n_calls == sum(tables["ok_calls"].values()) == len(tables["ok_calls"]) and tables["failed_calls"] == 0
    assert n_calls > 30 + 2
    return corpus, tables, n_calls


@pytest.mark.parametrize("seed", SEEDS)
def test_kill_9_then_resume_equals_an_uninterrupted_run(reference, tmp_path, seed):
    corpus, expected, n_calls = reference
    rng = random.Random(seed)
    db, log = tmp_path / "tnt.duckdb", tmp_path / "calls.log"

    proc = _start(["run", corpus, "--db", db, *ARGS], tmp_path, log)
    if seed % 2:  # somewhere in the LLM steps
        killed = _kill_when(proc, log, calls=rng.randint(1, n_calls - 1))
    else:  # at a random moment once model calls have begun: often in embedding, training or prediction
        killed = _kill_when(proc, log, after_s=rng.uniform(0.5, 8.0))
    kills = int(killed)
    for _ in range(4):  # then resume until it finishes
        res = tnt_subprocess("resume", "--db", db, "-q", cwd=tmp_path, env={**ENV, "TNT_SCRIPTED_LOG": str(log)})
        assert "Traceback" not in res.stderr, res.stderr
        if res.returncode == 0 and "already finished" in res.stderr:
            break
        assert res.returncode == 0, res.stderr
    else:
        pytest.fail("the run did not finish after 4 resumes")

    got = _tables(db)
    assert got["status"] == "done"
    for table in ("taxonomy_versions", "labels", "summaries", "assignments", "predictions"):
        assert got[table] == expected[table], table
    assert got["failed_calls"] == 0
    # one ok row per request: every answer was stored once and re-used from the table after each kill
    assert set(got["ok_calls"]) == set(expected["ok_calls"])
    assert max(got["ok_calls"].values()) == 1
    # the model answered each distinct request, and re-answered at most the calls in flight at each kill
    calls = _lines(log)
    assert len(set(calls)) == n_calls
    assert len(calls) - n_calls <= kills * CONCURRENCY, Counter(calls).most_common(3)
