"""Summarise each phase-1 document for the use case: short summaries let a whole minibatch fit one prompt."""

from __future__ import annotations

from workflow.graph.context import RunContext
from workflow.graph.nodes.text import clip
from workflow.graph.state import RunState
from workflow.llm.gateway import CallResult, Request
from workflow.llm.prompts import fence
from workflow.llm.responses import Summary, summary_model


def summarize(ctx: RunContext, state: RunState) -> RunState:
    ctx.stage("summarize")
    cfg, store = ctx.config, ctx.store
    done = store.summarized_ids(ctx.run_id)
    todo = [d for d in store.sample(ctx.run_id, 1) if d not in done]
    docs = store.documents(ctx.corpus, todo)
    requests = [
        Request(
            d.doc_id,
            {"use_case": cfg.use_case, "max_words": cfg.summary_max_words, "text": fence(clip(d.text, cfg.max_doc_tokens))},
            {"summary_max_words": cfg.summary_max_words},
        )
        for d in docs
    ]

    def save(req: Request, res: CallResult[Summary]) -> None:
        store.save_summary(ctx.run_id, req.key, res.value.summary if res.value else None, "ok" if res.ok else "failed", res.call_id)

    ctx.gateway.map(
        "summarize", cfg.model_for("summarize"), "summarize", summary_model(cfg.summary_max_words), requests, save,
        description="summarize", max_tokens=cfg.summary_max_words * 6 + 40,
    )
    return {}
