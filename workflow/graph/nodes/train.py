"""Distil the LLM labels into a cheap classifier on embeddings, then label the whole corpus with it."""

from __future__ import annotations

from workflow.classify.embed import get_embedder
from workflow.classify.export import classifier_to_bytes
from workflow.classify.predict import predict_corpus
from workflow.classify.train import TrainingError, train_classifier, train_multilabel
from workflow.classify.vectors import embed_texts
from workflow.graph.context import RunContext, log
from workflow.graph.state import RunState


def train(ctx: RunContext, state: RunState) -> RunState:
    ctx.stage("train")
    cfg, store = ctx.config, ctx.store
    version = state.get("approved_version") or store.taxonomy(ctx.run_id)[0]
    if state.get("model_id"):
        return {}
    labels = store.training_label_sets(ctx.run_id) if cfg.multi_label else store.training_labels(ctx.run_id)
    if not labels:
        log.warning("no labeled documents: skipping the classifier")
        return {}
    doc_ids = sorted(labels)
    docs = store.documents(ctx.corpus, doc_ids)
    embedder = get_embedder(cfg.embedding_model)
    X = embed_texts(store, embedder, [d.text for d in docs], progress=ctx.show_progress)
    y = [labels[d] for d in doc_ids]
    try:
        if cfg.multi_label:
            clf, metrics = train_multilabel(X, y, seed=cfg.seed, test_size=cfg.test_size)  # type: ignore[arg-type]
        else:
            clf, metrics = train_classifier(X, y, algorithms=tuple(cfg.algorithms), seed=cfg.seed,
                                            test_size=cfg.test_size)
    except TrainingError as exc:
        log.warning("skipping the classifier: %s", exc)
        return {}
    model_id = store.save_model(
        ctx.run_id, algorithm=clf.algorithm, embedding_model=embedder.name, taxonomy_version=version,
        metrics=metrics, artifact=classifier_to_bytes(clf),
    )
    return {"model_id": model_id}


def predict(ctx: RunContext, state: RunState) -> RunState:
    if not state.get("model_id"):
        return {}
    ctx.stage("predict")
    predict_corpus(ctx.store, state["model_id"], ctx.corpus, ctx.run_id, show_progress=ctx.show_progress)
    return {}
