"""Distil LLM pseudo-labels into a lightweight classifier on sentence embeddings (TnT-LLM stage 3).

Pure functions on numpy arrays: the caller loads embeddings/labels and stores the results. The
classifier replaces the LLM for bulk labelling, so besides the fitted model we report how well it
agrees with the LLM on held-out data and attach split-conformal prediction sets, which tell the
caller which predictions are ambiguous ("uncertain") with a coverage guarantee of about 1 - alpha.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.calibration import CalibratedClassifierCV
from sklearn.exceptions import ConvergenceWarning, FitFailedWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    accuracy_score,
    cohen_kappa_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)
from sklearn.model_selection import StratifiedKFold, cross_val_score, train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.class_weight import compute_sample_weight

from workflow.classify.noise import estimate_noise

ALGORITHMS = ("logreg", "lightgbm", "mlp")
LOGREG_C_GRID = (0.01, 0.03, 0.1, 0.3, 1.0)  # chosen by CV on the noisy labels; 20% noise on BANKING77 picks 0.01
CV_MAX_SAMPLES = 5000  # above this, model selection uses one inner validation split (CV is too slow)
CAL_MIN_PER_CLASS = 10  # probability calibration needs a few examples of every class in each fold
CAL_FOLDS = 3
MLP_EARLY_STOP_MIN_PER_CLASS = 20  # early stopping makes a stratified 10% split inside every fit
LGBM_THREADED_MIN_SAMPLES = 20000
SELF_TRAIN_MIN_PROBABILITY = 0.7  # an unlabeled document joins the final fit under its label when this sure
# with fewer randomly drawn labels than this (active selection), every row may be held out and scores model selection
SELECTION_MIN_RANDOM_ROWS = 50


class TrainingError(ValueError):
    """The data cannot train a classifier (e.g. a single distinct label)."""


class BalancedMLPClassifier(MLPClassifier):
    """MLPClassifier has no ``class_weight``; weight samples inversely to class frequency instead.

    The weights are computed inside ``fit`` so cross-validation and calibration folds reweight
    their own training part (no leakage), with the same effect as ``class_weight="balanced"``.
    """

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> BalancedMLPClassifier:
        weights = compute_sample_weight("balanced", y)
        if sample_weight is not None:
            weights = weights * np.asarray(sample_weight, dtype=float)
        return super().fit(X, y, sample_weight=weights)


@dataclass
class TrainedClassifier:
    """A fitted estimator plus what is needed to turn its output into labels and conformal sets.

    The estimator is trained on integer codes; ``labels[i]`` is the label of probability column i.
    """

    estimator: Any
    labels: list[str]
    algorithm: str
    calibrated: bool
    conformal_threshold: float | None
    alpha: float | None
    multi_label: bool = False  # one-vs-rest: probabilities are per label and do not sum to 1
    threshold: float = 0.5  # multi-label: a label is predicted when its probability reaches this

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        X = _as_matrix(X)
        if len(X) == 0:  # sklearn refuses empty input; an empty batch is not an error here
            return np.zeros((0, len(self.labels)))
        proba = np.asarray(self.estimator.predict_proba(X), dtype=np.float64)
        if proba.shape[1] != len(self.labels):
            raise ValueError(f"estimator returned {proba.shape[1]} columns for {len(self.labels)} labels")
        return proba

    def predict(self, X: np.ndarray) -> tuple[list[str], np.ndarray]:
        """Most probable label per row and its probability."""
        proba = self.predict_proba(X)
        idx = proba.argmax(axis=1)
        return [self.labels[i] for i in idx], proba[np.arange(len(idx)), idx]

    def label_sets(self, X: np.ndarray) -> list[list[str]]:
        """Multi-label answer per row: every label at or above the threshold, most probable first; the top
        label always (a document below every threshold still gets its best guess, flagged uncertain)."""
        return [[self.labels[j] for j in idx] for idx in sets_from_ovr(self.predict_proba(X), self.threshold)]

    def prediction_sets(self, X: np.ndarray) -> list[list[str]]:
        """Split-conformal (LAC) sets: every label whose score 1 - p is within the threshold.

        A set of size != 1 means the prediction is uncertain (ambiguous, or nothing fits).
        """
        if self.conformal_threshold is None:
            raise ValueError("conformal prediction was disabled at training time (alpha=None)")
        return sets_from_proba(self.predict_proba(X), self.labels, self.conformal_threshold)


@dataclass(frozen=True)
class _Candidate:
    name: str
    algorithm: str
    make: Callable[[], Any] = field(compare=False)


def _as_matrix(X: Any) -> np.ndarray:
    X = np.asarray(X, dtype=np.float32)
    if X.ndim == 1:
        X = X.reshape(1, -1)
    if X.ndim != 2:
        raise ValueError(f"expected a 2-D array of embeddings, got shape {X.shape}")
    return X


def _jsonable(x: float) -> float | None:
    """NaN/inf are not valid JSON; report them as null."""
    x = float(x)
    return x if math.isfinite(x) else None


def agreement(y_true: Sequence[str], y_pred: Sequence[str]) -> dict:
    """Agreement between two labelings (here: classifier vs LLM), chance-corrected by Cohen's kappa."""
    y_true = [str(v) for v in y_true]
    y_pred = [str(v) for v in y_pred]
    if len(y_true) != len(y_pred):
        raise ValueError(f"length mismatch: {len(y_true)} vs {len(y_pred)}")
    if not y_true:
        return {"n": 0, "accuracy": None, "macro_f1": None, "cohen_kappa": None}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # kappa is 0/0 when both sides are constant; reported as None
        kappa = cohen_kappa_score(y_true, y_pred)
    return {
        "n": len(y_true),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
        "cohen_kappa": _jsonable(kappa),
    }


