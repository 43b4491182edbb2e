"""Noise-aware training: confident learning finds flipped labels on separable clusters and the classifier recovers."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import make_blobs
from threadpoolctl import threadpool_limits

from workflow.classify.noise import estimate_noise, label_noise_line
from workflow.classify.train import train_classifier

DIM = 32


@pytest.fixture(autouse=True)
def _single_thread():
    with threadpool_limits(1):
        yield


def flipped_blobs(n: int, k: int, rate: float, *, std: float = 2.0, seed: int = 0):
    """Separable clusters on the unit sphere; `rate` of the labels replaced by a different class."""
    X, y = make_blobs(n_samples=n, n_features=DIM, centers=k, cluster_std=std, random_state=seed)
    X = (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32)
    rng = np.random.default_rng(seed)
    flipped = np.zeros(n, dtype=bool)
    flipped[rng.choice(n, size=int(rate * n), replace=False)] = True
    noisy = y.copy()
    noisy[flipped] = (y[flipped] + rng.integers(1, k, size=flipped.sum())) % k
    return X, y, noisy, flipped


def test_flipped_labels_are_found_and_the_rate_is_estimated() -> None:
    X, _, noisy, flipped = flipped_blobs(800, 5, 0.2)
    est = estimate_noise(X, noisy, seed=0)
    assert est.skipped is None
    recall = (est.suspect & flipped).sum() / flipped.sum()
    precision = (est.suspect & flipped).sum() / est.suspect.sum()
    assert recall >= 0.9 and precision >= 0.9, (recall, precision)
    assert abs(est.suspect.mean() - 0.2) < 0.05
    assert not est.keep[est.suspect].any()  # no class lost more than half, so every suspect is dropped
    summary = est.summary()
    assert summary["flagged"] == est.suspect.sum() and summary["n"] == 800
    assert "20" in label_noise_line(summary) or "19" in label_noise_line(summary) or "21" in label_noise_line(summary)


def test_clean_labels_are_barely_flagged() -> None:
    X, y, _, _ = flipped_blobs(600, 4, 0.0, std=1.0)
    est = estimate_noise(X, y, seed=0)
    assert est.suspect.mean() < 0.03


def test_too_little_data_is_skipped_not_guessed() -> None:
    X, _, noisy, _ = flipped_blobs(30, 3, 0.2)
    est = estimate_noise(X, noisy)
    assert est.skipped and est.keep.all() and est.summary()["estimated_rate"] is None
    assert "not estimated (too little data" in label_noise_line(est.summary())


def test_a_rare_label_does_not_stop_the_estimate_and_keeps_its_examples() -> None:
    X, _, noisy, flipped = flipped_blobs(800, 5, 0.2)
    noisy = noisy.copy()
    noisy[:2] = 5  # a sixth label with two documents (too rare to judge)
    est = estimate_noise(X, noisy, seed=0)
    assert est.skipped is None and est.keep[:2].all()
    assert (est.suspect & flipped).sum() / flipped.sum() >= 0.85


def test_noise_aware_training_recovers_accuracy_on_clean_labels() -> None:
    """Trained on 30% flipped labels, scored against the true labels of fresh points from the same clusters."""
    X, _, noisy, _ = flipped_blobs(900, 6, 0.3, std=3.0, seed=1)
    Xt, yt, _, _ = flipped_blobs(3000, 6, 0.0, std=3.0, seed=1)  # same centers (same random_state), clean labels
    labels = [f"L{v}" for v in noisy]
    accs = {}
    for aware in (False, True):
        clf, m = train_classifier(X, labels, noise_aware=aware, calibrate=False)
        pred, _ = clf.predict(Xt)
        accs[aware] = float(np.mean([p == f"L{t}" for p, t in zip(pred, yt)]))
    assert m["label_noise"]["estimated_rate"] == pytest.approx(0.3, abs=0.06)
    assert accs[True] >= 0.9, accs
    assert accs[True] >= accs[False] - 0.005, accs


def test_trusted_rows_are_never_dropped() -> None:
    """A human correction wins: even a row that looks mislabeled stays in the fit when it is trusted."""
    X, _, noisy, flipped = flipped_blobs(800, 5, 0.2)
    trusted = flipped.copy()
    trusted[np.flatnonzero(flipped)[10:]] = False  # ten flipped rows are "human" labels
    est = estimate_noise(X, noisy, seed=0, trusted=trusted)
    assert est.suspect[trusted].sum() >= 8  # still counted as suspects in the estimate
    assert est.keep[trusted].all()
    assert not est.keep[flipped & ~trusted & est.suspect].any()
