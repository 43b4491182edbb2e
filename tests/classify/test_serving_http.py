"""tnt serve's endpoint over real loopback HTTP."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

import pytest

from workflow.classify.embed import get_embedder
from workflow.classify.loader import from_artifact
from workflow.classify.serve_uvicorn import make_server


@pytest.fixture(scope="module")
def server(artifact):
    srv = make_server(from_artifact(artifact), "127.0.0.1", 0, max_texts=50)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    host, port = srv.server_address[:2]
    yield f"http://{host}:{port}", srv
    srv.shutdown()
    srv.server_close()


def call(url: str, body: bytes | None = None) -> tuple[int, object]:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_binds_loopback_and_reports_health(server, trained):
    url, srv = server
    assert srv.server_address[0] == "127.0.0.1"
    status, body = call(url + "/health")
    assert status == 200 and body["status"] == "ok" and body["model"] == trained.model_id
    status, labels = call(url + "/labels")
    assert status == 200 and {"label_id", "name", "description"} <= set(labels[0])


def test_classify_matches_the_model(server, trained, artifact):
    url, _ = server
    texts = trained.texts[:12]
    status, got = call(url + "/classify", json.dumps({"texts": texts}).encode())
    assert status == 200 and len(got) == len(texts)
    model = from_artifact(artifact)
    expected = model.records(get_embedder(model.embedding_model).embed(texts))
    for g, e in zip(got, expected):
        assert (g["label_id"], g["label_name"], g["uncertain"]) == (e["label_id"], e["label_name"], e["uncertain"])
        assert g["probability"] == pytest.approx(e["probability"], abs=1e-9)
    assert call(url + "/classify", b'{"texts": []}') == (200, [])


@pytest.mark.parametrize("body,message", [
    (b"not json", "must be JSON"),
    (b'{"texts": "one string"}', "list of strings"),
    (b'{"texts": [1, 2]}', "list of strings"),
    (json.dumps({"texts": ["x"] * 51}).encode(), "at most 50 texts"),
])
def test_bad_requests_get_400_with_a_reason(server, body, message):
    url, _ = server
    status, got = call(url + "/classify", body)
    assert status == 400 and message in got["error"]


def test_unknown_route_is_404(server):
    url, _ = server
    assert call(url + "/nope")[0] == 404
    assert call(url + "/nope", b"{}")[0] == 404
