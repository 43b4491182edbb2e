"""Unexplained-document detection of `tnt update` (workflow/evolve/novelty.py) on a toy embedding space: three
known classes the classifier learnt, and documents of a fourth it never saw."""

from __future__ import annotations

import numpy as np

from workflow.classify.loader import ServingModel
from workflow.classify.train import train_classifier
from workflow.evolve import novelty


def _blobs(rng: np.random.Generator, centres: np.ndarray, n: int, spread: float = 0.2) -> np.ndarray:
    X = np.repeat(centres, n, axis=0) + spread * rng.standard_normal((len(centres) * n, centres.shape[1]))
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def _toy(seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = np.eye(16)[:4] * 1.0  # four directions; the classifier knows the first three
    known = _blobs(rng, centres[:3], 60)
    y = [f"L{i}" for i in range(3) for _ in range(60)]
    clf, _ = train_classifier(known, y, seed=seed)
    model = ServingModel(clf, list(clf.labels), "toy", "toy", [])
    held = _blobs(rng, centres[:3], 20)  # documents like the training ones the model never saw
    new_old = _blobs(rng, centres[:3], 30)
    new_new = _blobs(rng, centres[3:], 40)
    return model, known, held, new_old, new_new


def test_documents_of_an_unseen_class_are_unexplained_and_known_ones_mostly_not():
    model, known, held, new_old, new_new = _toy()
    X = np.vstack([new_old, new_new])
    nov = novelty.score(model, X, known, held)
    is_new = np.r_[np.zeros(len(new_old), bool), np.ones(len(new_new), bool)]
    assert nov.unexplained[is_new].mean() >= 0.9  # the unseen class is found ...
    assert nov.unexplained[~is_new].mean() <= 0.3  # ... and the known classes are flagged near the alpha rate
    # ranking: the most novel documents first are those of the unseen class
    ids = [f"d{i}" for i in range(len(X))]
    top = novelty.ranked(ids, nov)[:30]
    assert sum(int(d[1:]) >= len(new_old) for d in top) >= 27


def test_p_values_are_ranks_among_the_reference():
    ref = np.array([0.1, 0.2, 0.3, 0.4])
    p = novelty.p_values(np.array([0.05, 0.25, 0.9]), ref)
    assert np.allclose(p, [1 / 5, 3 / 5, 5 / 5])


def test_without_held_out_documents_only_other_counts():
    model, known, _, new_old, new_new = _toy(1)
    nov = novelty.score(model, np.vstack([new_old, new_new]), known, np.zeros((0, known.shape[1])))
    assert not nov.unexplained.any() and np.all(nov.p_value == 1)


def test_nearest_similarity_is_chunked_and_exact():
    rng = np.random.default_rng(2)
    X, T = rng.standard_normal((7, 5)), rng.standard_normal((11, 5))
    Xn, Tn = X / np.linalg.norm(X, axis=1, keepdims=True), T / np.linalg.norm(T, axis=1, keepdims=True)
    assert np.allclose(novelty.nearest_similarity(X, T, chunk=3), (Xn @ Tn.T).max(axis=1), atol=1e-6)
