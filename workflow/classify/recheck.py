"""Which of the teacher's labels go back to the model once more (`--recheck FRACTION`), and with which alternative.

The noise estimate (workflow/classify/noise.py: out-of-fold probabilities, confident learning) already says which
labels the other documents explain badly and which class they point to instead. Asking the model again about
exactly those documents, with only two choices (the label they have and that alternative), spends a small,
fixed budget where a second look is most likely to change something, and a binary choice is the easiest question
a model can be asked. Pure function on arrays: the graph node (workflow/graph/nodes/recheck.py) does the calls.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from workflow.classify.noise import estimate_noise


@dataclass(frozen=True)
class Pick:
    index: int  # row of X
    original: str  # the label the row has
    alternative: str  # the class the out-of-fold classifier prefers among the others
    score: float  # how badly the other documents explain the label: 1 - p(given) / class self-confidence
    flagged: bool  # confident learning counts it as mislabeled


@dataclass(frozen=True)
class Plan:
    picks: list[Pick]  # most suspect first, at most budget(fraction, eligible rows)
    skipped: str | None = None  # why nothing is picked (too little data for the estimate)
    flagged: int = 0  # eligible rows confident learning flags (may be more or fewer than the budget)


def budget(fraction: float, n: int) -> int:
    """Calls for `--recheck fraction` over n eligible labels (rounded up: any positive share asks at least once)."""
    if not 0 <= fraction <= 1:
        raise ValueError(f"--recheck is a share of the labels between 0 and 1, got {fraction}")
    return min(n, math.ceil(fraction * n - 1e-9)) if fraction > 0 else 0


def plan_rechecks(X: np.ndarray, labels: Sequence[str], eligible: Sequence[bool], fraction: float, *,
                  seed: int = 0, trusted: Sequence[bool] | None = None) -> Plan:
    """The eligible rows to recheck, most suspect first: rows confident learning flags come first, then the rest
    by how badly their label is explained, until the budget is spent.

    Every row counts in the estimate (human corrections too, as ``trusted``); only ``eligible`` rows (the
    teacher's labels without a human correction) can be picked.
    """
    X = np.asarray(X, dtype=np.float32)
    if len(labels) != len(X) or len(eligible) != len(X):
        raise ValueError(f"X has {len(X)} rows, labels {len(labels)}, eligible {len(eligible)}")
    ok = np.asarray(eligible, dtype=bool)
    k = budget(fraction, int(ok.sum()))
    if k == 0:
        return Plan([])
    names = sorted(set(labels))
    if len(names) < 2:
        return Plan([], skipped=f"a single label ({names[0] if names else 'none'}): no alternative to offer")
    code = {lab: i for i, lab in enumerate(names)}
    y = np.array([code[lab] for lab in labels], dtype=np.int64)
    est = estimate_noise(X, y, seed=seed, trusted=None if trusted is None else np.asarray(trusted, dtype=bool))
    if est.skipped or est.proba is None:
        return Plan([], skipped=f"no noise estimate ({est.skipped})")
    proba = est.proba
    rows = np.arange(len(y))
    self_conf = np.array([proba[y == j, j].mean() if (y == j).any() else 1.0 for j in range(proba.shape[1])])
    score = 1.0 - proba[rows, y] / np.maximum(self_conf[y], 1e-12)
    others = proba.copy()
    others[rows, y] = -1.0
    alternative = np.where(est.suspect & (est.suggested != y), est.suggested, others.argmax(axis=1))
    order = sorted(np.flatnonzero(ok).tolist(), key=lambda i: (not est.suspect[i], -score[i], i))
    picks = [Pick(i, labels[i], names[alternative[i]], float(score[i]), bool(est.suspect[i])) for i in order[:k]]
    return Plan(picks, flagged=int((est.suspect & ok).sum()))
