"""Whether a label that `tnt update` proposes is new or duplicates one the taxonomy has (`screen`), and what
happens to a duplicate: its documents are placed under the label it duplicates, or, without documents, it is
refused (`screen_proposal`)."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from workflow.config import JobConfig
from workflow.evolve import drift
from workflow.graph.context import log
from workflow.names import GENERIC_WORDS, stem
from workflow.store import Label

DUPLICATE_SIMILARITY = 0.92  # a proposed label this close to an existing one (name + description) is not new
CENTROID_FLOOR = 0.85  # least cosine similarity of centroids that makes a proposed label a duplicate (see screen)
NAME_OVERLAP = 0.5  # least Jaccard overlap of content words for the name-and-centroid rule


def _bare(name: str) -> str:
    return re.sub(r"(\s*\([^()]*\))+\s*$", "", name).strip().lower() or name.lower()


_GENERIC = GENERIC_WORDS  # words a label name shares with every other label (workflow/names.py)
_stem = stem


def name_tokens(name: str) -> frozenset[str]:
    """The content words of a label name, stemmed: "Refund / money / bought" -> {refund, money, bought}."""
    return frozenset(_stem(w) for w in re.findall(r"[a-z0-9]+", _bare(name)) if w not in _GENERIC and len(w) > 1)


def _jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b) if a and b else 0.0


def screen(proposed: Sequence[Label], current: Sequence[Label], centroids: dict[str, np.ndarray],
           proposed_centroids: dict[str, np.ndarray], text_sim: np.ndarray | None = None) -> list[dict | None]:
    """Per proposed label, the existing label it duplicates (None: it is new), as
    {"into", "rule", "similarity", "threshold"}. Rules, first match wins:

    * "same name": the same name up to a trailing "(keyword)", or the same content words (stemmed, generic words
      like "requests" left out: "Requests about refunds" = "Refund requests");
    * "centroid": the proposed label's documents (the cluster it was built from; ``proposed_centroids``, unit
      vectors) are closer to an existing label's training documents (``centroids``, unit vectors) than the two
      closest existing labels are to each other: the taxonomy never keeps labels that close apart
      (CENTROID_FLOOR at least, so a taxonomy of a few far-apart labels does not swallow new topics);
    * "name and centroid": the names share content words (Jaccard >= NAME_OVERLAP: "Refund / money / bought"
      and "Money / refund / cash") and the proposed documents are closer to that label than its nearest other
      existing label is (neither rule alone: "Pending card payment" and "Declined card payment" share as many
      words and are different intents);
    * "description": the embeddings of name and description are near-identical (``text_sim``, proposed x current,
      >= DUPLICATE_SIMILARITY).
    """
    cur_tokens = [name_tokens(lb.name) for lb in current]
    bare = {_bare(lb.name): lb.label_id for lb in current}
    with_c = [lb.label_id for lb in current if lb.label_id in centroids]
    C = np.stack([centroids[i] for i in with_c]) if with_c else np.zeros((0, 0), dtype=np.float32)
    if len(with_c) >= 2:
        S = C @ C.T
        np.fill_diagonal(S, -1.0)
        closest = S.max(axis=1)  # each existing label's similarity to its nearest other existing label
        threshold = max(float(S.max()), CENTROID_FLOOR)
    else:
        closest, threshold = np.full(len(with_c), CENTROID_FLOOR), CENTROID_FLOOR
    row_of = {lid: i for i, lid in enumerate(with_c)}
    out: list[dict | None] = []
    for p, lb in enumerate(proposed):
        toks = name_tokens(lb.name)
        same = bare.get(_bare(lb.name)) or next(
            (c.label_id for c, t in zip(current, cur_tokens) if toks and t == toks), None)
        if same:
            out.append({"into": same, "rule": "same name", "similarity": 1.0, "threshold": 1.0})
            continue
        v = proposed_centroids.get(lb.label_id)
        sims = C @ v if v is not None and len(with_c) else np.zeros(0)
        if len(sims) and float(sims.max()) >= threshold:
            j = int(sims.argmax())
            out.append({"into": with_c[j], "rule": "centroid", "similarity": round(float(sims[j]), 3),
                        "threshold": round(threshold, 3)})
            continue
        hit = None
        for c, t in zip(current, cur_tokens):
            j = row_of.get(c.label_id)
            if j is None or _jaccard(toks, t) < NAME_OVERLAP or not len(sims):
                continue
            if float(sims[j]) >= float(closest[j]) and (hit is None or sims[j] > hit["similarity"]):
                hit = {"into": c.label_id, "rule": "name and centroid", "similarity": round(float(sims[j]), 3),
                       "threshold": round(float(closest[j]), 3), "name_overlap": round(_jaccard(toks, t), 3)}
        if hit:
            out.append(hit)
            continue
        if text_sim is not None and text_sim.shape[1] and float(text_sim[p].max()) >= DUPLICATE_SIMILARITY:
            j = int(text_sim[p].argmax())
            out.append({"into": current[j].label_id, "rule": "description",
                        "similarity": round(float(text_sim[p, j]), 3), "threshold": DUPLICATE_SIMILARITY})
            continue
        out.append(None)
    return out


def _text_similarity(config: JobConfig, proposed: Sequence[Label], current: Sequence[Label]) -> np.ndarray | None:
    if not proposed or not current:
        return None
    from workflow.classify.embed import get_embedder

    emb = get_embedder(config.embedding_model)
    A = emb.embed([f"{lb.name}. {lb.description}" for lb in proposed])
    B = emb.embed([f"{lb.name}. {lb.description}" for lb in current])
    return np.asarray(A @ B.T)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.linalg.norm(v)), 1e-12)


def screen_proposal(config: JobConfig, proposed: list[Label], members: dict[str, str], current: list[Label],
                     base: drift.Baseline, new_ids: list[str], X: np.ndarray, cap: int
                     ) -> tuple[list[Label], list[dict], list[dict]]:
    """Split the proposal into labels to add, duplicates merged into the existing label they duplicate (their
    documents are placed under it) and labels refused (a duplicate without documents, or over the cap)."""
    row = {d: i for i, d in enumerate(new_ids)}
    centroids = {lid: base.centroids[i] for i, lid in enumerate(base.centroid_labels) if i < len(base.centroids)}
    mine: dict[str, list[str]] = {}
    for d, lid in members.items():
        if d in row:
            mine.setdefault(lid, []).append(d)
    proposed_centroids = {lid: _unit(X[[row[d] for d in docs]].mean(axis=0)) for lid, docs in mine.items()}
    verdicts = screen(proposed, current, centroids, proposed_centroids, _text_similarity(config, proposed, current))
    names = {lb.label_id: lb.name for lb in current}
    novel, merged, refused = [], [], []
    for lb, v in zip(proposed, verdicts):
        if v is None:
            if len(novel) < cap:
                novel.append(lb)
            else:
                refused.append({"name": lb.name, "reason": f"over the cap of {cap} new labels"})
            continue
        entry = {"name": lb.name, "into": v["into"], "into_name": names.get(v["into"], v["into"])} | {
            k: v[k] for k in v if k != "into"}
        docs = sorted(mine.get(lb.label_id, []))
        if docs:
            merged.append(entry | {"docs": docs})
        else:
            refused.append(entry | {"reason": "duplicates an existing label"})
    for m in merged:
        log.info("update: proposed label %r merged into %s %r (%s: %.3f >= %.3f; %d documents)", m["name"],
                 m["into"], m["into_name"], m["rule"], m["similarity"], m["threshold"], len(m["docs"]))
    for r in refused:
        log.info("update: proposed label %r refused (%s)", r["name"], r.get("rule") or r["reason"])
    return novel, merged, refused
