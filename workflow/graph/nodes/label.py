"""Pseudo-label the phase-2 sample with the approved taxonomy. "Other" is offered only here, so the share of
documents that are not Other measures how well the taxonomy covers the corpus. In multi-label runs the model lists
every label that applies (the first is stored as label_id, all of them as label_ids)."""

from __future__ import annotations

from workflow.graph.context import RunContext, RunFailed
from workflow.graph.nodes.shortlist import shortlists
from workflow.graph.nodes.taxonomy import format_taxonomy
from workflow.graph.nodes.text import clip
from workflow.graph.selection import next_round
from workflow.graph.state import RunState
from workflow.llm.gateway import CallResult, Request
from workflow.llm.prompts import fence
from workflow.llm.responses import CONFIDENCE_SCORE, assignment_model, multi_assignment_model
from workflow.store import Label


def label(ctx: RunContext, state: RunState) -> RunState:
    ctx.stage("label")
    version, labels = ctx.store.taxonomy(ctx.run_id, state.get("approved_version"))
    if not labels:
        raise RunFailed("the approved taxonomy has no labels")
    _label_sample(ctx, version, labels, "label")
    if ctx.config.label_selection == "active":  # rounds until --label-sample is spent (stored rounds are reused)
        while (picked := next_round(ctx, version)) is not None:
            _label_sample(ctx, version, labels, f"label (round {picked[0]})")
    return {}


def _label_sample(ctx: RunContext, version: int, labels: list[Label], description: str) -> None:
    """Label the phase-2 documents that have no ok label for this taxonomy version yet."""
    cfg, store = ctx.config, ctx.store
    done = store.assignments(ctx.run_id, "llm", taxonomy_version=version)
    todo = [d for d in store.sample(ctx.run_id, 2) if d not in done]
    names = {lb.label_id: lb.name for lb in labels} | {"other": "Other"}
    extra = {"max_labels_per_doc": cfg.max_labels_per_doc} if cfg.multi_label else {}
    docs = store.documents(ctx.corpus, todo)
    offered = shortlists(ctx, docs, labels, cfg.shortlist)  # nearest first; every label when shortlisting is off
    nearest = {d.doc_id: o[0].label_id for d, o in zip(docs, offered)}
    if cfg.label_teacher() == "nearest":
        if cfg.seed_labels and cfg.label_mode == "fixed":  # zero-shot: by description and examples, or Other
            from workflow.graph.nodes.seeded import nearest_or_other

            nearest = nearest_or_other(ctx, docs, labels)
        _save_nearest(ctx, version, nearest)
        return
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
                    requests, save, description=description, max_tokens=max_tokens)


def _save_nearest(ctx: RunContext, version: int, nearest: dict[str, str]) -> None:
    """--teacher nearest: each document's nearest label by embedding is its training label; no model call. Stored
    in the LLM's place (the label the classifier learns from), with no call id and a rationale that says so."""
    for doc_id, label_id in nearest.items():
        ctx.store.save_assignment(
            ctx.run_id, doc_id, "llm", label_id, taxonomy_version=version,
            rationale="nearest label by embedding (--teacher nearest)", confidence=None, status="ok", call_id=None,
            label_ids=[label_id] if ctx.config.multi_label else None, nearest_id=label_id,
        )
