"""A trained tnt classifier as a scikit-learn-style estimator on texts: ``predict(texts)``, ``predict_proba(texts)``,
``classes_``. It wraps the one serving path (:class:`workflow.classify.loader.ServingModel` plus the model's own
embedder), so it gives the same answers as ``tnt predict``, ``tnt serve`` and the DuckDB function.

Load it from an exported artifact without any database (``load_classifier("artifact/")``) or from a run
(``run.classifier()``).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from workflow.classify.loader import ServingModel, from_artifact


def _texts(texts: Iterable[str] | str) -> list[str]:
    """A list of strings from a list, tuple, array or pandas Series; a bare string is one text, not characters."""
    if isinstance(texts, str):
        raise TypeError("pass a list of texts, e.g. clf.predict([text]), not a single string")
    out = list(texts)
    bad = [i for i, t in enumerate(out) if not isinstance(t, str)]
    if bad:
        raise TypeError(f"texts must be strings; item {bad[0]} is {type(out[bad[0]]).__name__}")
    return out


class TextClassifier:
    """The distilled classifier of a run, applied to raw texts.

    Learned state follows scikit-learn's naming: ``classes_`` (label ids, the columns of ``predict_proba``),
    ``label_names_`` (aligned with ``classes_``), ``taxonomy_`` (records with ids, names, descriptions, parents),
    ``embedding_model_`` and ``version_`` (the model id).

    Example::

        clf = load_classifier("artifacts/support-v1")
        clf.predict(["my card has not arrived yet"])        # array(['L3'], dtype=object)
        clf.predict_frame(["my card has not arrived yet"])  # label id, name, probability, uncertain
    """

    def __init__(self, model: ServingModel, embedder: Any | None = None):
        self._model = model
        self._embedder = embedder  # built on first use: loading a classifier should not load the embedder too
        self.classes_ = np.array(model.labels, dtype=object)
        self.label_names_ = list(model.label_names)
        self.taxonomy_ = list(model.taxonomy)
        self.embedding_model_ = model.embedding_model
        self.version_ = model.version
        self.metrics_ = dict(model.metrics)

    @classmethod
    def load(cls, path: str | Path) -> TextClassifier:
        """An exported artifact directory (``tnt export`` / ``Run.export``); checksums and skops types are checked."""
        return cls(from_artifact(path))

    def __repr__(self) -> str:
        return f"TextClassifier({self.version_!r}, {len(self.classes_)} classes, embeddings {self.embedding_model_!r})"

    def embed(self, texts: Iterable[str]) -> np.ndarray:
        """The texts' embeddings with the model's own embedder (what the classifier was trained on)."""
        from workflow.classify.embed import get_embedder

        if self._embedder is None:
            self._embedder = get_embedder(self.embedding_model_)
        items = _texts(texts)
        if not items:
            return np.zeros((0, 0), dtype=np.float32)
        return self._embedder.embed(items)

    def predict_proba(self, texts: Iterable[str]) -> np.ndarray:
        """(n_texts, n_classes) probabilities; columns follow ``classes_``."""
        X = self.embed(texts)
        return self._model.proba(X) if len(X) else np.zeros((0, len(self.classes_)))

    def predict(self, texts: Iterable[str]) -> np.ndarray:
        """One label id per text (a multi-label model gives its top label; ``predict_frame`` gives every label)."""
        X = self.embed(texts)
        if not len(X):
            return np.array([], dtype=object)
        idx = self._model.classify(X)[0]
        return self.classes_[idx]

    def predict_frame(self, texts: Iterable[str]) -> pd.DataFrame:
        """A row per text: text, label_id, label (name), probability, uncertain (the conformal set is not one
        label), plus parent_id/parent for a two-level taxonomy and label_ids for a multi-label model."""
        items = _texts(texts)
        X = self.embed(items)
        records = self._model.records(X) if len(X) else []
        frame = pd.DataFrame.from_records(records)
        if frame.empty:
            frame = pd.DataFrame(columns=["label_id", "label_name", "probability", "uncertain"])
        frame.insert(0, "text", items)
        return frame.rename(columns={"label_name": "label", "parent_name": "parent"})

    def score(self, texts: Iterable[str], y: Iterable[str]) -> float:
        """Accuracy of ``predict(texts)`` against label ids ``y`` (scikit-learn's ClassifierMixin.score)."""
        truth = np.asarray(list(y), dtype=object)
        predicted = self.predict(texts)
        if len(truth) != len(predicted):
            raise ValueError(f"{len(predicted)} texts but {len(truth)} labels")
        return float((predicted == truth).mean()) if len(truth) else float("nan")


def load_classifier(path: str | Path) -> TextClassifier:
    """A classifier exported with ``tnt export`` or ``Run.export``; needs no database and no LLM."""
    return TextClassifier.load(path)
