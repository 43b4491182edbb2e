"""Summarise each phase-1 document for the use case: short summaries let a whole minibatch fit one prompt.
A document no longer than a summary is its own summary (no model call): short-text corpora cost half the calls."""

from __future__ import annotations

from workflow.config import JobConfig
from workflow.graph.context import RunContext
from workflow.graph.nodes.text import clip
from workflow.graph.state import RunState
from workflow.llm.gateway import CallResult, Request
from workflow.llm.prompts import fence
from workflow.llm.responses import Summary, summary_model

SHOWN_WORDS = 60  # a document shown in a naming prompt without a summary is cut to this many words


def is_own_summary(text: str, max_words: int) -> bool:
    return len(text.split()) <= max_words


def summarize(ctx: RunContext, state: RunState) -> RunState:
    ctx.stage("summarize")
    fixed = ctx.config.label_mode == "fixed" and ctx.config.seed_labels  # no proposal: nothing to summarise
    if ctx.config.proposal == "minibatch" and not fixed:  # cluster proposal summarises only the documents it shows
        summarize_docs(ctx, ctx.store.sample(ctx.run_id, 1))
    return {}


def summarize_docs(ctx: RunContext, doc_ids: list[str]) -> dict[str, str]:
    """Summaries of doc_ids (made once; failed ones are asked again on resume), as {doc_id: summary}."""
    cfg, store = ctx.config, ctx.store
    done = store.summarized_ids(ctx.run_id)
    todo = [d for d in doc_ids if d not in done]
    docs = []
    for d in store.documents(ctx.corpus, todo):
        if is_own_summary(d.text, cfg.summary_max_words):  # short enough already: no model call
            store.save_summary(ctx.run_id, d.doc_id, " ".join(d.text.split()), "ok", None)
        else:
            docs.append(d)
    requests = [
        Request(
            d.doc_id,
            {"use_case": cfg.use_case, "max_words": cfg.summary_max_words,
             "text": fence(clip(d.text, cfg.max_doc_tokens))},
            {"summary_max_words": cfg.summary_max_words},
        )
        for d in docs
    ]

    def save(req: Request, res: CallResult[Summary]) -> None:
        store.save_summary(ctx.run_id, req.key, res.value.summary if res.value else None, "ok" if res.ok else "failed",
                           res.call_id)

    ctx.gateway.map(
        "summarize", cfg.model_for("summarize"), "summarize", summary_model(cfg.summary_max_words), requests, save,
        description="summarize", max_tokens=cfg.summary_max_words * 6 + 40,
    )
    return store.summaries(ctx.run_id, doc_ids)


def summaries_line(config: JobConfig, summarized: int) -> str:
    """The run summary's line on summaries: how many were made and why (`--summaries`; none by default for the
    embedded model, whose summaries cost most of a run on long documents and did not make better names)."""
    if config.proposal == "minibatch":
        return f"summaries: {summarized} documents summarised for the minibatch proposal (the paper's path)"
    if not config.uses_summaries():
        why = "auto, the embedded model" if config.summaries == "auto" else config.summaries
        return (f"summaries: none made (--summaries {why}); cluster-naming prompts showed documents cut to "
                f"{SHOWN_WORDS} words (--summaries always to summarise them)")
    return (f"summaries: {summarized} documents summarised for the cluster-naming prompts "
            f"(--summaries {config.summaries})")
