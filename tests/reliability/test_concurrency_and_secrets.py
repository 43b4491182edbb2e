"""Two tnt processes on one database, and API keys that must never leave the environment."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from tests.reliability.conftest import (
    SCRIPTED_CLI,
    USE_CASE,
    no_traceback,
    respond,
    tnt,
    tnt_subprocess,
    write_jsonl,
)
from workflow.store import Store
from workflow.testing.testserver import OpenAITestServer

pytestmark = pytest.mark.integration


def test_second_process_on_the_same_database_gets_exit_4_and_nothing_is_corrupted(tmp_path, rows):
    corpus = write_jsonl(tmp_path / "c.jsonl", rows[:40])
    db, log = tmp_path / "tnt.duckdb", tmp_path / "calls.log"
    args = ["--use-case", USE_CASE, "--model", "scripted/slow", "--batch-size", 10, "--taxonomy-sample", 10,
            "--label-sample", 10, "--max-labels", 4, "--concurrency", 1, "-q"]
    first = subprocess.Popen(
        [sys.executable, str(SCRIPTED_CLI), "run", str(corpus), "--db", str(db), *map(str, args)],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "TNT_SCRIPTED_SLEEP_S": "0.6", "TNT_SCRIPTED_LOG": str(log)},
    )
    try:
        deadline = time.monotonic() + 120
        while not (log.exists() and log.read_text()) and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert first.poll() is None, "the first run ended before the test could contend with it"
        # while it runs (about 15 calls of 0.6 s), every other command on the same file is refused cleanly
        for cmd in (["run", corpus, "--db", db, *args], ["resume", "--db", db, "-q"], ["status", "--db", db]):
            res = tnt(*cmd)
            no_traceback(res.output)
            assert res.exit_code == 4, (cmd[0], res.output)
            assert f"database {db} is in use" in " ".join(res.output.split()), res.output
        assert first.poll() is None, "contention checks must overlap the first run"
        assert first.wait(timeout=240) == 0, first.stderr.read()
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    with Store(db, read_only=True) as store:
        (run,) = store.runs()
        assert run["status"] == "done"
        assert store.corpus_size("c") == 40
        assert len(store.assignments(run["run_id"])) == 10
        ok = store.query("SELECT count(*) AS n, count(DISTINCT request_hash) AS d FROM llm_calls WHERE status = 'ok'")
        assert ok[0]["n"] == ok[0]["d"]  # nothing asked twice
        labels = store.query("SELECT count(*) AS n FROM llm_calls WHERE status = 'ok' AND prompt_name = 'label'")
        assert labels[0]["n"] == 10


SECRETS = {
    "OPENAI_API_KEY": "sk-test-SECRET123-openai-do-not-store",
    "ANTHROPIC_API_KEY": "sk-ant-test-SECRET456-do-not-store",
    "AZURE_API_KEY": "azure-test-SECRET789-do-not-store",
}


def test_api_keys_never_reach_the_database_checkpoints_logs_or_artifacts(tmp_path, rows):
    corpus = write_jsonl(tmp_path / "c.jsonl", rows[:40])
    db = tmp_path / "tnt.duckdb"
    artifact = tmp_path / "artifact"
    with OpenAITestServer(responder=respond, faults=["500", "429", "invalid_schema", "timeout"],
                          retry_after_s=0.1, timeout_sleep_s=1.0) as srv:
        run = tnt_subprocess(
            "run", corpus, "--db", db, "--use-case", USE_CASE, "--model", "openai/test-model", "--api-base",
            srv.base_url, "--batch-size", 10, "--taxonomy-sample", 10, "--label-sample", 20, "--max-labels", 4,
            "--concurrency", 2, "--timeout", 0.5, "-v", cwd=tmp_path, env=SECRETS,
        )
        assert run.returncode == 0, run.stderr
        assert srv.status_counts[500] == 1 and srv.status_counts[429] == 1
        # the key did go to the provider, as a header (the server keeps bodies only): it was used, not stored
        assert not any(s in repr(srv.requests) for s in SECRETS.values())
    status = tnt_subprocess("status", "--db", db, "--json", cwd=tmp_path, env=SECRETS)
    export = tnt_subprocess("export", "--db", db, "--out", artifact, cwd=tmp_path, env=SECRETS)
    assert export.returncode == 0, export.stderr
    assert any(artifact.iterdir())

    haystacks: dict[str, bytes] = {
        "stdout/stderr": (run.stdout + run.stderr + status.stdout + status.stderr
                          + export.stdout + export.stderr).encode(),
    }
    for path in tmp_path.rglob("*"):  # the database, its WAL, the checkpoints, the artifact, anything else written
        if path.is_file() and path.name != "c.jsonl":
            haystacks[str(path.relative_to(tmp_path))] = path.read_bytes()
    assert any(name.startswith("tnt.duckdb.checkpoints") for name in haystacks)
    for where, data in haystacks.items():
        for name, secret in SECRETS.items():
            for form in (secret, secret[-12:], secret.encode().hex()):
                assert form.encode() not in data, f"{name} found in {where}"
    # the config stored with the run names the endpoint but holds no key
    with Store(db, read_only=True) as store:
        config = store.runs()[0]["config"]
        assert "api_key" not in config and "SECRET" not in config
