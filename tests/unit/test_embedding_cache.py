"""The embedding cache reads vectors back as one Arrow column: exact values, only the model asked for, only the
hashes asked for, and no shape guessed when vectors differ in length."""

from __future__ import annotations

import numpy as np

from workflow.store import Store


def test_cached_vectors_come_back_exactly_by_hash_and_model(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((50, 7), dtype=np.float32)
    with Store(str(tmp_path / "c.duckdb")) as store:
        store.save_embeddings("a", [f"h{i}" for i in range(50)], X)
        store.save_embeddings("b", ["h0"], np.ones((1, 3), dtype=np.float32))
        got = store.cached_embeddings("a", ["h3", "h0", "h3", "missing"])
        assert set(got) == {"h0", "h3"}
        assert np.array_equal(got["h3"], X[3]) and got["h0"].dtype == np.float32
        assert np.array_equal(store.cached_embeddings("b", ["h0", "h1"])["h0"], np.ones(3, dtype=np.float32))
        assert store.cached_embeddings("a", []) == {} and store.cached_embeddings("c", ["h0"]) == {}
        store.save_embeddings("a", ["h0"], np.zeros((1, 7), dtype=np.float32))  # a cached vector is kept
        assert np.array_equal(store.cached_embeddings("a", ["h0"])["h0"], X[0])


def test_vectors_of_different_lengths_under_one_model_are_returned_as_stored(tmp_path):
    with Store(str(tmp_path / "c.duckdb")) as store:
        store.save_embeddings("m", ["x"], np.ones((1, 2), dtype=np.float32))
        store.save_embeddings("m", ["y"], np.ones((1, 4), dtype=np.float32))
        got = store.cached_embeddings("m", ["x", "y"])
        assert got["x"].shape == (2,) and got["y"].shape == (4,)
