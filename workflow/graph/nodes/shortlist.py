"""Shortlisted labeling: each document is offered only the labels nearest to it by embedding (plus Other).

Small models choose far better among five options than among fifty, and large taxonomies cost fewer prompt tokens.
A label sits where its cluster members are (the documents it was built from, see clusters.py); a label without
members (minibatch proposal, or added in review) sits where the embedding of its name and description does.
"""

from __future__ import annotations

import numpy as np

from workflow import clustering
from workflow.graph.context import RunContext
from workflow.store import Document, Label


def label_vectors(ctx: RunContext, labels: list[Label]) -> np.ndarray:
    members = ctx.store.cluster_members(ctx.run_id)
    member_ids = sorted(members)
    X = clustering.unit(ctx.embed(member_ids)) if members else None
    from workflow.graph.nodes.given import described_vectors  # given labels (--labels) add their examples

    described = described_vectors(ctx, labels)
    rows = []
    for lb, text_vec in zip(labels, described):
        mine = [i for i, d in enumerate(member_ids) if members[d] == lb.label_id]
        rows.append(X[mine].mean(axis=0) if mine else text_vec)
    return clustering.unit(np.stack(rows))


def shortlists(ctx: RunContext, docs: list[Document], labels: list[Label], k: int) -> list[list[Label]]:
    """The k labels nearest each document, nearest first (k <= 0 or k >= len(labels): every label, nearest first)."""
    if not docs:
        return []
    X = clustering.unit(ctx.embed([d.doc_id for d in docs]))
    k = len(labels) if k <= 0 else min(k, len(labels))
    return [[labels[j] for j in row] for row in clustering.nearest_labels(X, label_vectors(ctx, labels), k)]
