"""Classifier serialisation: skops round-trips, allow-listed types only, sha256-verified artifacts, no pickle."""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import make_blobs
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer
from threadpoolctl import threadpool_limits

from workflow.classify.export import (
    ArtifactError,
    classifier_from_bytes,
    classifier_to_bytes,
    load_artifact,
    write_artifact,
)
from workflow.classify.train import TrainedClassifier, train_classifier

TAXONOMY = [
    {"label_id": "L0", "name": "Billing", "description": "Invoices | refunds"},
    {"label_id": "L1", "name": "Bugs", "description": "Something is broken"},
    {"id": "L2", "name": "Feature requests", "description": None},
]
MODEL_FILES = {"model.skops", "manifest.json", "taxonomy.json", "metrics.json", "README.md"}


@pytest.fixture(autouse=True)
def _single_thread():
    """Tiny fits gain nothing from BLAS/OpenMP threads; spinning threads just fight other processes."""
    with threadpool_limits(1):
        yield


def blobs(n: int = 300, k: int = 3, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    X, y = make_blobs(n_samples=n, n_features=16, centers=k, cluster_std=3.0, random_state=seed)
    X = X / np.linalg.norm(X, axis=1, keepdims=True)
    return X.astype(np.float32), [f"L{i}" for i in y]


@pytest.fixture(scope="module")
def trained() -> tuple[TrainedClassifier, dict, np.ndarray]:
    X, y = blobs()
    clf, metrics = train_classifier(X, y)
    return clf, metrics, X


def write(tmp_path: Path, trained, **kw) -> Path:
    clf, metrics, _ = trained
    args = dict(taxonomy=TAXONOMY, embedding_model="minilm-int8", metrics=metrics, run_id="run-1", model_id="m-1")
    return write_artifact(tmp_path / "artifact", clf, **(args | kw))


def test_bytes_round_trip_is_exact(trained) -> None:
    clf, _, X = trained
    back = classifier_from_bytes(classifier_to_bytes(clf))
    np.testing.assert_array_equal(back.predict_proba(X), clf.predict_proba(X))
    assert back.predict(X)[0] == clf.predict(X)[0]
    assert back.prediction_sets(X) == clf.prediction_sets(X)
    assert (back.labels, back.algorithm, back.calibrated, back.conformal_threshold, back.alpha) == (
        clf.labels, clf.algorithm, clf.calibrated, clf.conformal_threshold, clf.alpha)


@pytest.mark.parametrize("algorithm", ["mlp", "lightgbm"])
def test_other_algorithms_round_trip(algorithm: str) -> None:
    if algorithm == "lightgbm":
        pytest.importorskip("lightgbm")
    X, y = blobs(120)
    clf, _ = train_classifier(X, y, algorithms=(algorithm,))
    back = classifier_from_bytes(classifier_to_bytes(clf))
    np.testing.assert_array_equal(back.predict_proba(X), clf.predict_proba(X))


def test_untrusted_type_is_refused() -> None:
    # A classic attack: a "model" whose pipeline calls os.system on its input.
    evil = Pipeline([("x", FunctionTransformer(os.system)), ("m", LogisticRegression())])
    data = classifier_to_bytes(TrainedClassifier(evil, ["a", "b"], "logreg", False, None, None))
    with pytest.raises(ArtifactError, match="untrusted types.*system"):
        classifier_from_bytes(data)


def test_garbage_bytes_are_refused() -> None:
    with pytest.raises(ArtifactError):
        classifier_from_bytes(b"\x80\x04not a skops file")


def test_artifact_round_trip(tmp_path: Path, trained) -> None:
    clf, metrics, X = trained
    out = write(tmp_path, trained)
    assert {p.name for p in out.iterdir()} == MODEL_FILES
    loaded, manifest, taxonomy = load_artifact(out)
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    assert loaded.prediction_sets(X[:20]) == clf.prediction_sets(X[:20])
    assert manifest["labels"] == clf.labels and manifest["model_id"] == "m-1" and manifest["run_id"] == "run-1"
    assert manifest["embedding_model"] == "minilm-int8" and manifest["embedding_dim"] == 16
    assert manifest["format_version"] == 1 and manifest["tnt_version"] and manifest["created_at"]
    assert [t["label_id"] for t in taxonomy] == ["L0", "L1", "L2"] and taxonomy[2]["description"] == ""
    written = json.loads((out / "metrics.json").read_text())
    assert written["accuracy"] == metrics["accuracy"]
    assert "test_rows" in metrics and "test_rows" not in written  # no rows or corpus ids of the run's documents
    card = (out / "README.md").read_text()
    assert "Feature requests" in card and "Invoices \\| refunds" in card
    assert "pseudo-labels" in card and "load_artifact" in card
    assert "self-training" not in card  # trained on labels alone
    self_trained = {**metrics, "self_training": {"unlabeled": 50, "added": 40, "min_probability": 0.7}}
    card = (write(tmp_path / "st", trained, metrics=self_trained) / "README.md").read_text()
    assert "- self-training: 40 unlabeled documents joined the fit" in card


def test_no_pickle_anywhere(tmp_path: Path, trained) -> None:
    out = write(tmp_path, trained)
    assert not [p for p in out.rglob("*") if p.suffix in {".pkl", ".pickle", ".joblib"}]
    with zipfile.ZipFile(out / "model.skops") as zf:
        for name in zf.namelist():
            assert name.endswith((".json", ".npy")), name
            if name.endswith(".npy"):
                np.load(io.BytesIO(zf.read(name)), allow_pickle=False)  # raises on pickled object arrays


def test_tampered_model_fails_sha_check(tmp_path: Path, trained) -> None:
    out = write(tmp_path, trained)
    data = bytearray((out / "model.skops").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (out / "model.skops").write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="sha256"):
        load_artifact(out)


def test_swapped_model_fails_sha_check(tmp_path: Path, trained) -> None:
    out = write(tmp_path, trained)
    X, y = blobs(seed=5)
    other, _ = train_classifier(X, y)
    (out / "model.skops").write_bytes(classifier_to_bytes(other))  # a valid model, but not this one
    with pytest.raises(ArtifactError, match="sha256"):
        load_artifact(out)


def test_refuses_to_overwrite_unless_asked(tmp_path: Path, trained) -> None:
    write(tmp_path, trained)
    with pytest.raises(ArtifactError, match="not empty"):
        write(tmp_path, trained, model_id="m-2")
    out = write(tmp_path, trained, model_id="m-2", overwrite=True)
    assert load_artifact(out)[1]["model_id"] == "m-2"


def test_taxonomy_must_cover_the_labels(tmp_path: Path, trained) -> None:
    with pytest.raises(ValueError, match="missing from the taxonomy"):
        write(tmp_path, trained, taxonomy=TAXONOMY[:2])
    assert not (tmp_path / "artifact").exists()


def test_other_label_needs_no_taxonomy_entry(tmp_path: Path) -> None:
    X, y = blobs(150)
    y = ["other" if v == "L2" else v for v in y]
    clf, m = train_classifier(X, y)
    out = write_artifact(tmp_path / "a", clf, taxonomy=TAXONOMY[:2], embedding_model="e", metrics=m,
                         run_id="r", model_id="m")
    assert load_artifact(out)[0].labels == ["L0", "L1", "other"]
