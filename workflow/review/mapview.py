"""A 2-D map of the documents: a seeded sample of at most MAP_POINTS placed by a projection of their embeddings,
coloured by label, with each label's name at the centre of its points.

The map is drawn as inline SVG by the templates (no script: it renders under the review page's strict CSP and in a
report opened offline); hover text is each point's SVG <title>. Which projection, and why a sample, is measured in
benchmarks/bench_map.py (see benchmarks/README.md).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field

import numpy as np

from workflow.review.labelview import Placement
from workflow.store import OTHER_ID, Store, text_hash

MAP_POINTS = 2000
HOVER_CHARS = 160
PROJECTIONS = ("tsne", "pca")


@dataclass
class DocMap:
    """Points in [0, 1]^2 (doc_id, x, y, label_id, text), label centres, and the projection used."""

    points: list[dict]
    centres: dict[str, tuple[float, float]]
    method: str
    total: int  # documents with a known label, of which `points` is a sample
    note: str = ""


@dataclass
class ProjectionCache:
    """A projection depends on the sampled documents only (not their labels): computed once per sample."""

    key: tuple | None = None
    value: np.ndarray | None = None
    method: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)


def sample_ids(place: Placement, n: int = MAP_POINTS, seed: int = 0) -> list[str]:
    """A seeded sample of the placed documents, in doc id order (the same documents every time)."""
    ids = sorted(place.label_of)
    if len(ids) <= n:
        return ids
    rng = np.random.default_rng(seed)
    return sorted(rng.choice(ids, n, replace=False).tolist())


def project(X: np.ndarray, method: str = "tsne", seed: int = 0) -> tuple[np.ndarray, str]:
    """2-D coordinates scaled to [0, 1] and the method that made them. t-SNE (openTSNE) keeps intents apart; PCA is
    the fallback when openTSNE is not installed or there are too few points for a neighbourhood."""
    X = np.asarray(X, dtype=np.float32)
    if len(X) == 0:
        return np.zeros((0, 2)), method
    Y = None
    if method == "tsne" and len(X) >= 40:
        try:
            from openTSNE import TSNE

            # 250 iterations after the early exaggeration: 2000 BANKING77 points keep the same 10-NN intent
            # agreement as openTSNE's default 500 (0.695) in ~70% of the time (benchmarks/README.md)
            Y = np.asarray(TSNE(n_components=2, perplexity=min(30, (len(X) - 1) / 3), metric="cosine", n_iter=250,
                                random_state=seed, n_jobs=min(4, os.cpu_count() or 1), verbose=False).fit(X))
        except ImportError:
            method = "pca"
    else:
        method = "pca"
    if Y is None:
        from sklearn.decomposition import PCA

        Y = PCA(2, random_state=seed).fit_transform(X) if len(X) > 2 and X.shape[1] >= 2 else np.zeros((len(X), 2))
    lo, hi = Y.min(axis=0), Y.max(axis=0)
    return (Y - lo) / np.where(hi - lo > 0, hi - lo, 1), method


def document_map(store: Store, run_id: str, place: Placement, embed, *, n: int = MAP_POINTS, method: str = "tsne",
                 seed: int = 0, cache: ProjectionCache | None = None) -> DocMap:
    """The map of a run: ``n`` sampled placed documents, projected, with their current labels."""
    ids = sample_ids(place, n, seed)
    if not ids or embed is None:
        return DocMap([], {}, method, len(place.label_of), place.note)
    docs = store.documents(store.run(run_id)["corpus"], ids)
    cache = cache or ProjectionCache()
    with cache.lock:
        key = (run_id, tuple(ids), method, seed)
        if cache.key != key:
            X = embed(store, [d.text for d in docs], [text_hash(d.text) for d in docs])
            cache.value, cache.method = project(X, method, seed)
            cache.key = key
        Y, used = cache.value, cache.method
    points = [{"doc_id": d.doc_id, "x": float(x), "y": float(y), "label_id": place.label_of[d.doc_id],
               "source": place.source_of[d.doc_id], "text": _clip(d.text)} for d, (x, y) in zip(docs, Y)]
    centres: dict[str, tuple[float, float]] = {}
    for lid in {p["label_id"] for p in points} - {OTHER_ID}:
        mine = np.array([(p["x"], p["y"]) for p in points if p["label_id"] == lid])
        centres[lid] = tuple(float(v) for v in np.median(mine, axis=0))
    return DocMap(points, centres, used, len(place.label_of), place.note)


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= HOVER_CHARS else text[: HOVER_CHARS - 1] + "…"
