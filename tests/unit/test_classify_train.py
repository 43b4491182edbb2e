"""Distilled classifier training: accuracy on separable data, chance on noise, tiny data, conformal coverage."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from sklearn.datasets import make_blobs
from threadpoolctl import threadpool_limits

from workflow.classify.train import (
    LOGREG_C_GRID,
    SELF_TRAIN_MIN_PROBABILITY,
    TrainedClassifier,
    TrainingError,
    agreement,
    sets_from_proba,
    split_conformal_threshold,
    train_classifier,
)

DIM = 32  # production embeddings are 384-d; the code is dimension-agnostic and small dims keep tests fast


@pytest.fixture(autouse=True)
def _single_thread():
    """Tiny fits gain nothing from BLAS/OpenMP threads; spinning threads just fight other processes."""
    with threadpool_limits(1):
        yield


def blobs(n: int, k: int, *, std: float = 1.0, dim: int = DIM, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """Gaussian blobs projected onto the unit sphere, like L2-normalised sentence embeddings."""
    X, y = make_blobs(n_samples=n, n_features=dim, centers=k, cluster_std=std, random_state=seed)
    X = X / np.linalg.norm(X, axis=1, keepdims=True)
    return X.astype(np.float32), [f"L{i}" for i in y]


def assert_strict_json(metrics: dict) -> None:
    json.dumps(metrics, allow_nan=False)


def test_separable_data_is_learnt_well() -> None:
    X, y = blobs(600, 4, std=1.0)
    clf, m = train_classifier(X, y)
    assert_strict_json(m)
    assert isinstance(clf, TrainedClassifier) and clf.labels == ["L0", "L1", "L2", "L3"]
    assert m["algorithm"] == "logreg" and len(m["candidate_scores"]) == len(LOGREG_C_GRID)
    assert m["n_train"] + m["n_test"] == 600
    assert m["accuracy"] >= 0.95 and m["macro_f1"] >= 0.95 and m["cohen_kappa"] >= 0.93
    assert sum(v["support"] for v in m["per_label"].values()) == m["n_test"]
    assert m["calibration"]["applied"] is True
    labels, p = clf.predict(X[:10])
    assert labels == y[:10]
    proba = clf.predict_proba(X[:10])
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(p, proba.max(axis=1))


def test_shuffled_labels_are_near_chance() -> None:
    X, y = blobs(600, 4, std=1.0)
    y_shuffled = list(np.random.default_rng(1).permutation(y))
    _, m = train_classifier(X, y_shuffled)
    assert m["accuracy"] < 0.45  # chance is 0.25
    assert abs(m["cohen_kappa"]) < 0.2


def test_tiny_data_with_a_singleton_class() -> None:
    X, y = blobs(30, 3, std=2.0)
    y = ["A"] * 15 + ["B"] * 14 + ["C"]  # one class with a single example
    X = X + np.repeat(np.eye(3, DIM, dtype=np.float32) * 3, [15, 14, 1], axis=0)
    clf, m = train_classifier(X, y, algorithms=("logreg", "mlp"))
    assert_strict_json(m)
    assert clf.labels == ["A", "B", "C"]
    assert m["train_label_counts"]["C"] == 1  # the singleton stays in training
    assert m["n_test"] > 0 and m["per_label"]["C"]["support"] == 0
    assert m["calibration"]["applied"] is False and "smallest class" in m["calibration"]["reason"]
    # too few examples to calibrate conformal sets: they must be trivially valid (all labels)
    assert clf.conformal_threshold == 1.0
    assert all(s == ["A", "B", "C"] for s in clf.prediction_sets(X[:5]))
    assert any("conformal" in n for n in m["notes"])
    assert m["accuracy"] >= 0.8


def test_single_class_is_refused() -> None:
    X, _ = blobs(20, 2)
    with pytest.raises(TrainingError, match="need at least two distinct labels.*got only"):
        train_classifier(X, ["only"] * 20)


def test_bad_inputs_are_refused() -> None:
    X, y = blobs(40, 2)
    with pytest.raises(ValueError, match="rows"):
        train_classifier(X, y[:-1])
    with pytest.raises(ValueError, match="unknown algorithm"):
        train_classifier(X, y, algorithms=("svm",))


def test_conformal_coverage_matches_target() -> None:
    alpha = 0.1
    X, y = blobs(8000, 5, std=10.0, dim=16, seed=3)  # overlapping blobs: top-1 accuracy well below 1 - alpha
    clf, m = train_classifier(X[:4000], y[:4000], alpha=alpha)
    conf = m["conformal"]
    assert m["n_test"] >= 500 and "cross-fitted" in conf["coverage_method"]
    assert m["accuracy"] < 0.85  # otherwise coverage would be trivially high
    assert abs(conf["coverage"] - (1 - alpha)) <= 0.04
    assert conf["mean_set_size"] > 1 and 0 < conf["uncertain_share"] < 1
    # fresh, never-seen points from the same distribution
    sets = clf.prediction_sets(X[4000:])
    coverage = np.mean([t in s for t, s in zip(y[4000:], sets)])
    assert abs(coverage - (1 - alpha)) <= 0.03


def test_split_conformal_threshold_uses_finite_sample_quantile() -> None:
    s = np.random.default_rng(0).permutation(np.arange(1, 20) / 20)  # 19 scores 0.05 .. 0.95, unsorted
    proba = np.stack([1 - s, s], axis=1)  # true class is column 0, score = s
    # ceil((19 + 1) * 0.9) / 19 = 18/19 -> the 18th smallest score
    assert split_conformal_threshold(proba, np.zeros(19, dtype=int), 0.1) == pytest.approx(0.90)
    # 5 points cannot support alpha = 0.1: the quantile level exceeds 1 -> include every label
    assert split_conformal_threshold(proba[:5], np.zeros(5, dtype=int), 0.1) == 1.0
    sets = sets_from_proba(np.array([[0.95, 0.05], [0.5, 0.5], [0.05, 0.95]]), ["a", "b"], 0.5)
    assert sets == [["a"], ["a", "b"], ["b"]]


def test_agreement() -> None:
    assert agreement(list("aabb"), list("aabb")) == {"n": 4, "accuracy": 1.0, "macro_f1": 1.0, "cohen_kappa": 1.0}
    a = agreement(list("aabb"), list("abab"))
    assert a["accuracy"] == 0.5 and a["cohen_kappa"] == pytest.approx(0.0)
    assert agreement(list("aaa"), list("aaa"))["cohen_kappa"] is None  # undefined, not NaN
    with pytest.raises(ValueError):
        agreement(["a"], [])


def test_same_seed_same_model() -> None:
    X, y = blobs(200, 3, std=3.0)
    a, _ = train_classifier(X, y, seed=7)
    b, _ = train_classifier(X, y, seed=7)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))


def test_missing_lightgbm_is_skipped_with_a_note(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "lightgbm", None)  # makes `import lightgbm` raise ImportError
    X, y = blobs(120, 3)
    _, m = train_classifier(X, y, algorithms=("logreg", "lightgbm"))
    assert m["algorithm"] == "logreg"
    assert any("lightgbm" in n and "not installed" in n for n in m["notes"])
    with pytest.raises(TrainingError):
        train_classifier(X, y, algorithms=("lightgbm",))


def test_model_selection_across_algorithms() -> None:
    pytest.importorskip("lightgbm")
    X, y = blobs(300, 3, std=2.0)
    clf, m = train_classifier(X, y, algorithms=("logreg", "lightgbm", "mlp"))
    assert {"lightgbm", "mlp(256)", "logreg(C=1)"} <= set(m["candidate_scores"])
    assert m["candidate_scores"][m["model"]] == max(v for v in m["candidate_scores"].values() if v is not None)
    assert clf.algorithm in {"logreg", "lightgbm", "mlp"} and m["accuracy"] >= 0.9


def test_empty_batch_predicts_nothing() -> None:
    X, y = blobs(60, 2)
    clf, _ = train_classifier(X, y)
    labels, p = clf.predict(np.zeros((0, DIM), dtype=np.float32))
    assert labels == [] and p.shape == (0,) and clf.prediction_sets(np.zeros((0, DIM))) == []


def test_calibration_never_changes_the_winning_label_and_improves_log_loss() -> None:
    """Temperature scaling over the model fit on all the data: the same argmax as that model, better probabilities.
    (Per-class calibrators averaged over fold models re-ranked classes and cost accuracy on noisy labels.)"""
    from sklearn.metrics import log_loss

    X, y = blobs(2100, 8, std=3.0, seed=3)
    rng = np.random.default_rng(0)
    noisy = [f"L{rng.integers(8)}" if rng.random() < 0.3 else v for v in y]  # a teacher 30% wrong
    cal, m_cal = train_classifier(X[:1500], noisy[:1500], calibrate=True, seed=1)
    raw, m_raw = train_classifier(X[:1500], noisy[:1500], calibrate=False, seed=1)
    assert m_cal["calibration"] == {"applied": True, "method": "temperature", "folds": 3}
    assert m_cal["model"] == m_raw["model"]
    assert cal.predict(X)[0] == raw.predict(X)[0]
    new = slice(1500, None)  # documents neither model saw, labelled by the same teacher
    assert log_loss(noisy[new], cal.predict_proba(X[new]), labels=cal.labels) < \
        log_loss(noisy[new], raw.predict_proba(X[new]), labels=raw.labels)


def test_active_labels_score_model_selection_on_the_randomly_drawn_rows_only() -> None:
    X, y = blobs(500, 4, std=3.0, seed=5)
    rng = np.random.default_rng(0)
    drawn = np.zeros(500, dtype=bool)
    drawn[rng.choice(500, 150, replace=False)] = True
    # the chosen rows carry labels no model can predict: scored on them, every candidate is near chance
    y = [lab if keep else f"L{rng.integers(4)}" for lab, keep in zip(y, drawn)]
    _, plain = train_classifier(X, y, noise_aware=False)
    _, m = train_classifier(X, y, noise_aware=False, representative=drawn)
    assert "randomly drawn" not in plain["selection"] and "scored on the" in m["selection"]
    assert min(m["candidate_scores"].values()) > max(plain["candidate_scores"].values()) + 0.1
    # the test split is drawn from the randomly drawn rows alone: it stands for the corpus, every chosen row trains
    assert set(m["test_rows"]) <= set(np.flatnonzero(drawn).tolist()) and m["n_test"] == 30
    assert m["random_rows"] == {"n": 30, "accuracy": m["accuracy"]} and m["accuracy"] > plain["accuracy"] + 0.2
    # too few drawn rows to score on: every row scores and may be held out, and the figure is still reported
    few = drawn & (np.cumsum(drawn) <= 20)
    _, m = train_classifier(X, y, noise_aware=False, representative=few)
    assert "randomly drawn" not in m["selection"] and m["random_rows"]["n"] <= 20 < m["n_test"] == 100
    with pytest.raises(ValueError, match="representative"):
        train_classifier(X, y, representative=drawn[:-1])


def test_a_fixed_test_split_is_kept_and_a_label_only_it_has_trains() -> None:
    X, y = blobs(300, 3, std=1.0)
    y[0] = "only-here"  # a label no other row has: held out, it could never be predicted
    fixed = np.zeros(300, dtype=bool)
    fixed[:60] = True
    clf, m = train_classifier(X, y, test_rows=fixed)
    assert m["test_rows"] == list(range(1, 60)) and m["n_test"] == 59 and m["n_train"] == 241
    assert "only-here" in clf.labels and m["train_label_counts"]["only-here"] == 1
    _, drawn = train_classifier(X, y)
    assert drawn["test_rows"] != m["test_rows"] and len(drawn["test_rows"]) == drawn["n_test"]


def test_self_training_learns_from_the_unlabeled_documents_it_is_sure_of() -> None:
    """Scarce labels on overlapping blobs: the sure unlabeled documents join the final fit under the label the first
    fit gives them, the held-out split is untouched, and accuracy on fresh documents rises."""
    X, y = blobs(3000, 8, std=12.0, seed=3)
    y = np.array(y)
    lab, unl, fresh = np.arange(80), np.arange(80, 2000), np.arange(2000, 3000)
    plain, m0 = train_classifier(X[lab], y[lab])
    clf, m = train_classifier(X[lab], y[lab], unlabeled=X[unl])
    sure = int((plain.predict_proba(X[unl]).max(axis=1) >= SELF_TRAIN_MIN_PROBABILITY).sum())
    assert m["self_training"] == {"unlabeled": 1920, "added": sure, "min_probability": SELF_TRAIN_MIN_PROBABILITY}
    assert 0 < sure < 1920 and "self_training" not in m0
    assert m["test_rows"] == m0["test_rows"] and m["n_train"] == m0["n_train"] and clf.conformal_threshold is not None
    accuracy = [float(np.mean(np.array(c.predict(X[fresh])[0]) == y[fresh])) for c in (plain, clf)]
    assert accuracy[1] > accuracy[0] + 0.03, accuracy
    with pytest.raises(ValueError, match="columns"):
        train_classifier(X[lab], y[lab], unlabeled=X[unl, :5])
