"""Taxonomies that start from labels the user already has (`--labels FILE`, workflow/seeds.py).

The given labels get ids L1..Ln in file order and keep them. A label's place in embedding space is its name and
description together with its examples (Lbl2Vec: a label is what its description and examples are near).

* seeded (`--label-mode seeded`): documents of the taxonomy sample whose nearest given label is at least
  ABSORB_SIMILARITY similar join it (BERTopic's zero-shot step, with its default threshold for MiniLM); the rest
  are over-clustered, a cluster whose centroid is at least CENTROID_ABSORB near a given label joins it, and the
  others are named as usual and merged into at most --max-labels minus n discovered labels. A discovered label
  that repeats a given one (same name, a name embedding at least NAME_DUPLICATE similar, or its documents'
  centroid at least CENTROID_ABSORB near it) is folded into it. With the minibatch proposal, the model updates a
  taxonomy that starts as the given labels, and every version keeps them as given (given.keep_given).
* fixed (`--label-mode fixed`, zero-shot): no proposal at all; the given labels (and Other) go straight to
  labeling. With the embedded model the teacher is each document's most similar label, Other below
  OTHER_BELOW; with any other model the model labels.

Which labels were given and which discovered is kept per label id (`Store.label_origins`): 'seed' or
'discovered'.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from workflow import clustering
from workflow.graph.context import RunContext, log
from workflow.graph.nodes import clusters
from workflow.graph.nodes.given import (
    described_vectors,
    embed_label_texts,
    given_labels,
    save_origins,
    slots,
)
from workflow.graph.nodes.taxonomy import existing_version
from workflow.graph.state import RunState
from workflow.store import OTHER_ID, Document, Label

# Measured on BANKING77 (600-document sample, 10 intents as seeds, name + one example; /tmp scripts summarised in
# benchmarks/README.md "bench_seeded.py"): documents at >= 0.7 to a seed are 68% that seed's intent, at >= 0.6 only
# 38%. 0.7 is also BERTopic's default zeroshot_min_similarity for the same MiniLM family.
ABSORB_SIMILARITY = 0.7
# Zero-shot labeling by similarity: a document's own intent is >= 0.5 similar for 90% of documents, another
# intent's description for ~10%; below it the document is Other.
OTHER_BELOW = 0.5
# Cluster centroids sit closer to label vectors than single documents do: on BANKING77 a centroid at 0.84 to a
# given intent held 13% of it. Only a cluster this near is taken whole (the rest join through their documents).
CENTROID_ABSORB = 0.85
# A discovered name this similar to a given name repeats it ("Card delivery status" / "Card arrival": 0.78;
# distinct intents "top up failed" / "top up reverted": 0.81, "card arrival" / "card delivery estimate": 0.71).
NAME_DUPLICATE = 0.75

# -- fixed (zero-shot) -----------------------------------------------------------------------------------------


def fixed_taxonomy(ctx: RunContext, state: RunState) -> RunState:
    """The propose step of a fixed run: the given labels are the taxonomy, no model call."""
    ctx.stage("propose")
    if (version := existing_version(ctx, "given", None)) is None:
        labels = given_labels(ctx)
        version = ctx.store.save_taxonomy(ctx.run_id, labels, "given", author="user",
                                          notes=f"{len(labels)} labels given (--label-mode fixed: no proposal)")
        save_origins(ctx, labels)
    return {"taxonomy_version": version, "batch": 1}


def fixed_review(ctx: RunContext, state: RunState) -> RunState:
    return {"taxonomy_version": ctx.store.taxonomy(ctx.run_id)[0]}


def nearest_or_other(ctx: RunContext, docs: list[Document], labels: list[Label]) -> dict[str, str]:
    """Zero-shot teacher (Lbl2Vec): each document's most similar label by description and examples, Other when
    none is OTHER_BELOW similar."""
    if not docs:
        return {}
    X = clusters.embed_docs(ctx, [d.doc_id for d in docs])
    sims = X.X @ described_vectors(ctx, labels).T
    best = sims.argmax(axis=1)
    return {d: (labels[j].label_id if sims[i, j] >= OTHER_BELOW else OTHER_ID)
            for i, (d, j) in enumerate(zip(X.doc_ids, best))}


# -- seeded, cluster proposal ----------------------------------------------------------------------------------


def _with_max_labels(ctx: RunContext, n: int) -> RunContext:
    return replace(ctx, config=ctx.config.model_copy(update={"max_labels": max(2, n)}))


def propose_clusters(ctx: RunContext, state: RunState) -> RunState:
    """Given labels take the sample documents near them, and the clusters of the rest whose centroid is near them;
    the other clusters are named as candidates (ids after the given ones) for the merge to reduce to the labels
    left."""
    ctx.stage("propose")
    if (version := existing_version(ctx, "propose", 0)) is not None:
        return {"taxonomy_version": version, "batch": 1}
    cfg = ctx.config
    seeds = given_labels(ctx)
    space = clusters.embed_docs(ctx, ctx.store.sample(ctx.run_id, 1))
    S = described_vectors(ctx, seeds)
    sims = space.X @ S.T
    best, top = sims.argmax(axis=1), sims.max(axis=1)
    near = top >= ABSORB_SIMILARITY
    members = {d: seeds[j].label_id for d, j, a in zip(space.doc_ids, best, near) if a}
    rest = np.flatnonzero(~near)
    candidates: list[Label] = []
    absorbed_clusters = 0
    if slots(ctx) <= 0 or len(rest) < 2:  # no room for more labels (or nothing left): nearest given label
        members |= {space.doc_ids[r]: seeds[best[r]].label_id for r in rest}
    else:
        sub = clusters.Space([space.doc_ids[r] for r in rest], [space.texts[r] for r in rest], space.X[rest])
        k = clustering.n_clusters(len(rest), slots(ctx), cfg.cluster_factor)
        assign, C = clustering.kmeans(sub.X, k, cfg.seed)
        to_seed = {c: int(np.argmax(C[c] @ S.T)) for c in range(len(C)) if np.max(C[c] @ S.T) >= CENTROID_ABSORB}
        absorbed_clusters = len(to_seed)
        kept = [c for c in range(len(C)) if c not in to_seed]
        members |= {d: seeds[to_seed[c]].label_id for d, c in zip(sub.doc_ids, assign) if c in to_seed}
        if kept:
            rows = np.flatnonzero(np.isin(assign, kept))
            renumber = {c: i for i, c in enumerate(kept)}
            left = clusters.Space([sub.doc_ids[r] for r in rows], [sub.texts[r] for r in rows], sub.X[rows])
            left_assign = np.array([renumber[assign[r]] for r in rows])
            named = clusters.name_groups(_with_max_labels(ctx, slots(ctx)), left, left_assign)
            first = len(seeds) + 1
            candidates = clusters.unique_names([Label(f"L{first + g}", named[g].name, named[g].description)
                                           for g in range(len(kept))], clusters.keywords(left, left_assign))
            members |= {d: candidates[g].label_id for d, g in zip(left.doc_ids, left_assign)}
    note = (f"{len(seeds)} given labels took {int(near.sum())} of {len(space.doc_ids)} sample documents "
            f"(similarity >= {ABSORB_SIMILARITY}) and {absorbed_clusters} clusters of the rest (centroid >= "
            f"{CENTROID_ABSORB}); {len(candidates)} candidate labels from the other clusters")
    log.info(note)
    labels = seeds + candidates
    version = ctx.store.save_taxonomy(ctx.run_id, labels, "propose", batch=0, members=members, notes=note)
    save_origins(ctx, labels)
    return {"taxonomy_version": version, "batch": 1}


def merge(ctx: RunContext, state: RunState) -> RunState:
    """The candidates are merged into at most --max-labels minus n labels beside the given ones, which stay as
    given; a discovered label that repeats a given one is folded into it."""
    ctx.stage("review")
    if (version := existing_version(ctx, "review", None)) is not None:
        return {"taxonomy_version": version}
    seeds = given_labels(ctx)
    given = {lb.label_id for lb in seeds}
    _, current = ctx.store.taxonomy(ctx.run_id)
    candidates = [lb for lb in current if lb.label_id not in given]
    members = ctx.store.cluster_members(ctx.run_id)
    kept = {d: lid for d, lid in members.items() if lid in given}
    discovered: list[Label] = []
    note = "no candidates beside the given labels"
    if candidates:
        cand_members = {d: lid for d, lid in members.items() if lid not in given}
        if len(candidates) > 1:
            discovered, cand_members, note = clusters.merge_candidates(
                _with_max_labels(ctx, slots(ctx)), candidates, cand_members)
            if len(discovered) > slots(ctx):  # the merge makes at least 2: the smallest joins the largest
                gone = {lb.label_id for lb in discovered[slots(ctx):]}
                discovered = discovered[: slots(ctx)]
                cand_members = {d: discovered[0].label_id if lid in gone else lid for d, lid in cand_members.items()}
        else:
            discovered = candidates
        discovered, folded = drop_duplicates(ctx, seeds, discovered, cand_members)
        kept |= {d: folded.get(lid, lid) for d, lid in cand_members.items()}
        if folded:
            note += f"; {len(folded)} discovered labels repeated given ones and were folded into them"
    labels = seeds + discovered
    version = ctx.store.save_taxonomy(ctx.run_id, labels, "review", notes=note, members=kept)
    save_origins(ctx, labels)
    return {"taxonomy_version": version}


def drop_duplicates(ctx: RunContext, seeds: list[Label], discovered: list[Label], members: dict[str, str]
                    ) -> tuple[list[Label], dict[str, str]]:
    """Discovered labels that do not repeat a given one, and {repeating id: the given id it repeats}: same name
    (case ignored), name embeddings at least NAME_DUPLICATE similar, or its documents' centroid at least
    CENTROID_ABSORB near the given label."""
    if not discovered or not seeds:
        return discovered, {}
    names = embed_label_texts(ctx, [lb.name for lb in discovered]) @ embed_label_texts(ctx, [lb.name for lb in seeds]).T
    space = clusters.embed_docs(ctx, sorted(members))
    own = np.array([members[d] for d in space.doc_ids])
    S = described_vectors(ctx, seeds)
    by_name = {lb.name.casefold(): lb.label_id for lb in seeds}
    keep, folded = [], {}
    for i, lb in enumerate(discovered):
        j = int(names[i].argmax())
        same = by_name.get(lb.name.casefold()) or (seeds[j].label_id if names[i, j] >= NAME_DUPLICATE else None)
        rows = own == lb.label_id
        if same is None and rows.any():
            near = clustering.unit(space.X[rows].mean(axis=0)) @ S.T
            same = seeds[int(near.argmax())].label_id if near.max() >= CENTROID_ABSORB else None
        if same:
            folded[lb.label_id] = same
        else:
            keep.append(lb)
    return keep, folded
