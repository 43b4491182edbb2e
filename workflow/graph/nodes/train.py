"""Distil the LLM labels into a cheap classifier on embeddings, then label the whole corpus with it."""

from __future__ import annotations

from workflow.classify.export import classifier_to_bytes
from workflow.classify.fit import fit_on_run
from workflow.classify.predict import predict_corpus
from workflow.classify.train import TrainingError
from workflow.graph.context import RunContext, log
from workflow.graph.state import RunState


def train(ctx: RunContext, state: RunState) -> RunState:
    ctx.stage("train")
    cfg, store = ctx.config, ctx.store
    version = state.get("approved_version") or store.taxonomy(ctx.run_id)[0]
    if state.get("model_id"):
        return {}
    try:
        fitted = fit_on_run(store, ctx.run_id, ctx.corpus, cfg, progress=ctx.show_progress)
    except TrainingError as exc:
        log.warning("skipping the classifier: %s", exc)
        return {}
    if fitted is None:
        log.warning("no labeled documents: skipping the classifier")
        return {}
    model_id = store.save_model(
        ctx.run_id, algorithm=fitted.clf.algorithm, embedding_model=fitted.embedding_model, taxonomy_version=version,
        metrics=fitted.metrics, artifact=classifier_to_bytes(fitted.clf),
    )
    return {"model_id": model_id}


def predict(ctx: RunContext, state: RunState) -> RunState:
    if not state.get("model_id"):
        return {}
    ctx.stage("predict")
    predict_corpus(ctx.store, state["model_id"], ctx.corpus, ctx.run_id, show_progress=ctx.show_progress)
    return {}
