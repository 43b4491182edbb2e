"""Noise-aware training: confident learning finds flipped labels on separable clusters and the classifier recovers."""

from __future__ import annotations

import sys

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


@pytest.mark.parametrize("cleanlab", [True, False], ids=["cleanlab", "own-confident-joint"])
def test_flipped_labels_are_found_and_the_rate_is_estimated(cleanlab: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if cleanlab:
        pytest.importorskip("cleanlab")
    else:
        monkeypatch.setitem(sys.modules, "cleanlab.filter", None)  # import fails: the fallback is used
    X, _, noisy, flipped = flipped_blobs(800, 5, 0.2)
    est = estimate_noise(X, noisy, seed=0)
    assert est.skipped is None and ("cleanlab" in est.method) == cleanlab
    recall = (est.suspect & flipped).sum() / flipped.sum()
    precision = (est.suspect & flipped).sum() / est.suspect.sum()
    assert recall >= 0.9 and precision >= 0.9, (recall, precision)
    assert abs(est.suspect.mean() - 0.2) < 0.05
    assert np.median(est.weight[flipped]) < 0.3 < np.median(est.weight[~flipped])  # flipped labels count less
    assert est.weight.min() >= 0.05 and est.weight.max() <= 1.0
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
    assert est.skipped and (est.weight == 1).all() and est.summary()["estimated_rate"] is None
    assert "not estimated (too little data" in label_noise_line(est.summary())


def test_a_rare_label_does_not_stop_the_estimate_and_keeps_its_examples() -> None:
    X, _, noisy, flipped = flipped_blobs(800, 5, 0.2)
    noisy = noisy.copy()
    noisy[:2] = 5  # a sixth label with two documents (too rare to judge)
    est = estimate_noise(X, noisy, seed=0)
    assert est.skipped is None and (est.weight[:2] == 1).all()
    assert (est.suspect & flipped).sum() / flipped.sum() >= 0.85


def _systematic_flip_accuracies(seed: int) -> tuple[dict[str, float], dict]:
    X, y, _, _ = flipped_blobs(900, 6, 0.0, std=6.0, seed=seed)
    Xt, yt, _, _ = flipped_blobs(3000, 6, 0.0, std=6.0, seed=seed)  # same centers (same random_state)
    rng = np.random.default_rng(0)
    noisy = y.copy()
    for a in range(6):
        members = np.flatnonzero(y == a)
        noisy[rng.choice(members, int(0.3 * len(members)), replace=False)] = (a + 1) % 6
    accs = {}
    for name, labels, aware in (("clean", y, False), ("plain", noisy, False), ("aware", noisy, True)):
        clf, m = train_classifier(X, [f"L{v}" for v in labels], noise_aware=aware, calibrate=False)
        pred, _ = clf.predict(Xt)
        accs[name] = float(np.mean([p == f"L{t}" for p, t in zip(pred, yt)]))
    return accs, m


def test_noise_aware_training_recovers_accuracy_on_clean_labels() -> None:
    """30% of every class relabelled as the next class (systematic, the kind that moves a boundary): plain training
    loses accuracy on the true labels of fresh points from the same clusters, noise-aware training recovers it."""
    accs, m = _systematic_flip_accuracies(seed=1)
    assert m["label_noise"]["estimated_rate"] == pytest.approx(0.3, abs=0.06)
    assert accs["plain"] < accs["clean"] - 0.02, accs  # the noise does hurt here
    assert accs["aware"] >= accs["clean"] - 0.015, accs  # and is averaged away (0.989 against 1.0)


@pytest.mark.xfail(strict=True, reason="known limitation: on some draws of this systematic 30% noise, CV on the "
                   "noisy labels picks C=0.3 for the weighted fit, which then does worse than plain training "
                   "(0.876 vs 0.933 here; seeds 1, 4, 5 recover to 0.99)")
def test_noise_aware_training_is_never_worse_than_plain_under_systematic_noise() -> None:
    accs, _ = _systematic_flip_accuracies(seed=2)
    assert accs["aware"] >= accs["plain"], accs


def test_trusted_rows_keep_full_weight() -> None:
    """A human correction wins: even a row that looks mislabeled stays in the fit when it is trusted."""
    X, _, noisy, flipped = flipped_blobs(800, 5, 0.2)
    trusted = flipped.copy()
    trusted[np.flatnonzero(flipped)[10:]] = False  # ten flipped rows are "human" labels
    est = estimate_noise(X, noisy, seed=0, trusted=trusted)
    assert est.suspect[trusted].sum() >= 8  # still counted as suspects in the estimate
    assert (est.weight[trusted] == 1).all()
    assert np.median(est.weight[flipped & ~trusted]) < 0.3


def test_run_summary_reports_the_estimated_label_noise(corpus, db, new_run, capsys) -> None:
    """`tnt run`'s closing summary has one line on the LLM labels' estimated noise, read from the stored model."""
    from workflow.cli import print_summary
    from workflow.runner import execute
    from workflow.store import Store

    with Store(db) as store:
        run_id = new_run(store, corpus, label_sample=100)
        assert execute(store, run_id, show_progress=False).status == "done"
        noise = store.model(run_id=run_id)["metrics"]["label_noise"]
        capsys.readouterr()
        print_summary(store, run_id)
    text = " ".join(capsys.readouterr().out.split())
    assert "estimated label noise of the LLM labels:" in text
    if noise["estimated_rate"] is None:
        assert "not estimated (" in text
    else:
        assert f"{noise['estimated_rate']:.1%}" in text and f"of {noise['n']} training labels look wrong" in text


def test_a_right_label_between_two_classes_keeps_most_of_its_weight() -> None:
    """Documents between two classes, labeled with the side they are on: the other documents explain their label
    about as well as the neighbouring one. They must not count like the flipped labels, whose given label is far
    from the best."""
    from workflow.classify.noise import confidence_weights

    rng = np.random.default_rng(0)
    a, b = np.zeros(DIM), np.zeros(DIM)
    a[0], b[1] = 1.0, 1.0
    X = np.concatenate([a + rng.normal(0, 0.25, (150, DIM)), b + rng.normal(0, 0.25, (150, DIM)),
                        (a + b) / 2 + rng.normal(0, 0.05, (40, DIM))]).astype(np.float32)
    y = (X[:, 0] < X[:, 1]).astype(int)  # every label is right: the side of the boundary it is on
    flipped = np.zeros(len(y), dtype=bool)
    flipped[rng.choice(300, 30, replace=False)] = True  # wrong labels among the clear-cut documents only
    noisy = np.where(flipped, 1 - y, y)
    est = estimate_noise(X, noisy, seed=0)
    boundary = np.arange(len(y)) >= 300
    assert np.median(est.weight[boundary]) > 0.9  # against the class self-confidence they counted ~0.7
    assert np.median(est.weight[flipped]) < 0.3
    proba = np.array([[0.45, 0.40, 0.15], [0.02, 0.70, 0.28]])
    assert confidence_weights(proba, np.array([1, 0])).round(3).tolist() == [0.889, 0.05]
