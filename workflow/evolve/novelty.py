"""Which new documents does a run's taxonomy fail to explain? Conformal novelty p-values against the run's own
held-out documents, so "typical" is measured on documents the classifier never trained on, not assumed.

Two scores, each turned into a p-value by its rank among the held-out documents' scores (the share of held-out
documents that look at least as unusual):

* the classifier's top probability: a document of an unseen kind is usually claimed by no label firmly;
* the cosine similarity to the nearest training document (k=1 nearest neighbour): an unseen kind sits away from
  every document the classifier learnt from, even where a linear model is confident by extrapolation.

On BANKING77 with 17 held-back intents (benchmarks/bench_update.py, 3000 new documents, 1000 of new intents) each
score alone ranks new-intent documents first about as well as the other (precision ~0.75 in the top 500) and they
disagree on many documents, so the update takes a document as unexplained when either p-value is small
(Bonferroni: min p-value x 2 < alpha) and ranks documents by the combined p-value: 1119 flagged, precision 0.65,
recall 0.72, where the former rule (Other, conformal set not of size one, or farther from every label centroid
than 95% of held-out documents) flagged 707 at precision 0.67, recall 0.47.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from workflow.classify.loader import ServingModel
from workflow.store import OTHER_ID

ALPHA = 0.2  # Bonferroni over two scores: less typical than 90% of held-out documents on either one


def _unit(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=np.float32)
    return X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)


def nearest_similarity(X: np.ndarray, train: np.ndarray, chunk: int = 2048) -> np.ndarray:
    """Cosine similarity of each row of X to its nearest row of train (chunked: memory stays chunk x n_train)."""
    if not len(X):
        return np.zeros(0, dtype=np.float32)
    if not len(train):
        return np.full(len(X), -1.0, dtype=np.float32)
    T = _unit(train)
    Xn = _unit(X)
    return np.concatenate([(Xn[i:i + chunk] @ T.T).max(axis=1) for i in range(0, len(Xn), chunk)])


def p_values(scores: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Conformal p-value of each score, low = unusual: (1 + #reference <= score) / (1 + n_reference)."""
    ref = np.sort(np.asarray(reference, dtype=np.float64))
    return (1.0 + np.searchsorted(ref, np.asarray(scores, dtype=np.float64), side="right")) / (1.0 + len(ref))


@dataclass
class Novelty:
    """Per document: whether the taxonomy explains it, the combined p-value (low = novel) and why."""

    unexplained: np.ndarray  # bool
    p_value: np.ndarray  # combined (Bonferroni over the two scores), in (0, 1]
    other: np.ndarray  # bool: predicted Other
    depth: np.ndarray  # sum of both p-values then nearest similarity: breaks ties of p_value (low = novel)


def score(model: ServingModel, X: np.ndarray, train: np.ndarray, held: np.ndarray,
          alpha: float = ALPHA) -> Novelty:
    """Novelty of rows X for a model trained on `train` vectors, calibrated on the held-out vectors `held`.
    Without held-out documents nothing is calibrated and only Other predictions count as unexplained."""
    idx, prob, _ = model.classify(X)
    other = np.array([model.labels[i] == OTHER_ID for i in idx.tolist()], dtype=bool)
    if not len(held) or not len(X):
        return Novelty(other.copy(), np.ones(len(X)), other, np.ones(len(X)))
    held_prob = model.classify(held)[1]
    p_prob = p_values(prob, held_prob)
    # held-out documents against the training documents: the same nearest-neighbour score, never of itself
    near = nearest_similarity(X, train)
    p_near = p_values(near, nearest_similarity(held, train))
    p = np.minimum(1.0, 2.0 * np.minimum(p_prob, p_near))
    return Novelty(other | (p < alpha), p, other, p_prob + p_near + 1e-3 * near)


def ranked(doc_ids: list[str], novelty: Novelty) -> list[str]:
    """The unexplained documents, most novel first (by p-value, ties by both scores; then input order)."""
    keys = [(float(p), float(t), i) for i, (p, t, u) in
            enumerate(zip(novelty.p_value, novelty.depth, novelty.unexplained)) if u]
    return [doc_ids[i] for _, _, i in sorted(keys)]


__all__ = ["ALPHA", "Novelty", "nearest_similarity", "p_values", "ranked", "score"]
