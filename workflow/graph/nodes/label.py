"""Pseudo-label the phase-2 sample with the approved taxonomy. "Other" is offered only here, so the share of
documents that are not Other measures how well the taxonomy covers the corpus. In multi-label runs the model lists
every label that applies (the first is stored as label_id, all of them as label_ids)."""

from __future__ import annotations

from workflow.graph.context import RunContext, RunFailed
from workflow.graph.nodes.shortlist import shortlists
from workflow.graph.nodes.taxonomy import format_taxonomy
from workflow.graph.nodes.text import clip
from workflow.graph.state import RunState
from workflow.llm.gateway import CallResult, Request
from workflow.llm.prompts import fence
from workflow.llm.responses import CONFIDENCE_SCORE, assignment_model, multi_assignment_model


def label(ctx: RunContext, state: RunState) -> RunState:
    ctx.stage("label")
    cfg, store = ctx.config, ctx.store
    version, labels = store.taxonomy(ctx.run_id, state.get("approved_version"))
    if not labels:
        raise RunFailed("the approved taxonomy has no labels")
    done = store.assignments(ctx.run_id, "llm", taxonomy_version=version)
    todo = [d for d in store.sample(ctx.run_id, 2) if d not in done]
    names = {lb.label_id: lb.name for lb in labels} | {"other": "Other"}
    extra = {"max_labels_per_doc": cfg.max_labels_per_doc} if cfg.multi_label else {}
    docs = store.documents(ctx.corpus, todo)
    offered = shortlists(ctx, docs, labels, cfg.shortlist)  # nearest first; every label when shortlisting is off
    nearest = {d.doc_id: o[0].label_id for d, o in zip(docs, offered)}
    models: dict[tuple[str, ...], type] = {}

    def response_model(req: Request) -> type:
        ids = req.context["offered"]
        if ids not in models:
            shown = [names[i] for i in ids]
            models[ids] = (multi_assignment_model(list(ids), shown, cfg.max_labels_per_doc) if cfg.multi_label
                           else assignment_model(list(ids), shown))
        return models[ids]

    requests = [
        Request(d.doc_id, {"use_case": cfg.use_case, "taxonomy": format_taxonomy(o),
                           "text": fence(clip(d.text, cfg.max_doc_tokens)), **extra},
                {"label_names": {lb.label_id: lb.name for lb in o} | {"other": "Other"},
                 "offered": tuple(lb.label_id for lb in o)})
        for d, o in zip(docs, offered)
    ]

    def save(req: Request, res: CallResult) -> None:
        v = res.value
        store.save_assignment(
            ctx.run_id, req.key, "llm", v.label_id if v else None, taxonomy_version=version,
            rationale=v.rationale if v else res.error, confidence=CONFIDENCE_SCORE[v.confidence.value] if v else None,
            status="ok" if v else "failed", call_id=res.call_id,
            label_ids=v.label_ids if v is not None and cfg.multi_label else None, nearest_id=nearest[req.key],
        )

    max_tokens = 160 + (40 * cfg.max_labels_per_doc if cfg.multi_label else 0)
    ctx.gateway.map("label", cfg.model_for("label"), "label_multi" if cfg.multi_label else "label", response_model,
                    requests, save, description="label", max_tokens=max_tokens)
    return {}