def split_conformal_threshold(proba: np.ndarray, y_idx: np.ndarray, alpha: float) -> float:
    """Threshold on the LAC score 1 - p_true: its ceil((n+1)(1-alpha))/n empirical quantile.

    That is the k-th smallest score, k = ceil((n+1)(1-alpha)) (np.quantile's "higher" method would
    pick a later order statistic, over-covering). With too few calibration points k > n (the
    quantile is +inf); we return 1.0, which admits every label: valid, and honest about it.
    """
    n = len(y_idx)
    k = math.ceil(round((n + 1) * (1 - alpha), 9))  # round: keep float noise from bumping k
    if n == 0 or k > n:
        return 1.0
    scores = 1.0 - proba[np.arange(n), np.asarray(y_idx)]
    return float(np.partition(scores, k - 1)[k - 1])


def sets_from_proba(proba: np.ndarray, labels: Sequence[str], threshold: float) -> list[list[str]]:
    keep = (1.0 - proba) <= threshold
    return [[labels[j] for j in np.flatnonzero(row)] for row in keep]


def sets_from_ovr(proba: np.ndarray, threshold: float) -> list[list[int]]:
    """Column indices per row, most probable first: those >= threshold, or the top one alone."""
    order = np.argsort(-proba, axis=1, kind="stable")
    out = []
    for row, o in zip(proba, order):
        keep = [int(j) for j in o if row[j] >= threshold]
        out.append(keep or [int(o[0])])
    return out


