"""Taxonomy generation: propose on minibatch 1, update on each later minibatch, then a data-free review.

Label ids are stable: a label the model keeps (by id or by name) keeps its id, so renames never orphan data.
"""

from __future__ import annotations

import json

from workflow.graph.context import RunContext, RunFailed, log
from workflow.graph.nodes.text import approx_tokens
from workflow.graph.state import RunState
from workflow.llm.prompts import fence
from workflow.llm.responses import LabelDraft, ProposedTaxonomy, ReviewedTaxonomy, UpdatedTaxonomy, capped_taxonomy
from workflow.store import Label, next_label_ids

TAXONOMY_MAX_TOKENS = 1200


def assign_ids(drafts: list[LabelDraft], previous: list[Label]) -> list[Label]:
    """Give each draft label an id: its own if it names a previous label, the id of a previous label with the
    same name, or a fresh one."""
    by_id = {lb.label_id: lb for lb in previous}
    by_name = {lb.name.lower(): lb.label_id for lb in previous}
    used: set[str] = set()
    fresh = iter(next_label_ids(by_id, len(drafts)))
    out: list[Label] = []
    for d in drafts:
        lid = d.id if d.id in by_id and d.id not in used else by_name.get(d.name.lower())
        if lid is None or lid in used:
            lid = next(fresh)
        used.add(lid)
        out.append(Label(lid, d.name, d.description))
    return out


def format_taxonomy(labels: list[Label]) -> str:
    return "\n".join(f"{lb.label_id}: {lb.name} - {lb.description}" for lb in labels)


def taxonomy_json(labels: list[Label]) -> str:
    """The taxonomy in the very shape the update/review answer takes, one label per line: models (small ones
    above all) then carry labels over instead of inventing a format."""
    return "\n".join(json.dumps({"id": lb.label_id, "name": lb.name, "description": lb.description}) for lb in labels)


def _context(ctx: RunContext) -> dict:
    cfg = ctx.config
    return {"max_labels": cfg.max_labels, "name_max_words": cfg.name_max_words,
            "description_max_words": cfg.description_max_words}


def _response(ctx: RunContext, model: type) -> type:
    return capped_taxonomy(model, **_context(ctx))


def _summaries_block(ctx: RunContext, batch: int) -> tuple[str, int]:
    """The batch's summaries as a bullet list, cut to what fits the taxonomy model's context window."""
    summaries = ctx.store.summaries(ctx.run_id, ctx.store.sample(ctx.run_id, 1, batch))
    budget = ctx.gateway.context_window(ctx.config.model_for("taxonomy")) - TAXONOMY_MAX_TOKENS - 900
    lines, used = [], 0
    for s in summaries.values():
        line = "- " + fence(s, "summaries").replace("\n", " ")
        used += approx_tokens(line)
        if used > budget:
            log.warning("batch %d: %d of %d summaries fit the model's context", batch, len(lines), len(summaries))
            break
        lines.append(line)
    return "\n".join(lines), len(lines)


def _variables(ctx: RunContext, **extra: object) -> dict:
    cfg = ctx.config
    return {"use_case": cfg.use_case, **_context(ctx), **extra}


def existing_version(ctx: RunContext, stage: str, batch: int | None) -> int | None:
    """A version this step already saved before a crash, so a resumed run does not append it twice."""
    for row in ctx.store.taxonomy_versions(ctx.run_id):
        if row["stage"] == stage and row["batch"] == batch:
            return row["version"]
    return None


def propose(ctx: RunContext, state: RunState) -> RunState:
    ctx.stage("propose")
    if (version := existing_version(ctx, "propose", 0)) is not None:
        return {"taxonomy_version": version, "batch": 1}
    block, n = _summaries_block(ctx, 0)
    if n == 0:
        raise RunFailed("no document of the first minibatch could be summarised; see `tnt status` for failed calls")
    if ctx.config.seed_labels:  # given labels (--labels): the model updates a taxonomy that starts as them
        return _propose_from_given(ctx, block)
    res = ctx.gateway.call(
        "taxonomy", ctx.config.model_for("taxonomy"), "propose", _response(ctx, ProposedTaxonomy),
        _variables(ctx, n=n, summaries=block), context=_context(ctx) | {"documents": block.splitlines()},
        max_tokens=TAXONOMY_MAX_TOKENS,
    )
    if not res.ok:
        raise RunFailed(f"the model could not propose a valid taxonomy ({res.error}); try a stronger --taxonomy-model")
    labels = assign_ids(res.value.labels, [])
    version = ctx.store.save_taxonomy(ctx.run_id, labels, "propose", batch=0, call_id=res.call_id)
    return {"taxonomy_version": version, "batch": 1}


