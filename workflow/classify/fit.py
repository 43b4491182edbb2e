"""Train a classifier on a run's stored labels: one path for the graph's train node and for `tnt train`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from workflow.classify.embed import get_embedder
from workflow.classify.train import TrainedClassifier, train_classifier, train_multilabel
from workflow.classify.vectors import embed_documents
from workflow.config import JobConfig
from workflow.store import Store


@dataclass
class Fitted:
    clf: TrainedClassifier
    metrics: dict[str, Any]
    embedding_model: str
    n_labeled: int


def fit_on_run(store: Store, run_id: str, corpus: str, config: JobConfig, *,
               algorithms: Sequence[str] | None = None, progress: bool = True,
               held_out: Sequence[str] | None = None, unlabeled: Sequence[str] | None = None) -> Fitted | None:
    """None when the run has no labeled documents yet. Human corrections win over LLM labels; a multi-label run
    trains one-vs-rest on label sets (``algorithms`` then does not apply). Raises TrainingError when the labels
    cannot train a classifier, EmbeddingUnavailable when the embedder cannot load.

    ``held_out``: the documents that form the test split instead of a seeded draw (`tnt update` keeps the old
    model's, so old and new are compared on the same documents and every document it labels trains). A
    single-label model's held-out ids go into ``metrics["held_out_ids"]``: drift baselines and later updates
    read them there (`held_out_ids`).

    ``unlabeled``: documents without a label that a single-label model learns from where it is sure of them
    (self-training, `train_classifier(unlabeled=...)`); `tnt update` passes the new documents it did not label.
    None: an active run's candidate pool (embedded already to choose the rounds); a random run embeds only what
    it labels, so it has none."""
    multi = config.multi_label
    labels: dict[str, Any] = store.training_label_sets(run_id) if multi else store.training_labels(run_id)
    if not labels:
        return None
    doc_ids = sorted(labels)
    X = embed_documents(store, corpus, doc_ids, config.embedding_model, progress=progress)
    y = [labels[d] for d in doc_ids]
    if multi:
        clf, metrics = train_multilabel(X, y, seed=config.seed, test_size=config.test_size)
    else:
        human = store.assignments(run_id, source="human")
        fixed = None if held_out is None else set(held_out)
        drawn = drawn_at_random(store, run_id, doc_ids)
        if unlabeled is None and drawn is not None:
            from workflow.graph.selection import candidate_pool

            unlabeled = candidate_pool(store, corpus, config, set(store.sample_rounds(run_id, 2)))
        extra = [d for d in dict.fromkeys(unlabeled or []) if d not in labels]
        U = embed_documents(store, corpus, extra, config.embedding_model, progress=progress) if extra else None
        clf, metrics = train_single_label(X, y, config, algorithms=algorithms, trusted=[d in human for d in doc_ids],
                                          representative=drawn,
                                          test_rows=None if fixed is None else [d in fixed for d in doc_ids],
                                          unlabeled=U)
        metrics["held_out_ids"] = [doc_ids[i] for i in metrics.pop("test_rows")]
    return Fitted(clf, metrics, get_embedder(config.embedding_model).name, len(labels))


def train_single_label(X: Any, y: Sequence[str], config: JobConfig, *,
                       algorithms: Sequence[str] | None = None,
                       noise_aware: bool | None = None,
                       trusted: Sequence[bool] | None = None,
                       representative: Sequence[bool] | None = None,
                       test_rows: Sequence[bool] | None = None,
                       unlabeled: Any = None) -> tuple[TrainedClassifier, dict[str, Any]]:
    """The product's single-label training with a job's settings (benchmarks call this too, so they measure it)."""
    return train_classifier(X, y, algorithms=tuple(algorithms or config.algorithms), seed=config.seed,
                            test_size=config.test_size,
                            noise_aware=config.noise_aware if noise_aware is None else noise_aware, trusted=trusted,
                            representative=representative, test_rows=test_rows, unlabeled=unlabeled)


def drawn_at_random(store: Store, run_id: str, doc_ids: Sequence[str]) -> list[bool] | None:
    """Which labeled documents were drawn at random (the seed round 0), when active selection chose the others;
    None when there were no chosen rounds (every document is then a random draw, or was added by `tnt update`)."""
    rounds = store.sample_rounds(run_id, 2)
    if not any(r is not None and r > 0 for r in rounds.values()):
        return None
    return [rounds.get(d) == 0 for d in doc_ids]


def held_out_ids(store: Store, run_id: str, config: JobConfig, model_id: str | None = None) -> list[str]:
    """The documents a run's model (the latest, or ``model_id``) holds out as its test split (single-label runs):
    the ids stored with it, or for a model trained before they were stored, the same sorted ids, labels and seeded
    split that `train_classifier` draws. Empty when there is no test split."""
    import numpy as np

    from workflow.classify.train import stratified_split

    row = store.model(model_id) if model_id else store.latest_model(run_id)
    stored = (row or {}).get("metrics", {}).get("held_out_ids")
    if stored is not None:
        return sorted(stored)
    labels = store.training_labels(run_id)
    doc_ids = sorted(labels)
    if not doc_ids:
        return []
    names = sorted({str(v) for v in labels.values()})
    codes = {lab: i for i, lab in enumerate(names)}
    yc = np.array([codes[str(labels[d])] for d in doc_ids], dtype=np.int64)
    _, held = stratified_split(np.arange(len(yc)), yc, config.test_size, config.seed)
    return [doc_ids[i] for i in sorted(held.tolist())]
