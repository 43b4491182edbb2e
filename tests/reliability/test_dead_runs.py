"""A run whose process is gone is never shown as running: SIGKILL leaves 'running' in the database, and the next
process that opens it marks the run interrupted; SIGTERM is handled like Ctrl-C (one line, exit 143), also when
it lands while DuckDB runs a query, which answers it with its own error."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import typer

from tests.conftest import signal_mid_query
from tests.reliability.conftest import SCRIPTED_CLI, USE_CASE, no_traceback, tnt_subprocess, write_jsonl
from workflow.api import Project
from workflow.cli.jobs import _execute
from workflow.owner import is_dead, this_process
from workflow.store import Store
from workflow.store.connection import is_interrupt

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ARGS = ["--use-case", USE_CASE, "--model", "scripted/slow", "--batch-size", 15, "--taxonomy-sample", 30,
        "--label-sample", 30, "--max-labels", 5, "--concurrency", 2]


def _start_and_wait_for_calls(tmp_path: Path, rows: list[dict]) -> tuple[subprocess.Popen, Path]:
    corpus = write_jsonl(tmp_path / "c.jsonl", rows)
    db = tmp_path / "t.duckdb"
    log = tmp_path / "calls.log"
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPTED_CLI), "run", str(corpus), "--db", str(db), *map(str, ARGS)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "TNT_SCRIPTED_SLEEP_S": "0.2", "TNT_SCRIPTED_LOG": str(log)},
    )
    deadline = time.monotonic() + 120
    while not (log.exists() and log.read_text().count("\n") >= 3):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the run made no model call in 120 s"
        time.sleep(0.05)
    return proc, db


def test_sigkill_leaves_an_interrupted_run_that_resumes(tmp_path, rows):
    proc, db = _start_and_wait_for_calls(tmp_path, rows)
    proc.kill()
    proc.wait()
    with Store(db, read_only=True) as store:  # what the dead process left behind
        assert store.run(store.latest_run_id())["status"] == "running"
    status = tnt_subprocess("status", "--db", db)
    assert status.returncode == 0, status.stderr
    row = next(line for line in status.stdout.splitlines() if line.strip().startswith("run-"))
    assert row.split()[1] == "interrupted", status.stdout
    with Store(db, read_only=True) as store:
        run = store.run(store.latest_run_id())
        assert run["status"] == "interrupted" and "tnt resume" in run["error"]
    done = tnt_subprocess("resume", "--db", db, "-q", env={"TNT_SCRIPTED_SLEEP_S": "0"})
    assert done.returncode == 0, done.stderr
    with Store(db, read_only=True) as store:
        assert store.run(store.latest_run_id())["status"] == "done"


def test_sigterm_is_handled_like_ctrl_c(tmp_path, rows):
    proc, db = _start_and_wait_for_calls(tmp_path, rows)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    no_traceback(stderr)
    assert [line for line in stderr.splitlines() if "terminated (SIGTERM)" in line and "tnt resume" in line]
    with Store(db, read_only=True) as store:
        assert store.run(store.latest_run_id())["status"] == "interrupted"
    done = tnt_subprocess("resume", "--db", db, "-q", env={"TNT_SCRIPTED_SLEEP_S": "0"})
    assert done.returncode == 0, done.stderr
    with Store(db, read_only=True) as store:
        assert store.run(store.latest_run_id())["status"] == "done"


def test_duckdb_turns_a_ctrl_c_mid_query_into_its_own_error(tmp_path):
    with Store(tmp_path / "t.duckdb") as store:
        with pytest.raises(BaseException) as caught:
            signal_mid_query(store.con, signal.SIGINT)
        assert not isinstance(caught.value, KeyboardInterrupt)  # why is_interrupt exists
        assert is_interrupt(caught.value)
        assert store.query("SELECT 1 AS one") == [{"one": 1}]  # the connection survives it


@pytest.mark.parametrize(("sig", "code", "said"), [(signal.SIGTERM, 143, "terminated (SIGTERM)"),
                                                   (signal.SIGINT, 130, "interrupted")])
def test_a_signal_mid_query_leaves_the_run_interrupted_with_one_line_and_it_resumes(tmp_path, rows, monkeypatch,
                                                                                   capsys, new_run, sig, code, said):
    """Where stop 27's CI run met it: the signal lands while a graph node stores a summary."""
    from workflow.store.runs import Runs

    real, seen = Runs.save_summary, []

    def save_summary(self, *args):
        if not seen:
            try:
                signal_mid_query(self.con, sig)
            except BaseException as exc:
                seen.append(exc)
                raise
        return real(self, *args)

    with Project(tmp_path / "t.duckdb") as project:
        run = project.get_run(new_run(project.store, write_jsonl(tmp_path / "c.jsonl", rows)))
        with monkeypatch.context() as patched:
            patched.setattr(Runs, "save_summary", save_summary)
            with pytest.raises(typer.Exit) as exit:
                _execute(run, quiet=True)
        assert [type(e) for e in seen] == [RuntimeError]  # DuckDB's error, not the signal's
        assert exit.value.exit_code == code
        assert run.status == "interrupted"
        stderr = capsys.readouterr().err
        no_traceback(stderr)
        assert f"{said}; continue with `tnt resume {run.run_id}`" in " ".join(stderr.split())
        assert run.resume(progress=False).status == "done"


def test_owner_of_a_live_or_foreign_process_is_not_dead():
    assert not is_dead(this_process())
    assert not is_dead(None) and not is_dead("garbage")
    host, boot, _, start = this_process().rsplit(":", 3)
    assert not is_dead(f"another-host:{boot}:1:{start}")  # cannot tell on another host: left alone
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert is_dead(f"{host}:{boot}:{child.pid}:1")  # gone (or a different process with its pid)
