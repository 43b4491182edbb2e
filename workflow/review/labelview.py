"""What a label means, shown before anyone approves it: its size, its most typical documents, its border, and the
label it is easiest to confuse with.

At the `--review` pause no document is labeled yet, but each cluster-seeded label was built from documents
(`label_members`); those say more about a label than its name. A document's label here is the most trusted one
known: a human's, else the LLM's, else the classifier's, else the cluster it was built from. Runs with no members
(minibatch proposal) place the taxonomy sample's documents at the label whose name and description embed nearest.

Typical documents are the members nearest the label's centroid; border documents are members nearest to another
label's centroid relative to their own (smallest margin), so the reviewer sees where the label ends.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from workflow.clustering import unit
from workflow.store import OTHER_ID, Label, Store, text_hash

TYPICAL = 3
BORDER = 2
SOURCES = ("human", "llm", "classifier", "cluster", "nearest name")


@dataclass
class Placement:
    """Every document whose label is known, with where that label came from (for the map and the profiles)."""

    label_of: dict[str, str]
    source_of: dict[str, str]
    note: str = ""


@dataclass
class Profile:
    """One label's picture: size, typical and border documents, nearest other label."""

    size: int
    typical: list[dict] = field(default_factory=list)
    border: list[dict] = field(default_factory=list)
    nearest: str | None = None
    nearest_sim: float | None = None
    neighbours: list[str] = field(default_factory=list)  # the other labels, nearest centroid first


def placement(store: Store, run_id: str, labels: list[Label], embed=None) -> Placement:
    """Each document's most trusted label among the current ones (and Other); see the module docstring."""
    live = {lb.label_id for lb in labels} | {OTHER_ID}
    label_of: dict[str, str] = {}
    source_of: dict[str, str] = {}

    def put(mapping: dict[str, str], source: str) -> None:
        for d, lid in mapping.items():
            if d not in label_of and lid in live:
                label_of[d], source_of[d] = lid, source

    put(store.assignments(run_id, "human"), "human")
    put(store.assignments(run_id, "llm"), "llm")
    model = store.latest_model(run_id)
    if model is not None:
        put(store.predictions(model["model_id"]), "classifier")
    put(store.cluster_members(run_id), "cluster")
    note = ""
    if not label_of and embed is not None and labels:
        ids = store.sample(run_id, 1)
        docs = store.documents(store.run(run_id)["corpus"], ids)
        if docs:
            X = unit(embed(store, [d.text for d in docs], [text_hash(d.text) for d in docs]))
            texts = [f"{lb.name}: {lb.description}" for lb in labels]
            L = unit(embed(store, texts, [text_hash(t) for t in texts]))
            near = np.argmax(X @ L.T, axis=1)
            put({d.doc_id: labels[int(j)].label_id for d, j in zip(docs, near)}, "nearest name")
            note = "documents placed at the label whose name and description are nearest by embedding"
    return Placement(label_of, source_of, note)


def profiles(store: Store, run_id: str, labels: list[Label], place: Placement, embed, *,
             typical: int = TYPICAL, border: int = BORDER, max_docs: int = 20_000, seed: int = 0) -> dict[str, Profile]:
    """A Profile per label id (labels without documents get size 0 and nothing else). Centroids come from at most
    ``max_docs`` documents (a seeded sample), so a large corpus costs a bounded number of vectors."""
    ids = sorted(d for d, lid in place.label_of.items() if lid != OTHER_ID)
    if len(ids) > max_docs:
        rng = np.random.default_rng(seed)
        ids = sorted(rng.choice(ids, max_docs, replace=False).tolist())
    sizes: dict[str, int] = {}
    for lid in place.label_of.values():
        sizes[lid] = sizes.get(lid, 0) + 1
    out = {lb.label_id: Profile(sizes.get(lb.label_id, 0)) for lb in labels}
    if not ids or embed is None:
        return out
    corpus = store.run(run_id)["corpus"]
    docs = store.documents(corpus, ids)
    X = unit(embed(store, [d.text for d in docs], [text_hash(d.text) for d in docs]))
    own = np.array([place.label_of[d.doc_id] for d in docs])
    present = [lb.label_id for lb in labels if (own == lb.label_id).any()]
    if not present:
        return out
    C = unit(np.stack([X[own == lid].mean(axis=0) for lid in present]))
    S = X @ C.T  # document x label centroid similarity
    index = {lid: j for j, lid in enumerate(present)}
    CC = C @ C.T
    np.fill_diagonal(CC, -np.inf)
    for lid, j in index.items():
        rows = np.flatnonzero(own == lid)
        p = out[lid]
        order = rows[np.argsort(-S[rows, j], kind="stable")]
        p.typical = [_doc(docs[r], place, float(S[r, j])) for r in order[:typical]]
        if len(present) > 1:
            k = int(np.argmax(CC[j]))
            p.nearest, p.nearest_sim = present[k], float(CC[j, k])
            p.neighbours = [present[i] for i in np.argsort(-CC[j], kind="stable")[: len(present) - 1]]
            others = S[rows].copy()
            others[:, j] = -np.inf
            margin = S[rows, j] - others.max(axis=1)
            shown = {d["doc_id"] for d in p.typical}
            for i in np.argsort(margin, kind="stable"):
                if len(p.border) >= border:
                    break
                r = rows[i]
                if docs[r].doc_id not in shown:
                    p.border.append(_doc(docs[r], place, float(S[r, j])) | {"near": present[int(np.argmax(others[i]))]})
    return out


def _doc(doc, place: Placement, sim: float) -> dict:
    return {"doc_id": doc.doc_id, "text": doc.text, "label_id": place.label_of[doc.doc_id],
            "source": place.source_of[doc.doc_id], "sim": sim}
