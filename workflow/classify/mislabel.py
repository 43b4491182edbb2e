"""Rank documents whose label is most likely wrong, confident-learning style.

Out-of-fold probabilities from a logistic regression on the embeddings say how well each document's given label
is explained by the other documents. As in confident learning (Northcutt et al. 2021) a probability is judged
against its class's average self-confidence, so a naturally fuzzy class is not flagged wholesale. A low LLM
confidence, when known, raises the score a little. Reviewers look at the top of the list first.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from workflow.classify.noise import oof_proba

LLM_WEIGHT = 0.25  # share of the score that comes from low LLM confidence when it is known


@dataclass(frozen=True)
class Suspect:
    index: int  # row of X
    given_label: str
    suggested_label: str  # most probable other label out of fold
    score: float  # 0..1, higher = more likely mislabeled


def _folds(y: np.ndarray, folds: int) -> int:
    """As many folds as asked, but no more than the largest class has documents (at least 2)."""
    return max(2, min(folds, max(Counter(y.tolist()).values()), len(y) // 2))


def rank_suspects(
    X: np.ndarray,
    labels: list[str],
    llm_confidence: list[float | None] | None = None,
    *,
    seed: int = 0,
    folds: int = 5,
) -> list[Suspect]:
    """Every row ranked by how likely its label is wrong (most suspect first); [] when there is nothing to compare.

    score = (1 - w) * s_cl + w * (1 - llm_confidence), with s_cl in [0, 1]: 0.75 * the shortfall of the out-of-fold
    probability of the given label below its class's mean self-confidence, plus 0.25 * how far the best other label
    beats it. w = LLM_WEIGHT where a confidence is given, else 0.
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] != len(labels):
        raise ValueError(f"X has {X.shape[0] if X.ndim else 0} rows but there are {len(labels)} labels")
    if llm_confidence is not None and len(llm_confidence) != len(labels):
        raise ValueError("llm_confidence must have one entry per label")
    classes = sorted(set(labels))
    if len(classes) < 2 or len(labels) < 4:
        return []
    index = {c: k for k, c in enumerate(classes)}
    y = np.array([index[lab] for lab in labels])
    proba = oof_proba(X, y, len(classes), seed, _folds(y, folds), c=1.0, scale=False)

    rows = np.arange(len(y))
    p_given = proba[rows, y]
    self_conf = np.array([proba[y == k, k].mean() for k in range(len(classes))])
    shortfall = 1.0 - np.minimum(p_given / np.maximum(self_conf[y], 1e-12), 1.0)
    others = proba.copy()
    others[rows, y] = -1.0
    best_other = others.argmax(axis=1)
    margin = np.clip(others[rows, best_other] - p_given, 0.0, 1.0)
    s_cl = 0.75 * shortfall + 0.25 * margin

    score = s_cl.copy()
    if llm_confidence is not None:
        for i, c in enumerate(llm_confidence):
            if c is not None and not np.isnan(c):
                score[i] = (1 - LLM_WEIGHT) * s_cl[i] + LLM_WEIGHT * (1.0 - float(np.clip(c, 0.0, 1.0)))
    order = sorted(range(len(y)), key=lambda i: (-score[i], i))
    return [Suspect(i, labels[i], classes[best_other[i]], float(score[i])) for i in order]


def top_suspects(suspects: Sequence[Suspect], k: int, min_score: float = 0.0) -> list[Suspect]:
    """The first k suspects whose score is above min_score (for display)."""
    return [s for s in suspects[:k] if s.score > min_score]
