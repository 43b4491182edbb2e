"""The mislabel queue ranks flipped labels first on separable synthetic data."""

from __future__ import annotations

import numpy as np
import pytest

from workflow.classify.mislabel import rank_suspects


def _blobs(seed: int, n_per: int = 60, k: int = 5, dim: int = 16) -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 4, size=(k, dim))
    X = np.vstack([c + rng.normal(0, 1, size=(n_per, dim)) for c in centers])
    y = [f"c{j}" for j in range(k) for _ in range(n_per)]
    return X, y


@pytest.mark.parametrize("seed", [0, 1])
def test_flipped_labels_dominate_the_top_of_the_queue(seed):
    X, truth = _blobs(seed)
    rng = np.random.default_rng(100 + seed)
    flipped = set(rng.choice(len(truth), size=len(truth) // 10, replace=False).tolist())
    classes = sorted(set(truth))
    given = [rng.choice([c for c in classes if c != t]) if i in flipped else t for i, t in enumerate(truth)]

    ranked = rank_suspects(X, given, seed=seed)
    assert sorted(s.index for s in ranked) == list(range(len(given)))
    top = ranked[: len(flipped)]
    hits = [s for s in top if s.index in flipped]
    assert len(hits) >= 0.9 * len(flipped)
    assert sum(s.suggested_label == truth[s.index] for s in hits) >= 0.9 * len(hits)
    assert all(s.given_label == given[s.index] for s in ranked)
    assert [s.score for s in ranked] == sorted((s.score for s in ranked), reverse=True)


def test_low_llm_confidence_breaks_ties_upwards():
    X, y = _blobs(3)
    conf = [0.9] * len(y)
    base = {s.index: s.score for s in rank_suspects(X, y, conf)}
    conf[7] = 0.1
    moved = {s.index: s.score for s in rank_suspects(X, y, conf)}
    assert moved[7] > base[7]
    assert all(moved[i] == pytest.approx(base[i]) for i in base if i != 7)


def test_degenerate_inputs():
    X = np.zeros((3, 2))
    assert rank_suspects(X, ["a", "a", "a"]) == []
    with pytest.raises(ValueError, match="rows"):
        rank_suspects(np.zeros((2, 2)), ["a", "b", "c"])


def test_documents_whose_nearest_label_disagrees_rank_higher_in_the_review_queue(db):
    from workflow.review.view import QueueCache, mislabel_queue
    from workflow.store import Store

    X, y = _blobs(4, n_per=20, k=3)
    docs = [{"doc_id": f"d{i}", "text": f"t{i}", "text_hash": f"h{i}", "llm_label": lab, "confidence": 0.9,
             "status": "ok", "human_label": None, "nearest_id": lab} for i, lab in enumerate(y)]

    def embed(store, texts, hashes):
        return X[[int(t[1:]) for t in texts]]

    with Store(db) as store:
        calm, _ = mislabel_queue(store, "r", docs, embed, QueueCache())
        docs[5]["nearest_id"] = "c2"  # embeddings put d5 nearer another label than the LLM's
        flagged, _ = mislabel_queue(store, "r", docs, embed, QueueCache())
    assert calm[0]["doc_id"] != "d5" and flagged[0]["doc_id"] == "d5"