def _propose_from_given(ctx: RunContext, block: str) -> RunState:
    from workflow.graph.nodes.given import given_labels, keep_given, save_origins

    given = given_labels(ctx)
    res = ctx.gateway.call(
        "taxonomy", ctx.config.model_for("taxonomy"), "update", _response(ctx, UpdatedTaxonomy),
        _variables(ctx, taxonomy=taxonomy_json(given), summaries=block),
        context=_context(ctx) | {"documents": block.splitlines()}, max_tokens=TAXONOMY_MAX_TOKENS,
    )
    if not res.ok:
        log.warning("taxonomy proposal beside the given labels failed (%s); starting from the given labels", res.error)
    labels = keep_given(ctx, assign_ids(res.value.labels, given) if res.ok else given)
    version = ctx.store.save_taxonomy(ctx.run_id, labels, "propose", batch=0, call_id=res.call_id,
                                      notes=f"{len(given)} given labels (--labels) and the model's additions")
    save_origins(ctx, labels)
    return {"taxonomy_version": version, "batch": 1}


def _keep_given(ctx: RunContext, labels: list[Label]) -> list[Label]:
    """With given labels (--labels), every model-written version keeps them as given (graph/nodes/seeded.py)."""
    if not ctx.config.seed_labels:
        return labels
    from workflow.graph.nodes.given import keep_given, save_origins

    labels = keep_given(ctx, labels)
    save_origins(ctx, labels)
    return labels


def update(ctx: RunContext, state: RunState) -> RunState:
    batch = state.get("batch", 1)
    ctx.stage(f"update {batch}/{ctx.store.n_batches(ctx.run_id, 1) - 1}")
    if (version := existing_version(ctx, "update", batch)) is not None:
        return {"taxonomy_version": version, "batch": batch + 1}
    _, current = ctx.store.taxonomy(ctx.run_id)
    block, n = _summaries_block(ctx, batch)
    if n == 0:
        return {"batch": batch + 1}
    res = ctx.gateway.call(
        "taxonomy", ctx.config.model_for("taxonomy"), "update", _response(ctx, UpdatedTaxonomy),
        _variables(ctx, taxonomy=taxonomy_json(current), summaries=block),
        context=_context(ctx) | {"documents": block.splitlines()},  # names that repeat an instruction are refused
        max_tokens=TAXONOMY_MAX_TOKENS,
    )
    if not res.ok:  # keep the current taxonomy: one bad minibatch should not end the run
        log.warning("taxonomy update on batch %d failed (%s); keeping the current taxonomy", batch, res.error)
        version = ctx.store.save_taxonomy(ctx.run_id, current, "update", batch=batch,
                                          notes=f"update failed: {res.error}", call_id=res.call_id)
    else:
        labels = _keep_given(ctx, assign_ids(res.value.labels, current))
        version = ctx.store.save_taxonomy(
            ctx.run_id, labels, "update", batch=batch, rating=res.value.rating, notes=res.value.suggestions,
            call_id=res.call_id
        )
    return {"taxonomy_version": version, "batch": batch + 1}


def more_batches(ctx: RunContext, state: RunState) -> str:
    if ctx.config.proposal == "clusters" or ctx.config.label_mode == "fixed" and ctx.config.seed_labels:
        return "review"  # no minibatches: the candidates (or the given labels) go straight to the merge
    return "update" if state.get("batch", 1) < ctx.store.n_batches(ctx.run_id, 1) else "review"


def review(ctx: RunContext, state: RunState) -> RunState:
    ctx.stage("review")
    if (version := existing_version(ctx, "review", None)) is not None:
        return {"taxonomy_version": version}
    _, current = ctx.store.taxonomy(ctx.run_id)
    res = ctx.gateway.call(
        "taxonomy", ctx.config.model_for("taxonomy"), "review", _response(ctx, ReviewedTaxonomy),
        _variables(ctx, taxonomy=taxonomy_json(current)), context=_context(ctx), max_tokens=TAXONOMY_MAX_TOKENS,
    )
    labels, notes = ((assign_ids(res.value.labels, current), res.value.notes) if res.ok
                     else (current, f"review failed: {res.error}"))
    labels = _keep_given(ctx, labels)
    version = ctx.store.save_taxonomy(ctx.run_id, labels, "review", notes=notes, call_id=res.call_id)
    return {"taxonomy_version": version}
