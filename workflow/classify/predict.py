"""Apply a stored classifier to a whole corpus in batches: constant memory, cached embeddings, one row per doc."""

from __future__ import annotations

from workflow.classify.embed import get_embedder
from workflow.classify.export import classifier_from_bytes
from workflow.classify.vectors import embed_texts
from workflow.progress import progress_bar
from workflow.store import Store

UNCERTAIN = "uncertain"


def predict_corpus(store: Store, model_id: str, corpus: str, run_id: str, *, batch_size: int = 2048,
                   show_progress: bool = True) -> int:
    model = store.model(model_id)
    clf = classifier_from_bytes(model["artifact"])
    embedder = get_embedder(model["embedding_model"])
    total = store.corpus_size(corpus)
    n = 0
    with progress_bar("predict", total=total, enabled=show_progress) as advance:
        for rows in store.iter_corpus(corpus, batch_size):
            ids, texts, hashes = zip(*rows)
            X = embed_texts(store, embedder, texts, hashes)
            labels, probs = clf.predict(X)
            sets = clf.prediction_sets(X) if clf.conformal_threshold is not None else [[lab] for lab in labels]
            store.save_predictions(
                model_id, run_id, [(d, lab, p, len(s) != 1) for d, lab, p, s in zip(ids, labels, probs, sets)]
            )
            n += len(rows)
            advance(len(rows))
    return n
