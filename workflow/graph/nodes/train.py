"""Distil the LLM labels into a cheap classifier on embeddings, then label the whole corpus with it."""

from __future__ import annotations

from workflow.classify.export import classifier_to_bytes
from workflow.classify.fit import fit_on_run
from workflow.classify.predict import predict_corpus
from workflow.classify.train import TrainingError
from workflow.config import JobConfig
from workflow.graph.context import RunContext, RunFailed
from workflow.graph.state import RunState
from workflow.store import OTHER_ID


def train(ctx: RunContext, state: RunState) -> RunState:
    ctx.stage("train")
    cfg, store = ctx.config, ctx.store
    version = state.get("approved_version") or store.taxonomy(ctx.run_id)[0]
    if state.get("model_id"):
        return {}
    # A run without a classifier has not done its job: it fails (resumable: `tnt resume` trains again, e.g. after
    # `tnt resume --retry-failed` or human labels in `tnt review`), never ends "done".
    try:
        fitted = fit_on_run(store, ctx.run_id, ctx.corpus, cfg, progress=ctx.show_progress)
    except TrainingError as exc:
        raise RunFailed(f"no classifier: {exc}; {_labels_note(store, ctx.run_id, cfg)}") from None
    if fitted is None:
        raise RunFailed(f"no classifier: no document got a label; {_labels_note(store, ctx.run_id, cfg)}")
    model_id = store.save_model(
        ctx.run_id, algorithm=fitted.clf.algorithm, embedding_model=fitted.embedding_model, taxonomy_version=version,
        metrics=fitted.metrics, artifact=classifier_to_bytes(fitted.clf),
    )
    return {"model_id": model_id}


def _labels_note(store, run_id: str, config: JobConfig) -> str:
    """What the label requests came to, and what to do about it."""
    stats = [r for r in store.call_stats(run_id) if r["step"] == "label"]
    rejected, failed = sum(r["rejected"] for r in stats), sum(r["failed"] for r in stats)
    if rejected or failed:
        return (f"{rejected} label requests were answered but failed validation and {failed} got no answer: try a "
                "stronger --label-model, then `tnt resume --retry-failed`")
    counts = store.label_counts(run_id)
    answered = sum(counts.values())
    if config.label_teacher() == "llm" and answered and counts.get(OTHER_ID, 0) == answered:
        # seen with the embedded 135M model as --teacher llm: valid answers, every one "other"
        return (f"the teacher model ({config.model_for('label')}) answered Other for all {answered} documents it "
                "labeled: it found no label fitting, so there is nothing to learn from. Correct some labels in "
                "`tnt review` and `tnt resume`, or start the run again with a stronger --label-model or with "
                "--teacher nearest (each document's nearest label by embedding; the default for the embedded "
                "model)")
    return "label more documents (--label-sample) or correct labels in `tnt review`, then `tnt resume`"


def predict(ctx: RunContext, state: RunState) -> RunState:
    if not state.get("model_id"):
        return {}
    ctx.stage("predict")
    predict_corpus(ctx.store, state["model_id"], ctx.corpus, ctx.run_id, show_progress=ctx.show_progress)
    return {}
