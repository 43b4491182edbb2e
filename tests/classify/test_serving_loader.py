"""The serving model: the folded-weights fast path must give sklearn's probabilities, for every model shape."""

from __future__ import annotations

import numpy as np
import pytest

from workflow.classify.loader import ModelNotFound, ServingModel, from_artifact, from_store, linear_heads, load_model
from workflow.classify.train import train_classifier
from workflow.store import Store


def blobs(k: int, n: int, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(k, 16))
    y = rng.integers(0, k, n)
    return (centers[y] + rng.normal(size=(n, 16)) * 1.5).astype(np.float32), [f"L{i}" for i in y]


@pytest.mark.parametrize("k,n,calibrate", [(5, 600, True), (5, 200, False), (2, 400, True), (2, 120, False)])
def test_linear_fast_path_matches_sklearn(k, n, calibrate):
    X, y = blobs(k, n)
    clf, _ = train_classifier(X, y, calibrate=calibrate)
    model = ServingModel(clf, clf.labels, "e", "v", [])
    assert model.heads is not None
    np.testing.assert_allclose(model.proba(X), clf.predict_proba(X), atol=1e-5)
    idx, prob, unc = model.classify(X)
    labels, probs = clf.predict(X)
    assert [clf.labels[i] for i in idx] == labels
    sets = clf.prediction_sets(X)
    # a calibration example sits exactly on the threshold; float noise may put it either side
    on_edge = (np.abs((1 - clf.predict_proba(X)) - clf.conformal_threshold) < 1e-6).any(axis=1)
    assert on_edge.sum() <= 2
    assert unc[~on_edge].tolist() == [len(s) != 1 for s, e in zip(sets, on_edge) if not e]


def test_other_models_fall_back_to_the_estimator():
    X, y = blobs(3, 150)
    clf, _ = train_classifier(X, y, algorithms=("mlp",), calibrate=False)
    assert linear_heads(clf) is None
    model = ServingModel(clf, clf.labels, "e", "v", [])
    np.testing.assert_allclose(model.proba(X), clf.predict_proba(X))


def test_store_and_artifact_load_the_same_model(trained, artifact):
    with Store(trained.db) as store:
        a = from_store(store, trained.model_id)
        by_run = load_model(trained.run_id, store)
        with pytest.raises(ModelNotFound, match="no stored model or run"):
            load_model("nope", store)
    b = from_artifact(artifact)
    assert a.labels == b.labels == by_run.labels and a.label_names == b.label_names
    assert a.version == b.version == trained.model_id
    X = np.random.default_rng(1).normal(size=(50, 384)).astype(np.float32)
    np.testing.assert_array_equal(a.proba(X), b.proba(X))
