"""Train a classifier on a run's stored labels: one path for the graph's train node and for `tnt train`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from workflow.classify.embed import get_embedder
from workflow.classify.train import TrainedClassifier, train_classifier, train_multilabel
from workflow.classify.vectors import embed_texts
from workflow.config import JobConfig
from workflow.store import Store


@dataclass
class Fitted:
    clf: TrainedClassifier
    metrics: dict[str, Any]
    embedding_model: str
    n_labeled: int


def fit_on_run(store: Store, run_id: str, corpus: str, config: JobConfig, *,
               algorithms: Sequence[str] | None = None, progress: bool = True) -> Fitted | None:
    """None when the run has no labeled documents yet. Human corrections win over LLM labels; a multi-label run
    trains one-vs-rest on label sets (``algorithms`` then does not apply). Raises TrainingError when the labels
    cannot train a classifier, EmbeddingUnavailable when the embedder cannot load."""
    multi = config.multi_label
    labels: dict[str, Any] = store.training_label_sets(run_id) if multi else store.training_labels(run_id)
    if not labels:
        return None
    doc_ids = sorted(labels)
    embedder = get_embedder(config.embedding_model)
    X = embed_texts(store, embedder, [d.text for d in store.documents(corpus, doc_ids)], progress=progress)
    y = [labels[d] for d in doc_ids]
    if multi:
        clf, metrics = train_multilabel(X, y, seed=config.seed, test_size=config.test_size)
    else:
        human = store.assignments(run_id, source="human")
        clf, metrics = train_single_label(X, y, config, algorithms=algorithms, trusted=[d in human for d in doc_ids])
    return Fitted(clf, metrics, embedder.name, len(labels))


def train_single_label(X: Any, y: Sequence[str], config: JobConfig, *,
                       algorithms: Sequence[str] | None = None,
                       noise_aware: bool | None = None,
                       trusted: Sequence[bool] | None = None) -> tuple[TrainedClassifier, dict[str, Any]]:
    """The product's single-label training with a job's settings (benchmarks call this too, so they measure it)."""
    return train_classifier(X, y, algorithms=tuple(algorithms or config.algorithms), seed=config.seed,
                            test_size=config.test_size,
                            noise_aware=config.noise_aware if noise_aware is None else noise_aware, trusted=trusted)
