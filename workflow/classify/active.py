"""Active label selection: which documents are worth an LLM label (issue 11, active distillation).

Pure functions on embeddings; the graph's label step (workflow/graph/selection.py) stores the rounds. A random
seed set comes first (a quarter of the budget), then each round sends the model the documents a fast logistic
regression on the labels so far is least sure of (smallest margin between its two most probable labels), spread
over the embedding space: the most uncertain ``CANDIDATES_PER_PICK * k`` candidates are clustered into k groups
(k-means weighted by uncertainty) and the candidate nearest each group's centre is picked (Zhdanov 2019, "Diverse
mini-batch active learning"). Uncertainty alone piles a round onto one ambiguous region; the clusters keep it from
spending many labels on near-copies. benchmarks/bench_active.py measures it against a random sample.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

SEED_SHARE = 0.25  # of the budget, labelled at random first: the uncertainty model needs a fair start
MIN_SEED = 10  # below this a classifier's uncertainty means little
ROUNDS = 4  # selection rounds after the seed (each round is one batch of concurrent model calls)
MIN_ROUND = 5  # rounds are merged rather than smaller than this
CANDIDATES_PER_PICK = 10  # uncertainty pre-filter before the diversity step
FAST_C = 10.0  # the fast model's regularisation on unit-length embeddings (~the product's C=1 after scaling)


def round_sizes(total: int) -> list[int]:
    """Documents per round for a budget of ``total`` labels: the random seed set first; sums to ``total`` exactly."""
    if total <= 0:
        return []
    seed = min(total, max(MIN_SEED, math.ceil(total * SEED_SHARE)))
    rest = total - seed
    n = min(ROUNDS, max(1, rest // MIN_ROUND)) if rest else 0
    return [seed] + [rest // n + (1 if i < rest % n else 0) for i in range(n)]


def fast_classifier(X: np.ndarray, y: list[str] | np.ndarray, seed: int = 0):
    """A plain multinomial logistic regression: seconds on a few thousand labels, refitted every round."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return LogisticRegression(C=FAST_C, max_iter=200, random_state=seed).fit(X, np.asarray(y))


def margins(X_labeled: np.ndarray, y_labeled: list[str] | np.ndarray, X_pool: np.ndarray, seed: int = 0) -> np.ndarray:
    """Top-1 minus top-2 probability of the fast model for each pool row (small: unsure). All ones when the labels
    have a single class (nothing to be unsure between yet)."""
    if len(set(np.asarray(y_labeled).tolist())) < 2 or not len(X_pool):
        return np.ones(len(X_pool))
    p = fast_classifier(X_labeled, y_labeled, seed).predict_proba(X_pool)
    top = np.sort(p, axis=1)[:, -2:]
    return top[:, 1] - top[:, 0]


def select_batch(X_labeled: np.ndarray, y_labeled: list[str] | np.ndarray, X_pool: np.ndarray, k: int, *,
                 seed: int = 0) -> np.ndarray:
    """Indices of ``k`` distinct pool rows to label next: uncertain and spread out. Deterministic for a seed."""
    n = len(X_pool)
    k = max(0, min(k, n))
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    return diverse_uncertain(X_pool, margins(X_labeled, y_labeled, X_pool, seed), k, seed=seed)


def diverse_uncertain(X_pool: np.ndarray, margin: np.ndarray, k: int, *, seed: int = 0) -> np.ndarray:
    """Indices of ``k`` pool rows among the most uncertain (smallest ``margin``), one per k-means group of them."""
    n = len(X_pool)
    k = max(0, min(k, n))
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.lexsort((np.arange(n), margin))  # most uncertain first, ties by position
    if k == n:
        return order
    cand = order[: min(n, CANDIDATES_PER_PICK * k)]
    if len(cand) == k:
        return cand
    from sklearn.cluster import KMeans
    from sklearn.exceptions import ConvergenceWarning

    Xc = np.asarray(X_pool[cand], dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # duplicate rows: fewer distinct clusters than k
        km = KMeans(n_clusters=k, n_init=1, random_state=seed).fit(Xc, sample_weight=1.0 - margin[cand] + 1e-3)
    dist = ((Xc - km.cluster_centers_[km.labels_]) ** 2).sum(axis=1)
    picked: list[int] = []
    for c in range(k):
        members = np.flatnonzero(km.labels_ == c)
        if len(members):
            picked.append(int(members[np.argmin(dist[members])]))  # nearest its centre: typical of the group
    if len(picked) < k:  # empty clusters: top up with the most uncertain candidates not taken
        taken = set(picked)
        picked += [i for i in range(len(cand)) if i not in taken][: k - len(picked)]
    rows = cand[np.array(sorted(picked))]  # candidate positions are in uncertainty order
    return rows
