"""A second level above the final labels, à la Clio: the model proposes at most N parents from the labels' names,
descriptions and sizes, then places each label under one parent (one small call per label, its answer an enum of
parent ids, so a small model cannot answer outside the list).

When the model cannot propose usable parents, label-description embeddings are clustered (agglomerative, cosine)
instead; a label whose placement call fails goes to the parent nearest its embedding. Parent ids (P1, P2, ...) are
stable: a parent the model proposes again under the same name keeps its id, and ids are never reused.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
from pydantic import BaseModel, create_model

from workflow.config import JobConfig
from workflow.graph.context import RunContext, log
from workflow.graph.state import RunState
from workflow.llm.gateway import CallResult, Gateway, Request
from workflow.llm.prompts import fence
from workflow.llm.responses import ProposedTaxonomy, capped_taxonomy
from workflow.store import Label, Store

EmbedFn = Callable[[list[str]], np.ndarray]


class HierarchyError(ValueError):
    """No hierarchy can be built (e.g. the run has no taxonomy yet)."""


def parent_choice_model(parent_ids: Sequence[str]) -> type[BaseModel]:
    """{"parent_id": one of this hierarchy's parent ids}: constrained decoding cannot leave the list."""
    return create_model("ParentChoice", parent_id=(Literal[tuple(parent_ids)], ...))  # type: ignore[call-overload, valid-type]


def label_sizes(store: Store, run_id: str) -> dict[str, int]:
    """Documents per label: the classifier's predictions when there are any, else the LLM's labels."""
    model = store.latest_model(run_id)
    counts = store.prediction_counts(model["model_id"]) if model else {}
    return counts or store.label_counts(run_id, "llm")


def _label_line(lb: Label, size: int | None = None) -> str:
    text = fence(f"{lb.label_id}: {lb.name} - {lb.description}", "labels").replace("\n", " ")
    return text + (f" ({size} documents)" if size is not None else "")


def _with_ids(store: Store, run_id: str, drafts: list[tuple[str, str]]) -> list[Label]:
    """Parents keep the id of a parent of the same name in the run's latest hierarchy; others get fresh ids."""
    previous = {p.name.lower(): p.label_id for p in store.parents(run_id)}
    fresh = iter(store.fresh_label_ids(run_id, len(drafts), prefix="P"))
    out, used = [], set()
    for name, desc in drafts:
        pid = previous.get(name.lower())
        if pid is None or pid in used:
            pid = next(fresh)
        used.add(pid)
        out.append(Label(pid, name, desc))
    return out


def cluster_parents(labels: Sequence[Label], sizes: dict[str, int], max_parents: int,
                    embed: EmbedFn) -> tuple[list[tuple[str, str]], dict[str, int]]:
    """The deterministic fallback: agglomerative clustering of label embeddings into at most max_parents groups.
    Each group is named after its largest label; returns (drafts, label id -> draft index)."""
    from sklearn.cluster import AgglomerativeClustering

    k = max(1, min(max_parents, len(labels)))
    if k == 1 or len(labels) < 2:
        groups = np.zeros(len(labels), dtype=int)
    else:
        X = embed([f"{lb.name}. {lb.description}" for lb in labels])
        groups = AgglomerativeClustering(n_clusters=k, metric="cosine", linkage="average").fit_predict(X)
    drafts, index = [], {}
    for g in sorted(set(groups.tolist()), key=lambda g: groups.tolist().index(g)):
        members = [lb for lb, gg in zip(labels, groups) if gg == g]
        top = max(members, key=lambda lb: (sizes.get(lb.label_id, 0), -labels.index(lb)))
        drafts.append((f"{top.name} and related" if len(members) > 1 else top.name,
                       "Groups: " + ", ".join(lb.name for lb in members)[:280]))
        for lb in members:
            index[lb.label_id] = len(drafts) - 1
    return drafts, index


def _nearest(labels: Sequence[Label], parents: Sequence[Label], embed: EmbedFn) -> dict[str, str]:
    """Each label's most similar parent by embedding (the fallback for a failed placement call)."""
    L = embed([f"{lb.name}. {lb.description}" for lb in labels])
    P = embed([f"{p.name}. {p.description}" for p in parents])
    best = (L @ P.T).argmax(axis=1)
    return {lb.label_id: parents[int(j)].label_id for lb, j in zip(labels, best)}


def build_hierarchy(store: Store, gateway: Gateway, run_id: str, config: JobConfig, *,
                    max_parents: int | None = None, embed: EmbedFn | None = None, author: str = "llm",
                    only: Sequence[str] | None = None) -> int:
    """Save a new taxonomy version whose leaves (unchanged) have parents; returns the version.

    ``only``: place just these labels under the existing parents (e.g. labels added by `tnt update`); the others
    keep theirs. Run assignments move to the new version (the leaves did not change).
    """
    version, labels = store.taxonomy(run_id)
    if not labels:
        raise HierarchyError(f"run '{run_id}' has no taxonomy yet")
    max_parents = max_parents or config.max_parents
    sizes = label_sizes(store, run_id)
    model = config.model_for("taxonomy")
    embed = embed or _default_embed(config)
    notes: list[str] = []

    existing = store.parents(run_id, version)
    if only is not None and existing:
        parents, index = existing, {}
        todo = [lb for lb in labels if lb.label_id in set(only) or lb.parent_id is None]
    else:
        todo = list(labels)
        ctx = {"max_labels": max_parents, "name_max_words": config.name_max_words,
               "description_max_words": config.description_max_words}
        res = gateway.call(
            "hierarchy", model, "hierarchy_propose", capped_taxonomy(ProposedTaxonomy, **ctx),
            {"use_case": config.use_case, "n": len(labels), **ctx,
             "labels": "\n".join(_label_line(lb, sizes.get(lb.label_id, 0)) for lb in labels)},
            context=ctx, max_tokens=800,
        )
        index = {}
        if res.ok and len(res.value.labels) >= min(2, len(labels)):
            drafts = [(d.name, d.description) for d in res.value.labels]
        else:
            notes.append(f"parents clustered (the model's proposal failed: {res.error or 'too few parents'})")
            drafts, index = cluster_parents(labels, sizes, max_parents, embed)
        parents = _with_ids(store, run_id, drafts)
    ids = [p.label_id for p in parents]
    placed: dict[str, str] = {lb.label_id: lb.parent_id for lb in labels if lb.parent_id in ids}
    if index:  # clustered: the grouping already places every label
        placed |= {lid: ids[i] for lid, i in index.items()}
        todo = []
    parents_text = "\n".join(_label_line(p) for p in parents)
    Choice = parent_choice_model(ids)
    failed: list[Label] = []

    def save(req: Request, res: CallResult) -> None:
        if res.ok:
            placed[req.key.label_id] = res.value.parent_id
        else:
            failed.append(req.key)

    gateway.map("hierarchy", model, "hierarchy_assign", Choice,
                [Request(lb, {"use_case": config.use_case, "parents": parents_text, "label": _label_line(lb)})
                 for lb in todo], save, description="hierarchy", max_tokens=40)
    if failed:
        notes.append(f"{len(failed)} labels placed by embedding similarity (their placement call failed)")
        placed |= _nearest(failed, parents, embed)
    leaves = [Label(lb.label_id, lb.name, lb.description, placed.get(lb.label_id)) for lb in labels]
    used = {lb.parent_id for lb in leaves}
    kept = [p for p in parents if p.label_id in used]  # a parent no label chose is dropped
    if notes:
        log.warning("hierarchy: %s", "; ".join(notes))
    return store.save_taxonomy(run_id, leaves, "hierarchy", notes="; ".join(notes) or None, author=author,
                               parents=kept, repoint=True)


def _default_embed(config: JobConfig) -> EmbedFn:
    def embed(texts: list[str]) -> np.ndarray:
        from workflow.classify.embed import get_embedder

        return get_embedder(config.embedding_model).embed(texts)

    return embed


def hierarchy(ctx: RunContext, state: RunState) -> RunState:
    """The graph step after predict when the run asks for two levels (`tnt run --levels 2`)."""
    if ctx.config.levels < 2:
        return {}
    ctx.stage("hierarchy")
    latest = ctx.store.taxonomy_versions(ctx.run_id)[-1]
    if ctx.store.parents(ctx.run_id):  # built before (a crash, review edits): place only labels added since
        loose = [lb.label_id for lb in ctx.store.taxonomy(ctx.run_id)[1] if lb.parent_id is None]
        if not loose:
            return {"approved_version": latest["version"]}
        version = build_hierarchy(ctx.store, ctx.gateway, ctx.run_id, ctx.config, only=loose)
        return {"approved_version": version, "taxonomy_version": version}
    version = build_hierarchy(ctx.store, ctx.gateway, ctx.run_id, ctx.config)
    return {"approved_version": version, "taxonomy_version": version}


__all__ = ["HierarchyError", "build_hierarchy", "cluster_parents", "hierarchy", "label_sizes", "parent_choice_model"]
