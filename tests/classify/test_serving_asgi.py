"""tnt serve as an ASGI app: micro-batching of concurrent requests, the OpenAPI schema, the classify timeout, the
importable app factory, and the `tnt serve` command on a real port."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from workflow.classify.embed import get_embedder
from workflow.classify.loader import from_artifact
from workflow.classify.serve import MicroBatcher, create_app
from workflow.classify.serve_uvicorn import make_server


def post(url: str, texts: list[str]) -> tuple[int, object]:
    req = urllib.request.Request(url + "/classify", data=json.dumps({"texts": texts}).encode(),
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def get(url: str) -> tuple[int, object]:
    with urllib.request.urlopen(url, timeout=30) as resp:
        return resp.status, json.loads(resp.read())


@pytest.fixture
def running():
    """Start servers (make_server's arguments) in background threads; all stopped at the end."""
    started = []

    def start(*args, **kwargs):
        srv = make_server(*args, **kwargs)
        thread = threading.Thread(target=srv.serve_forever, daemon=True)
        thread.start()
        started.append(srv)
        host, port = srv.server_address[:2]
        deadline = time.monotonic() + 20
        while not srv.server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        return f"http://{host}:{port}", srv

    yield start
    for srv in started:
        srv.shutdown()
        srv.server_close()


def test_concurrent_requests_share_embedding_calls_and_get_their_own_results(running, artifact, trained):
    """16 one-text requests at once, with a batching window wide enough to catch them: far fewer embedding calls
    than requests, and each request still gets exactly its own text's result (the in-process one)."""
    url, srv = running(from_artifact(artifact), "127.0.0.1", 0, batch_wait_s=0.3)
    texts = trained.texts[:16]
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda t: post(url, [t]), texts))
    model = from_artifact(artifact)
    expected = model.records(get_embedder(model.embedding_model).embed(texts))
    assert [status for status, _ in answers] == [200] * 16
    for (_, got), exp in zip(answers, expected):
        assert len(got) == 1 and got[0]["label_id"] == exp["label_id"]
        assert got[0]["probability"] == pytest.approx(exp["probability"], abs=1e-5)
    batcher = srv.app.state.batcher
    assert batcher.calls < 8 and batcher.batched >= 9, (batcher.calls, batcher.batched)


def test_micro_batcher_keeps_order_skips_cancelled_requests_and_passes_errors():
    calls: list[list[str]] = []

    def fn(texts: list[str]) -> list[dict]:
        calls.append(list(texts))
        if "boom" in texts:
            raise RuntimeError("embedder failed")
        return [{"text": t} for t in texts]

    async def scenario() -> None:
        batcher = MicroBatcher(fn, max_texts=100, wait_s=0.05)
        gone = asyncio.ensure_future(batcher.submit(["gone"]))
        first = asyncio.ensure_future(batcher.submit(["a", "b"]))
        second = asyncio.ensure_future(batcher.submit(["c"]))
        await asyncio.sleep(0)
        gone.cancel()  # a request that timed out before its batch ran
        assert await first == [{"text": "a"}, {"text": "b"}]
        assert await second == [{"text": "c"}]
        assert calls == [["a", "b", "c"]]  # one call, without the cancelled request's text
        bad = asyncio.ensure_future(batcher.submit(["boom"]))
        fine = asyncio.ensure_future(batcher.submit(["d"]))
        with pytest.raises(RuntimeError, match="embedder failed"):
            await bad
        with pytest.raises(RuntimeError):  # same batch, same failure; the batcher keeps serving afterwards
            await fine
        assert await batcher.submit(["e"]) == [{"text": "e"}]
        batcher.close()

    asyncio.run(scenario())


def test_batches_hold_whole_requests_up_to_the_cap():
    calls: list[int] = []

    def fn(texts: list[str]) -> list[dict]:
        calls.append(len(texts))
        return [{} for _ in texts]

    async def scenario() -> None:
        batcher = MicroBatcher(fn, max_texts=5, wait_s=0.05)
        results = await asyncio.gather(*(batcher.submit(["x"] * n) for n in (3, 3, 3, 7)))
        assert [len(r) for r in results] == [3, 3, 3, 7]
        batcher.close()

    asyncio.run(scenario())
    assert sum(calls) == 16 and all(c <= 7 for c in calls) and len(calls) >= 3, calls


class SlowModel:
    embedding_model = "minilm-int8"
    version = "slow"
    labels = ["a"]
    taxonomy = [{"label_id": "a", "name": "A", "description": ""}]

    def records(self, X: np.ndarray) -> list[dict]:
        time.sleep(1.5)
        return [{"label_id": "a", "label_name": "A", "probability": 1.0, "uncertain": False} for _ in X]


def test_a_request_not_classified_in_time_gets_503_and_the_server_keeps_answering(running):
    url, _ = running(SlowModel(), "127.0.0.1", 0, classify_timeout=0.3)
    started = time.monotonic()
    status, body = post(url, ["hello"])
    assert status == 503 and "within 0.3 s" in body["error"] and time.monotonic() - started < 1.4
    assert get(url + "/health")[1]["status"] == "ok"


def test_openapi_schema_describes_the_routes(running, artifact):
    url, _ = running(from_artifact(artifact), "127.0.0.1", 0)
    status, schema = get(url + "/openapi.json")
    assert status == 200 and {"/classify", "/health", "/labels"} <= set(schema["paths"])
    body = schema["paths"]["/classify"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["properties"]["texts"]["type"] == "array"
    assert "Result" in json.dumps(schema["paths"]["/classify"]["post"]["responses"]["200"])
    assert {"label_id", "probability", "uncertain", "truncated"} <= set(schema["components"]["schemas"]["Result"]
                                                                          ["properties"])


def test_app_factory_loads_the_model_named_in_the_environment(monkeypatch, artifact, trained):
    from starlette.testclient import TestClient

    monkeypatch.setenv("TNT_MODEL", str(artifact))
    with TestClient(create_app()) as client:
        health = client.get("/health").json()
        assert health["model"] == trained.model_id
        got = client.post("/classify", json={"texts": trained.texts[:3]})
        assert got.status_code == 200 and len(got.json()) == 3
        big = client.post("/classify", content=b"x" * 100, headers={"Content-Length": str(9 * 1024 * 1024)})
        assert big.status_code == 413
    monkeypatch.delenv("TNT_MODEL")
    with pytest.raises(ValueError, match="TNT_MODEL"):
        create_app()


def test_tnt_serve_command_listens_on_loopback_and_stops_on_ctrl_c(artifact, trained):
    env = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True")
    proc = subprocess.Popen([sys.executable, "-m", "workflow.cli", "serve", "--model", str(artifact), "--port", "0"],
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = ""
        deadline = time.monotonic() + 120
        while "serving" not in line and time.monotonic() < deadline and proc.poll() is None:
            line = proc.stderr.readline()
        match = re.search(r"http://([\d.]+):(\d+)", line)
        assert match, line
        assert match.group(1) == "127.0.0.1"
        url = match.group(0)
        assert get(url + "/health")[1]["model"] == trained.model_id
        assert post(url, trained.texts[:2])[0] == 200
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