def stratified_split(
    idx: np.ndarray, y: np.ndarray, size: float | int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split ``idx`` into (keep, held) so that ``keep`` still contains every class.

    Stratified when possible; singleton classes never leave ``keep``; a random fallback split
    is patched by moving one example of any class it emptied back into ``keep``.
    """
    counts = Counter(y[idx].tolist())
    single = np.array([i for i in idx if counts[y[i]] < 2], dtype=int)
    rest = np.array([i for i in idx if counts[y[i]] >= 2], dtype=int)
    if len(rest) < 2:
        return idx, np.array([], dtype=int)
    if isinstance(size, int):
        size = min(size, len(rest) - 1)
    try:
        keep, held = train_test_split(rest, test_size=size, random_state=seed, stratify=y[rest])
    except ValueError:  # too small a held-out part to hold every class
        keep, held = train_test_split(rest, test_size=size, random_state=seed)
    keep, held = list(keep), list(held)
    present = {y[i] for i in keep}
    for i in list(held):
        if y[i] not in present:
            held.remove(i)
            keep.append(i)
            present.add(y[i])
    return np.concatenate([single, np.array(keep, dtype=int)]), np.array(held, dtype=int)


def _candidates(algorithms: Sequence[str], y: np.ndarray, seed: int, notes: list[str]) -> list[_Candidate]:
    n, counts = len(y), np.bincount(y)
    out: list[_Candidate] = []
    for algo in algorithms:
        if algo == "logreg":
            for c in LOGREG_C_GRID:
                out.append(_Candidate(f"logreg(C={c:g})", "logreg", _logreg_factory(c, seed)))
        elif algo == "lightgbm":
            try:
                import lightgbm  # noqa: F401  (optional dependency)
            except ImportError:
                notes.append("lightgbm requested but not installed; skipped")
                continue
            min_child = int(np.clip(n // (10 * len(counts)), 2, 20))
            # OpenMP threads cost far more than they save on small data (20-40x slower here)
            n_jobs = 1 if n < LGBM_THREADED_MIN_SAMPLES else None
            out.append(_Candidate("lightgbm", "lightgbm", _lightgbm_factory(min_child, n_jobs, seed)))
        elif algo == "mlp":
            early = bool(counts.min() >= MLP_EARLY_STOP_MIN_PER_CLASS)
            if not early:
                notes.append("mlp: too few examples per class for early stopping; trained for max_iter")
            out.append(_Candidate("mlp(256)", "mlp", _mlp_factory(early, seed)))
        else:
            raise ValueError(f"unknown algorithm {algo!r}; choose from {ALGORITHMS}")
    if not out:
        raise TrainingError(f"none of the requested algorithms is available: {list(algorithms)}")
    return out


def _logreg_factory(c: float, seed: int) -> Callable[[], Pipeline]:
    # lbfgs on >2 classes is the multinomial (softmax) model; scaling makes one C grid fit all embedders.
    return lambda: Pipeline([
        ("scale", StandardScaler()),
        ("model", LogisticRegression(C=c, class_weight="balanced", max_iter=2000, random_state=seed)),
    ])


def _lightgbm_factory(min_child: int, n_jobs: int | None, seed: int) -> Callable[[], Pipeline]:
    def make() -> Pipeline:
        from lightgbm import LGBMClassifier

        return Pipeline([("model", LGBMClassifier(
            n_estimators=200, learning_rate=0.1, num_leaves=15, min_child_samples=min_child,
            subsample=0.8, subsample_freq=1, colsample_bytree=0.5, class_weight="balanced",
            random_state=seed, n_jobs=n_jobs, verbose=-1,
        ))])
    return make


def _mlp_factory(early: bool, seed: int) -> Callable[[], Pipeline]:
    return lambda: Pipeline([
        ("scale", StandardScaler()),
        ("model", BalancedMLPClassifier(
            hidden_layer_sizes=(256,), alpha=1e-3, early_stopping=early, n_iter_no_change=10,
            max_iter=300, random_state=seed,
        )),
    ])


def _select(
    cands: list[_Candidate], X: np.ndarray, y: np.ndarray, seed: int, weight: np.ndarray | None = None,
    score_rows: np.ndarray | None = None,
) -> tuple[_Candidate, dict[str, float | None], str]:
    """Pick the candidate with the best macro-F1 (CV on small data, one validation split otherwise).

    ``score_rows``: the rows drawn at random from the corpus, when the others were not (active selection picks the
    documents the classifier is least sure of). Every row trains, but only these score: validation folds of hard
    documents prefer far too strong a regularisation (C=0.01 where C=0.3 is best on 1,000 active labels with 20%
    noise on BANKING77, 0.820 against 0.855; benchmarks/README.md)."""
    if len(cands) == 1:
        return cands[0], {cands[0].name: None}, "single-candidate"
    scores: dict[str, float | None] = {}
    rows = score_rows if score_rows is not None and score_rows.sum() >= SELECTION_MIN_RANDOM_ROWS else None
    scored_on = "" if rows is None else f" scored on the {int(rows.sum())} randomly drawn labels"
    if len(y) <= CV_MAX_SAMPLES:
        k = int(np.clip(np.bincount(y).min(), 2, 5))
        method = f"stratified-{k}-fold-cv{scored_on}"
        splits = list(StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(X, y))
        if rows is not None:
            splits = [(fit, val[rows[val]]) for fit, val in splits if rows[val].any()]
        for c in cands:
            try:
                s = cross_val_score(c.make(), X, y, cv=splits, scoring="f1_macro", error_score=np.nan,
                                    params=_weight_params(weight))
                scores[c.name] = _jsonable(np.nanmean(s)) if np.isfinite(s).any() else None
            except ValueError:
                scores[c.name] = None
    else:
        method = f"holdout-validation{scored_on}"
        fit_idx, val_idx = stratified_split(np.arange(len(y)), y, 0.2, seed)
        if rows is not None and rows[val_idx].any():
            val_idx = val_idx[rows[val_idx]]
        for c in cands:
            w = None if weight is None else weight[fit_idx]
            pred = c.make().fit(X[fit_idx], y[fit_idx], **_weight_params(w)).predict(X[val_idx])
            scores[c.name] = float(f1_score(y[val_idx], pred, average="macro", zero_division=0))
    scored = [c for c in cands if scores[c.name] is not None]
    if not scored:
        return cands[0], scores, method + " (failed; default used)"
    return max(scored, key=lambda c: scores[c.name]), scores, method  # ties keep the earlier one


def _weight_params(weight: np.ndarray | None) -> dict:
    """Per-document weights for the final step of a candidate pipeline (every candidate names it "model")."""
    return {} if weight is None else {"model__sample_weight": weight}


def _fit(
    cand: _Candidate, X: np.ndarray, y: np.ndarray, calibrate: bool, weight: np.ndarray | None = None
) -> tuple[Any, dict]:
    """Fit the chosen model, calibrating probabilities only when every class has enough examples.

    Calibration is temperature scaling (one inverse temperature learned on out-of-fold decision values) over the
    model fit on all the data: it never changes which label wins. Per-class sigmoid or isotonic calibration
    averaged over fold models did: on BANKING77 with 20% label noise it cost 1.5 points of accuracy (0.851 vs
    0.866), because each fold model saw a third fewer labels and the per-class calibrators re-rank classes."""
    min_count = int(np.bincount(y).min())
    if not calibrate:
        model = cand.make().fit(X, y, **_weight_params(weight))
        return model, {"applied": False, "reason": "disabled (calibrate=False)"}
    if min_count < CAL_MIN_PER_CLASS:
        reason = f"skipped: smallest class has {min_count} training examples (< {CAL_MIN_PER_CLASS})"
        return cand.make().fit(X, y, **_weight_params(weight)), {"applied": False, "reason": reason}
    est = CalibratedClassifierCV(cand.make(), method="temperature", cv=CAL_FOLDS, ensemble=False)
    est.fit(X, y, **_weight_params(weight))
    return est, {"applied": True, "method": "temperature", "folds": CAL_FOLDS}


def train_classifier(
    X: np.ndarray,
    y: Sequence[str],
    *,
    algorithms: Sequence[str] = ("logreg",),
    seed: int = 0,
    test_size: float = 0.2,
    calibrate: bool = True,
    alpha: float | None = 0.1,
    noise_aware: bool = True,
    trusted: Sequence[bool] | None = None,
    representative: Sequence[bool] | None = None,
    test_rows: Sequence[bool] | None = None,
    unlabeled: np.ndarray | None = None,
) -> tuple[TrainedClassifier, dict]:
    """Train on LLM pseudo-labels; return the classifier and JSON-serialisable metrics.

    Steps: hold out a test split (`_held_out`) -> weight each label by how well the other documents explain it
    (``noise_aware``, workflow/classify/noise.py) -> select a model and fit it on every other label (`_fit_model`)
    -> the test split gives the agreement metrics and the split-conformal threshold (`_conformal`), which never
    changes a predicted label. Why the test split also calibrates: benchmarks/README.md.

    ``trusted``: rows (human corrections) never down-weighted. ``representative``: the rows drawn at random when
    active selection chose the others; the test split and model selection's scores come from them.
    ``test_rows``: a fixed held-out split (`tnt update` keeps the old model's). ``unlabeled``: embedded documents
    without a label that join the final fit where the model is sure of them (`_self_train`).
    ``metrics["test_rows"]`` lists the held-out rows.
    """
    X, labels, yc, U = _check_inputs(X, y, test_size, alpha, unlabeled,
                                     representative=representative, test_rows=test_rows)
    notes: list[str] = []
    rep = None if representative is None else np.asarray(representative, dtype=bool)
    train_idx, test_idx = _held_out(yc, test_size, seed, rep, test_rows)
    if len(test_idx) == 0:
        notes.append("too little data for a held-out test split; test metrics are missing")
    trust = None if trusted is None else np.asarray(trusted, dtype=bool)[train_idx]
    fitted = _fit_model(X[train_idx], yc[train_idx], labels, algorithms=algorithms, seed=seed, calibrate=calibrate,
                        alpha=alpha, noise_aware=noise_aware, trusted=trust,
                        representative=None if rep is None else rep[train_idx], unlabeled=U, notes=notes)
    clf = fitted.clf
    test_proba = clf.predict_proba(X[test_idx])  # sets the threshold, and every held-out figure below
    _conformal(clf, test_proba, yc[test_idx], alpha, notes)
    return clf, _metrics(fitted, labels, yc, train_idx, test_idx, test_proba, rep, notes)


def _check_inputs(X: Any, y: Sequence[str], test_size: float, alpha: float | None, unlabeled: Any, *,
                  representative: Sequence[bool] | None, test_rows: Sequence[bool] | None,
                  ) -> tuple[np.ndarray, list[str], np.ndarray, np.ndarray | None]:
    """(X as a matrix, the sorted label names, y as codes into them, the unlabeled rows or None); ValueError on
    mismatched or non-finite input, TrainingError on fewer than two labels."""
    X = _as_matrix(X)
    y_str = np.array([str(v) for v in y], dtype=object)
    if len(y_str) != len(X):
        raise ValueError(f"X has {len(X)} rows but y has {len(y_str)} labels")
    if not np.isfinite(X).all():
        raise ValueError("X contains NaN or infinite values")
    labels = sorted(set(y_str.tolist()))
    if len(labels) < 2:
        raise TrainingError(f"need at least two distinct labels to train a classifier; got only {labels}")
    for name, mask in (("representative", representative), ("test_rows", test_rows)):
        if mask is not None and len(mask) != len(X):
            raise ValueError(f"X has {len(X)} rows but {name} has {len(mask)}")
    U = None if unlabeled is None or not len(unlabeled) else _as_matrix(unlabeled)
    if U is not None and (U.shape[1] != X.shape[1] or not np.isfinite(U).all()):
        raise ValueError(f"unlabeled rows must be finite and have X's {X.shape[1]} columns; got {U.shape[1]}")
    if not 0 < test_size < 1:
        raise ValueError(f"test_size must be in (0, 1), got {test_size}")
    if alpha is not None and not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1) or None, got {alpha}")
    codes = {lab: i for i, lab in enumerate(labels)}
    return X, labels, np.array([codes[v] for v in y_str], dtype=np.int64), U


def _held_out(yc: np.ndarray, test_size: float, seed: int, rep: np.ndarray | None,
              test_rows: Sequence[bool] | None) -> tuple[np.ndarray, np.ndarray]:
    """(training rows, held-out rows): ``test_rows`` when given (less any row whose label only held-out rows have),
    else a seeded stratified draw, from the randomly drawn rows when there are enough (they stand for the corpus)."""
    if test_rows is not None:
        held = np.asarray(test_rows, dtype=bool)
        held &= np.isin(yc, yc[~held])  # a label seen only in held-out rows could never be predicted
        return np.flatnonzero(~held), np.flatnonzero(held)
    if rep is not None and rep.sum() >= SELECTION_MIN_RANDOM_ROWS:
        _, test_idx = stratified_split(np.flatnonzero(rep), yc, test_size, seed)
        return np.setdiff1d(np.arange(len(yc)), test_idx), test_idx
    return stratified_split(np.arange(len(yc)), yc, test_size, seed)


@dataclass
class _Fitted:
    clf: TrainedClassifier
    best: _Candidate
    selection: str
    scores: dict[str, float | None]
    calibration: dict
    noise: Any  # the NoiseEstimate, or None when noise-aware training is off
    self_training: dict | None


def _fit_model(X: np.ndarray, y: np.ndarray, labels: list[str], *, algorithms: Sequence[str], seed: int,
               calibrate: bool, alpha: float | None, noise_aware: bool, trusted: np.ndarray | None,
               representative: np.ndarray | None, unlabeled: np.ndarray | None, notes: list[str]) -> _Fitted:
    """Noise weights, model selection, the final (calibrated) fit and self-training, on the training rows only."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", UserWarning)  # e.g. "least populated class" in tiny CV folds
        warnings.simplefilter("ignore", FitFailedWarning)  # a fold with one class scores NaN (error_score)
        noise = estimate_noise(X, y, seed=seed, trusted=trusted) if noise_aware else None
        weight = noise.weight if noise is not None and noise.skipped is None else None
        cands = _candidates(algorithms, y, seed, notes)
        best, scores, selection = _select(cands, X, y, seed, weight, representative)
        estimator, calibration = _fit(best, X, y, calibrate, weight)
        clf = TrainedClassifier(estimator, labels, best.algorithm, calibration["applied"], None, alpha)
        self_training = None
        if unlabeled is not None:
            clf, calibration, self_training = _self_train(clf, calibration, best, X, y, weight, unlabeled, calibrate)
    return _Fitted(clf, best, selection, scores, calibration, noise, self_training)


def _conformal(clf: TrainedClassifier, proba: np.ndarray, truth: np.ndarray, alpha: float | None,
               notes: list[str]) -> None:
    """Set the classifier's split-conformal threshold from the held-out rows (none when alpha is None)."""
    if alpha is None:
        return
    clf.conformal_threshold = split_conformal_threshold(proba, truth, alpha)
    if len(truth) < math.ceil(1 / alpha) - 1:
        notes.append(f"conformal: {len(truth)} held-out examples are too few to calibrate prediction sets "
                     f"at alpha={alpha}; threshold=1.0, so every prediction set holds all labels")


def _metrics(fitted: _Fitted, labels: list[str], yc: np.ndarray, train_idx: np.ndarray, test_idx: np.ndarray,
             test_proba: np.ndarray, rep: np.ndarray | None, notes: list[str]) -> dict[str, Any]:
    """What training reports: sizes, the selection, calibration, label noise and the held-out figures."""
    clf = fitted.clf
    metrics: dict[str, Any] = {
        "n_train": int(len(train_idx)),
        "n_test": int(len(test_idx)),
        "test_rows": sorted(int(i) for i in test_idx),
        "labels": labels,
        "train_label_counts": {labels[k]: int(v)
                               for k, v in enumerate(np.bincount(yc[train_idx], minlength=len(labels)))},
        "algorithm": fitted.best.algorithm,
        "model": fitted.best.name,
        "selection": fitted.selection,
        "candidate_scores": fitted.scores,
        "calibration": fitted.calibration,
        "notes": notes,
        "label_noise": fitted.noise.summary() if fitted.noise is not None else {"method": "none",
                                                                               "estimated_rate": None},
    }
    if fitted.self_training is not None:
        metrics["self_training"] = fitted.self_training
    metrics.update(_evaluate(clf, test_proba, yc[test_idx]))
    if rep is not None:  # all held-out rows when they were drawn from the random ones; else a part of the harder mix
        drawn = rep[test_idx]
        pred = [labels[i] for i in test_proba[drawn].argmax(axis=1)]
        metrics["random_rows"] = {"n": int(drawn.sum()),
                                  "accuracy": agreement([labels[i] for i in yc[test_idx][drawn]], pred)["accuracy"]}
    return metrics


def _self_train(clf: TrainedClassifier, calibration: dict, best: _Candidate, X: np.ndarray, y: np.ndarray,
                weight: np.ndarray | None, U: np.ndarray, calibrate: bool) -> tuple[TrainedClassifier, dict, dict]:
    """Refit the chosen model with the unlabeled documents it is sure of under the label it gives them: labels
    without a model call (self-training). Model selection is not redone, and the held-out rows never take part,
    so the held-out figures and the conformal threshold stay honest.

    Why: chosen or scarce labels (active selection, a new label in `tnt update`) show a label's border but little
    of its typical documents, which the unlabeled ones it already embedded show for free. Measured on BANKING77:
    see benchmarks/README.md (bench_active, bench_update)."""
    P = clf.predict_proba(U)
    sure = P.max(axis=1) >= SELF_TRAIN_MIN_PROBABILITY
    summary = {"unlabeled": int(len(U)), "added": int(sure.sum()), "min_probability": SELF_TRAIN_MIN_PROBABILITY}
    if not sure.any():
        return clf, calibration, summary
    X2 = np.vstack([X, U[sure]])
    y2 = np.concatenate([y, P[sure].argmax(axis=1)])
    w2 = None if weight is None else np.concatenate([weight, np.ones(int(sure.sum()))])
    estimator, calibration = _fit(best, X2, y2, calibrate, w2)
    refit = TrainedClassifier(estimator, clf.labels, best.algorithm, calibration["applied"], None, clf.alpha)
    return refit, calibration, summary


def _evaluate(clf: TrainedClassifier, proba: np.ndarray, truth: np.ndarray) -> dict:
    """Held-out agreement with the LLM labels, per-label scores, confusions and conformal stats, from the held-out
    rows' probabilities and label codes."""
    if not len(truth):
        return {"accuracy": None, "macro_f1": None, "cohen_kappa": None, "per_label": {},
                "confusion_top": [], "conformal": _conformal_summary(clf, None, None)}
    y = [clf.labels[i] for i in truth]
    pred = [clf.labels[i] for i in proba.argmax(axis=1)]
    agree = agreement(y, pred)
    p, r, f, s = precision_recall_fscore_support(y, pred, labels=clf.labels, zero_division=0)
    per_label = {
        lab: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
        for i, lab in enumerate(clf.labels)
    }
    cm = confusion_matrix(y, pred, labels=clf.labels)
    np.fill_diagonal(cm, 0)
    pairs = [(clf.labels[i], clf.labels[j], int(cm[i, j])) for i, j in zip(*np.nonzero(cm))]
    pairs.sort(key=lambda t: -t[2])
    return {
        "accuracy": agree["accuracy"],
        "macro_f1": agree["macro_f1"],
        "cohen_kappa": agree["cohen_kappa"],
        "per_label": per_label,
        "confusion_top": [{"true": t, "pred": q, "count": c} for t, q, c in pairs[:10]],
        "conformal": _conformal_summary(clf, proba, truth),
    }


def _conformal_summary(clf: TrainedClassifier, proba: np.ndarray | None, truth: np.ndarray | None) -> dict:
    """Set sizes under the threshold the classifier ships with; coverage cross-fitted, because that threshold was
    set on these same labels (each half of them calibrates a threshold that is scored on the other half)."""
    out: dict[str, Any] = {"alpha": clf.alpha, "threshold": clf.conformal_threshold}
    if clf.conformal_threshold is None or proba is None or truth is None or not len(truth):
        return out | {"coverage": None, "mean_set_size": None, "uncertain_share": None}
    sizes = ((1.0 - proba) <= clf.conformal_threshold).sum(axis=1)
    covered = np.zeros(len(truth), dtype=bool)
    halves = np.array_split(np.random.default_rng(0).permutation(len(truth)), 2)
    for cal, held in ((halves[0], halves[1]), (halves[1], halves[0])):
        t = split_conformal_threshold(proba[cal], truth[cal], clf.alpha)
        covered[held] = 1.0 - proba[held, truth[held]] <= t
    out["target_coverage"] = 1 - clf.alpha
    out["coverage"] = float(covered.mean())
    out["coverage_method"] = "cross-fitted on the held-out split (each half calibrates the other)"
    out["mean_set_size"] = float(sizes.mean())
    out["uncertain_share"] = float(np.mean(sizes != 1))
    out["empty_share"] = float(np.mean(sizes == 0))
    return out


# --------------------------------------------------------------------------- multi-label (one-vs-rest)

MULTI_LABEL_THRESHOLD = 0.5


def _ovr_factory(c: float, seed: int) -> Callable[[], Any]:
    from sklearn.multiclass import OneVsRestClassifier

    return lambda: OneVsRestClassifier(Pipeline([
        ("scale", StandardScaler()),
        ("model", LogisticRegression(C=c, class_weight="balanced", max_iter=2000, random_state=seed)),
    ]))


def train_multilabel(
    X: np.ndarray,
    label_sets: Sequence[Sequence[str]],
    *,
    seed: int = 0,
    test_size: float = 0.2,
) -> tuple[TrainedClassifier, dict]:
    """One-vs-rest logistic regression on label sets (a document may have several labels).

    C is chosen by micro-F1 on a validation split of the training part; a label is predicted when its probability
    reaches 0.5 (the top label always is). Metrics compare the predicted sets with the LLM's on a held-out split.
    """
    from sklearn.metrics import hamming_loss
    from sklearn.preprocessing import MultiLabelBinarizer

    X = _as_matrix(X)
    sets = [sorted({str(v) for v in s}) for s in label_sets]
    if len(sets) != len(X):
        raise ValueError(f"X has {len(X)} rows but there are {len(sets)} label sets")
    if any(not s for s in sets):
        raise ValueError("every document needs at least one label")
    counts = Counter(lab for s in sets for lab in s)
    labels = sorted(lab for lab, n in counts.items() if n >= 2)
    notes = [f"label {lab!r} has a single example; left out of the classifier" for lab, n in counts.items() if n < 2]
    if len(labels) < 2:
        raise TrainingError(f"need at least two labels with two examples each to train a classifier; got {labels}")
    Y = MultiLabelBinarizer(classes=labels).fit_transform([[lab for lab in s if lab in labels] for s in sets])
    primary = np.array([labels.index(next((lab for lab in s if lab in labels), labels[0])) for s in sets])
    train_idx, test_idx = stratified_split(np.arange(len(X)), primary, test_size, seed)
    grid = LOGREG_C_GRID if len(train_idx) >= 50 else (1.0,)
    scores: dict[str, float | None] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", UserWarning)  # "label not present in all training examples"
        if len(grid) > 1:
            fit_idx, val_idx = stratified_split(train_idx, primary, 0.2, seed + 1)
            for c in grid:
                est = _ovr_factory(c, seed)().fit(X[fit_idx], Y[fit_idx])
                pred = _indicator(est.predict_proba(X[val_idx]), MULTI_LABEL_THRESHOLD)
                scores[f"logreg-ovr(C={c:g})"] = float(f1_score(Y[val_idx], pred, average="micro", zero_division=0))
            best_c = max(grid, key=lambda c: scores[f"logreg-ovr(C={c:g})"])
        else:
            best_c = grid[0]
            scores[f"logreg-ovr(C={best_c:g})"] = None
        estimator = _ovr_factory(best_c, seed)().fit(X[train_idx], Y[train_idx])
    clf = TrainedClassifier(estimator, labels, "logreg-ovr", False, None, None, multi_label=True,
                            threshold=MULTI_LABEL_THRESHOLD)
    metrics: dict[str, Any] = {
        "multi_label": True, "threshold": MULTI_LABEL_THRESHOLD,
        "n_train": int(len(train_idx)), "n_test": int(len(test_idx)), "labels": labels,
        "train_label_counts": {lab: int(v) for lab, v in zip(labels, Y[train_idx].sum(axis=0))},
        "algorithm": "logreg-ovr", "model": f"logreg-ovr(C={best_c:g})",
        "selection": "holdout-validation (micro-F1)" if len(grid) > 1 else "single-candidate",
        "candidate_scores": scores, "calibration": {"applied": False, "reason": "one-vs-rest probabilities"},
        "notes": notes,
    }
    if not len(test_idx):
        notes.append("too little data for a held-out test split; test metrics are missing")
        return clf, metrics | {"accuracy": None, "macro_f1": None, "cohen_kappa": None, "per_label": {},
                               "confusion_top": [], "conformal": {"alpha": None, "uncertain_share": None}}
    P = clf.predict_proba(X[test_idx])
    pred = _indicator(P, MULTI_LABEL_THRESHOLD)
    Yt = Y[test_idx]
    p, r, f, s = precision_recall_fscore_support(Yt, pred, zero_division=0)
    top_in_set = Yt[np.arange(len(Yt)), P.argmax(axis=1)].astype(bool)
    metrics |= {
        "accuracy": float(top_in_set.mean()),  # the top predicted label is one of the LLM's labels
        "macro_f1": float(f1_score(Yt, pred, average="macro", zero_division=0)),
        "micro_f1": float(f1_score(Yt, pred, average="micro", zero_division=0)),
        "samples_f1": float(f1_score(Yt, pred, average="samples", zero_division=0)),
        "subset_accuracy": float((pred == Yt).all(axis=1).mean()),
        "hamming_loss": float(hamming_loss(Yt, pred)),
        "cohen_kappa": None,
        "label_cardinality": {"llm": float(Yt.sum(axis=1).mean()), "classifier": float(pred.sum(axis=1).mean())},
        "per_label": {lab: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
                      for i, lab in enumerate(labels)},
        "confusion_top": [],
        "conformal": {"alpha": None, "threshold": None,
                      "uncertain_share": float((P.max(axis=1) < MULTI_LABEL_THRESHOLD).mean())},
    }
    return clf, metrics


def _indicator(P: np.ndarray, threshold: float) -> np.ndarray:
    """The (n, k) 0/1 matrix of `sets_from_ovr`."""
    out = np.zeros(P.shape, dtype=int)
    for i, idx in enumerate(sets_from_ovr(P, threshold)):
        out[i, idx] = 1
    return out
