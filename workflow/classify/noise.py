"""Confident learning on the LLM's pseudo-labels: estimate how many are wrong and leave the likely-wrong ones out.

Out-of-fold probabilities from a strongly regularised logistic regression say how well the other documents explain
each document's label. As in confident learning (Northcutt et al. 2021), a document is counted as mislabeled when
its given label's probability is below that class's average self-confidence while another class clears its own
average: the off-diagonal of the confident joint. Its share estimates the teacher's error rate, and dropping those
documents before the final fit keeps the classifier from learning the teacher's mistakes (measured on BANKING77
with 20% injected noise in benchmarks/bench_noise.py).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

NOISE_C_TIMES_N = 100.0  # C * documents: sklearn's C scales the summed loss, so this keeps the per-document penalty
NOISE_C_RANGE = (0.05, 1.0)  # strong regularisation on thousands of labels (no memorised noise), milder on 100
NOISE_FOLDS = 3
MIN_SAMPLES = 50  # below this the out-of-fold estimate is too noisy to act on
MIN_PER_CLASS = 3  # every class needs a document in each fold
MAX_PRUNE_SHARE = 0.5  # never drop more than this share of a class (keeps rare classes trainable)


@dataclass(frozen=True)
class NoiseEstimate:
    """Which rows look mislabeled (boolean mask) and what that says about the labels."""

    suspect: np.ndarray  # rows in the off-diagonal of the confident joint
    keep: np.ndarray  # rows to train on (suspects dropped, subject to MAX_PRUNE_SHARE per class)
    suggested: np.ndarray  # per row, the class the confident joint assigns (the given class when not suspect)
    proba: np.ndarray | None  # out-of-fold probabilities, None when skipped
    skipped: str | None = None

    def summary(self) -> dict:
        if self.skipped:
            return {"method": "none", "skipped": self.skipped, "estimated_rate": None, "flagged": 0, "pruned": 0}
        return {
            "method": f"confident-learning ({NOISE_FOLDS}-fold out-of-fold logreg C={noise_c(len(self.keep)):.3g}); "
                      "suspects dropped",
            "estimated_rate": float(self.suspect.mean()),
            "flagged": int(self.suspect.sum()),
            "pruned": int((~self.keep).sum()),
            "n": int(len(self.keep)),
        }


def noise_c(n: int) -> float:
    """Regularisation of the out-of-fold model for ``n`` training documents."""
    return float(np.clip(NOISE_C_TIMES_N / max(n, 1), *NOISE_C_RANGE))


def oof_proba(X: np.ndarray, y: np.ndarray, n_classes: int, seed: int, folds: int = NOISE_FOLDS,
              c: float | None = None) -> np.ndarray:
    """Out-of-fold class probabilities (rows of X, columns 0..n_classes-1)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.preprocessing import StandardScaler

    c = noise_c(len(y)) if c is None else c
    proba = np.zeros((len(y), n_classes))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for fit, val in StratifiedKFold(folds, shuffle=True, random_state=seed).split(X, y):
            scale = StandardScaler().fit(X[fit])
            model = LogisticRegression(C=c, class_weight="balanced", max_iter=1000, random_state=seed)
            model.fit(scale.transform(X[fit]), y[fit])
            proba[np.ix_(val, model.classes_)] = model.predict_proba(scale.transform(X[val]))
    return proba


def confident_joint_suspects(proba: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(suspect mask, suggested class) from out-of-fold probabilities and the given labels (integer codes)."""
    n, k = proba.shape
    rows = np.arange(n)
    thresholds = np.array([proba[y == j, j].mean() if (y == j).any() else 1.0 for j in range(k)])
    above = np.where(proba >= thresholds[None, :], proba, -1.0)
    suggested = above.argmax(axis=1)
    confident = above[rows, suggested] >= 0
    suggested = np.where(confident, suggested, y)
    return confident & (suggested != y), suggested


def estimate_noise(X: np.ndarray, y: np.ndarray, *, seed: int = 0,
                   trusted: np.ndarray | None = None) -> NoiseEstimate:
    """Confident-learning estimate on integer labels ``y``; skipped (nothing dropped) on too little data.

    ``trusted`` rows (human corrections) count in the estimate but are never dropped: a human wins over the model.
    """
    n = len(y)
    counts = np.bincount(y)
    everything = np.ones(n, dtype=bool)
    if n < MIN_SAMPLES or (counts >= MIN_PER_CLASS).sum() < 2:
        why = f"too little data ({n} documents, {int((counts >= MIN_PER_CLASS).sum())} labels with {MIN_PER_CLASS}+)"
        return NoiseEstimate(~everything, everything, y.copy(), None, why)
    proba = oof_proba(X, y, len(counts), seed)
    suspect, suggested = confident_joint_suspects(proba, y)
    keep = ~suspect
    for j in np.flatnonzero(counts):  # cap per class: drop the least confident first
        members = np.flatnonzero(y == j)
        dropped = members[suspect[members]]
        cap = int(MAX_PRUNE_SHARE * len(members))
        if len(dropped) > cap:
            order = dropped[np.argsort(proba[dropped, j])]
            keep[order[cap:]] = True
    keep |= counts[y] < MIN_PER_CLASS  # too rare to judge: a class never loses its last examples
    if trusted is not None:
        keep |= np.asarray(trusted, dtype=bool)
    return NoiseEstimate(suspect, keep, suggested, proba)


def label_noise_line(summary: dict | None) -> str | None:
    """The run summary's line on the teacher's estimated error rate (None when training did not estimate it)."""
    if not summary:
        return None
    if summary.get("estimated_rate") is None:
        why = summary.get("skipped") or "noise-aware training is off"
        return f"estimated label noise of the LLM labels: not estimated ({why})"
    rate, n = summary["estimated_rate"], summary.get("n", 0)
    return (f"estimated label noise of the LLM labels: {rate:.1%} ({summary.get('flagged', 0)} of {n} training "
            f"labels look wrong; {summary.get('pruned', 0)} left out of the classifier's fit)")
