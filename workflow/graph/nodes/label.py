"""Pseudo-label the phase-2 sample with the approved taxonomy. "Other" is offered only here, so the share of
documents that are not Other measures how well the taxonomy covers the corpus."""

from __future__ import annotations

from workflow.graph.context import RunContext, RunFailed
from workflow.graph.nodes.taxonomy import format_taxonomy
from workflow.graph.nodes.text import clip
from workflow.graph.state import RunState
from workflow.llm.gateway import CallResult, Request
from workflow.llm.prompts import fence
from workflow.llm.responses import CONFIDENCE_SCORE, assignment_model


def label(ctx: RunContext, state: RunState) -> RunState:
    ctx.stage("label")
    cfg, store = ctx.config, ctx.store
    version, labels = store.taxonomy(ctx.run_id, state.get("approved_version"))
    if not labels:
        raise RunFailed("the approved taxonomy has no labels")
    done = store.assignments(ctx.run_id, "llm", taxonomy_version=version)
    todo = [d for d in store.sample(ctx.run_id, 2) if d not in done]
    Assignment = assignment_model([lb.label_id for lb in labels], [lb.name for lb in labels])
    names = {lb.label_id: lb.name for lb in labels} | {"other": "Other"}
    taxonomy = format_taxonomy(labels)
    requests = [
        Request(d.doc_id, {"use_case": cfg.use_case, "taxonomy": taxonomy, "text": fence(clip(d.text, cfg.max_doc_tokens))}, {"label_names": names})
        for d in store.documents(ctx.corpus, todo)
    ]

    def save(req: Request, res: CallResult) -> None:
        v = res.value
        store.save_assignment(
            ctx.run_id, req.key, "llm", v.label_id if v else None, taxonomy_version=version,
            rationale=v.rationale if v else res.error, confidence=CONFIDENCE_SCORE[v.confidence.value] if v else None,
            status="ok" if v else "failed", call_id=res.call_id,
        )

    ctx.gateway.map("label", cfg.model_for("label"), "label", Assignment, requests, save, description="label", max_tokens=160)
    return {}
