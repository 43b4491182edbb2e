"""static-minilm, the fast embedding tier: the one list of embedder names, the run-time embedding (a weighted token
mean through the real MiniLM tokenizer), the corpus fit, and (slow) a real distillation."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from workflow.classify import static_embed
from workflow.classify.embed import EmbeddingUnavailable, get_embedder, validate_embedder_name
from workflow.classify.minilm import minilm_tokenizer_path
from workflow.classify.static_embed import StaticEmbedder, fit_to_corpus
from workflow.config import JobConfig


def fake_dir(tmp_path, dim: int = 8, seed: int = 0):
    """A distilled-looking directory with a random matrix over MiniLM's real vocabulary."""
    path = tmp_path / "static"
    path.mkdir()
    tok = minilm_tokenizer_path()
    shutil.copyfile(tok, path / "tokenizer.json")
    vocab = json.loads(tok.read_text())["model"]["vocab"]
    matrix = np.random.default_rng(seed).normal(size=(len(vocab), dim)).astype(np.float16)
    np.save(path / "embeddings.npy", matrix)
    (path / "manifest.json").write_text(json.dumps({"format": static_embed.FORMAT}))
    return path, matrix.astype(np.float32)


@pytest.mark.parametrize("name", ["minilm-int8", "static-minilm", "static:/some/dir", "st:/m", "litellm:x"])
def test_every_embedder_name_is_accepted_by_the_config(name):
    assert validate_embedder_name(name) == name
    assert JobConfig(use_case="support tickets", embedding_model=name).embedding_model == name


@pytest.mark.parametrize("name", ["minilm", "static", "static:", "st:", "MiniLM-int8"])
def test_unknown_embedder_names_are_refused_with_the_choices(name):
    with pytest.raises(ValueError, match=r"unknown embedder .*static-minilm.*st:"):
        validate_embedder_name(name)
    with pytest.raises(ValueError, match="static-minilm"):
        JobConfig(use_case="support tickets", embedding_model=name)


def test_a_text_embeds_as_the_normalised_sum_of_its_token_vectors(tmp_path):
    path, matrix = fake_dir(tmp_path)
    emb = StaticEmbedder(path, name=f"static:{path}")
    texts = ["my card was declined", "", "exchange rate?", "my card was declined"]
    X = emb.embed(texts, batch_size=3)  # batches must not change the result
    assert X.shape == (4, 8) and X.dtype == np.float32
    ids = emb.tokenizer.encode("my card was declined", add_special_tokens=False).ids
    expected = matrix[ids].sum(axis=0)
    assert np.allclose(X[0], expected / np.linalg.norm(expected), atol=1e-5)
    assert np.array_equal(X[0], X[3]) and not X[1].any()  # same text, same vector; no token, zeros
    assert np.allclose(np.linalg.norm(X[[0, 2, 3]], axis=1), 1, atol=1e-5)


def test_reading_stops_at_max_tokens(tmp_path):
    path, _ = fake_dir(tmp_path)
    emb = StaticEmbedder(path)
    head = " ".join(f"word{i}" for i in range(2000))
    X = emb.embed([head, head + " and then something else entirely"])
    assert np.allclose(X[0], X[1], atol=1e-6)


def test_a_static_dir_that_holds_nothing_says_how_to_make_one(tmp_path):
    with pytest.raises(EmbeddingUnavailable, match="--corpus"):
        get_embedder(f"static:{tmp_path / 'absent'}")


def test_the_corpus_fit_moves_only_the_tokens_the_corpus_uses_towards_the_teacher():
    import scipy.sparse as sp

    rng = np.random.default_rng(1)
    vocab, dim, n = 60, 5, 400
    used = np.arange(40)  # tokens 40..59 never occur
    rows = np.repeat(np.arange(n), 4)
    cols = rng.choice(used, size=len(rows))
    bag = sp.csr_matrix((np.full(len(rows), 0.25), (rows, cols)), shape=(n, vocab))
    truth = rng.normal(size=(vocab, dim))
    targets = bag @ truth
    targets /= np.linalg.norm(targets, axis=1, keepdims=True)
    start = rng.normal(size=(vocab, dim)).astype(np.float32)

    def error(E):
        got = bag @ E
        got /= np.linalg.norm(got, axis=1, keepdims=True)
        return float(np.mean(1 - (got * targets).sum(axis=1)))

    fitted = fit_to_corpus(start, bag, targets, ridge=0.01)
    assert error(fitted) < 0.1 * error(start)
    assert np.array_equal(fitted[40:], start[40:])


@pytest.mark.slow
def test_a_real_distillation_puts_paraphrases_closer_than_other_topics(tmp_path):
    pytest.importorskip("onnxruntime")
    path = static_embed.distill(tmp_path / "d")
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["format"] == static_embed.FORMAT and manifest["teacher"] == "minilm-int8"
    emb = StaticEmbedder(path)
    X = emb.embed(["my card has not arrived yet", "the card still hasn't come", "what is the exchange rate"])
    assert X[0] @ X[1] > X[0] @ X[2] + 0.1
