"""Confident learning on the LLM's pseudo-labels: estimate how many are wrong and leave the likely-wrong ones out.

Out-of-fold probabilities from a strongly regularised logistic regression say how well the other documents explain
each document's label. As in confident learning (Northcutt et al. 2021), a document is counted as mislabeled when
its given label's probability is below that class's average self-confidence while another class clears its own
average: the off-diagonal of the confident joint (cleanlab's implementation, filter "both", when it is installed;
see `find_suspects`). Its share estimates the teacher's error rate, and dropping those
documents' weight in the final fit keeps the classifier from learning the teacher's mistakes (measured on BANKING77
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
MIN_WEIGHT = 0.05  # the least a document counts in the final fit (never zero: the estimate can be wrong)


@dataclass(frozen=True)
class NoiseEstimate:
    """Which rows look mislabeled (boolean mask) and what that says about the labels."""

    suspect: np.ndarray  # rows flagged as mislabeled (they make the estimated rate)
    weight: np.ndarray  # per row, how much it counts in the final fit: 1 for a well-explained label, less below
    suggested: np.ndarray  # per row, the class the confident joint assigns (the given class when not suspect)
    proba: np.ndarray | None  # out-of-fold probabilities, None when skipped
    skipped: str | None = None
    method: str = "confident joint (own)"

    def summary(self) -> dict:
        if self.skipped:
            return {"method": "none", "skipped": self.skipped, "estimated_rate": None, "flagged": 0}
        return {
            "method": f"{self.method} on {NOISE_FOLDS}-fold out-of-fold logreg C={noise_c(len(self.weight)):.3g}; "
                      "labels re-weighted by out-of-fold probability / the best label's",
            "estimated_rate": float(self.suspect.mean()),
            "flagged": int(self.suspect.sum()),
            "down_weighted": int((self.weight < 0.5).sum()),  # count less than half in the fit
            "mean_weight": float(self.weight.mean()),
            "n": int(len(self.weight)),
        }


def noise_c(n: int) -> float:
    """Regularisation of the out-of-fold model for ``n`` training documents."""
    return float(np.clip(NOISE_C_TIMES_N / max(n, 1), *NOISE_C_RANGE))


def oof_proba(X: np.ndarray, y: np.ndarray, n_classes: int, seed: int, folds: int = NOISE_FOLDS,
              c: float | None = None, scale: bool = True) -> np.ndarray:
    """Out-of-fold class probabilities (rows of X, columns 0..n_classes-1) of a balanced logistic regression: the
    one computation behind the noise estimate (strong regularisation ``noise_c``, standardised features) and the
    review page's mislabel queue (``c=1.0, scale=False``). A class missing from a fold's fit gets probability 0."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.preprocessing import StandardScaler

    c = noise_c(len(y)) if c is None else c
    proba = np.zeros((len(y), n_classes))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tiny classes: "least populated class has only 1 member"
        for fit, val in StratifiedKFold(folds, shuffle=True, random_state=seed).split(X, y):
            scaler = StandardScaler().fit(X[fit]) if scale else None
            Xf, Xv = (scaler.transform(X[fit]), scaler.transform(X[val])) if scaler else (X[fit], X[val])
            model = LogisticRegression(C=c, class_weight="balanced", max_iter=1000, random_state=seed)
            model.fit(Xf, y[fit])
            proba[np.ix_(val, model.classes_)] = model.predict_proba(Xv)
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
    """Confident-learning estimate on integer labels ``y``; skipped (every weight 1) on too little data.

    ``trusted`` rows (human corrections) count in the estimate but keep weight 1: a human wins over the model.
    """
    n = len(y)
    counts = np.bincount(y)
    everything = np.ones(n, dtype=bool)
    if n < MIN_SAMPLES or (counts >= MIN_PER_CLASS).sum() < 2:
        why = f"too little data ({n} documents, {int((counts >= MIN_PER_CLASS).sum())} labels with {MIN_PER_CLASS}+)"
        return NoiseEstimate(~everything, everything.astype(float), y.copy(), None, why)
    proba = oof_proba(X, y, len(counts), seed)
    suspect, suggested, method = find_suspects(proba, y)
    weight = confidence_weights(proba, y)
    weight[counts[y] < MIN_PER_CLASS] = 1.0  # too rare to judge
    if trusted is not None:
        weight[np.asarray(trusted, dtype=bool)] = 1.0
    return NoiseEstimate(suspect, weight, suggested, proba, method=method)


def confidence_weights(proba: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Out-of-fold probability of the given label over the most probable label's, in [MIN_WEIGHT, 1].

    Soft, not a cut: on BANKING77 with 20% noise the best re-weighted fit matched or beat the best fit after dropping
    suspects (cleanlab's or ours), kNN cleaning, and plain training, on uniform and confusable noise
    (benchmarks/README.md); dropping loses the flagged labels that were right. Against the best label rather than
    the class's mean self-confidence: a right label on a document between two classes (p 0.4 against 0.45) keeps
    most of its weight, where the class average (say 0.8) halved it; a wrong label (p 0.02 against 0.7) still
    counts next to nothing.
    """
    rows = np.arange(len(y))
    return np.clip(proba[rows, y] / np.maximum(proba.max(axis=1), 1e-12), MIN_WEIGHT, 1.0)


def find_suspects(proba: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, str]:
    """(suspect mask, suggested class, method): cleanlab's ``find_label_issues(filter_by="both")`` when installed.

    Measured on BANKING77 (77 classes, 20% injected noise; benchmarks/README.md) "both" (a row must be flagged by
    prune-by-class and by prune-by-noise-rate) is more precise than our own confident-joint off-diagonal at about
    the same or better recall, so its share is the reported noise estimate. Without cleanlab, or when it refuses
    the input, our confident joint is used.
    """
    present = np.flatnonzero(np.bincount(y, minlength=proba.shape[1]))
    try:
        from cleanlab.filter import find_label_issues

        remap = np.full(proba.shape[1], -1)
        remap[present] = np.arange(len(present))
        p = proba[:, present]
        p = p / np.maximum(p.sum(axis=1, keepdims=True), 1e-12)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            suspect = np.asarray(find_label_issues(remap[y], p, filter_by="both", n_jobs=1), dtype=bool)
    except Exception:  # noqa: BLE001 - ImportError, or cleanlab rejecting an input: fall back to our own ranking
        suspect, suggested = confident_joint_suspects(proba, y)
        return suspect, suggested, "confident joint (own)"
    others = proba.copy()
    others[np.arange(len(y)), y] = -1.0
    suggested = np.where(suspect, others.argmax(axis=1), y)
    return suspect, suggested, "cleanlab find_label_issues(filter_by='both')"


def label_noise_line(summary: dict | None, teacher: str = "LLM") -> str | None:
    """The run summary's line on the teacher's estimated error rate (None when training did not estimate it)."""
    if not summary:
        return None
    if summary.get("estimated_rate") is None:
        why = summary.get("skipped") or "noise-aware training is off"
        return f"estimated label noise of the {teacher} labels: not estimated ({why})"
    rate, n = summary["estimated_rate"], summary.get("n", 0)
    return (f"estimated label noise of the {teacher} labels: {rate:.1%} ({summary.get('flagged', 0)} of {n} training "
            f"labels look wrong; {summary.get('down_weighted', 0)} count less than half in the classifier's fit)")
