"""Document embeddings, cached in DuckDB by (text hash, model): identical texts are embedded once, ever."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from workflow.classify.embed import Embedder, get_embedder
from workflow.store import Store, text_hash


def embed_texts(store: Store, embedder: Embedder, texts: Sequence[str], hashes: Sequence[str] | None = None,
                progress: bool = False) -> np.ndarray:
    """Vectors for texts in order, computing only those not cached yet."""
    hashes = list(hashes) if hashes is not None else [text_hash(t) for t in texts]
    cached = store.cached_embeddings(embedder.name, hashes)
    missing = {h: t for h, t in zip(hashes, texts) if h not in cached}
    if missing:
        vectors = embedder.embed(list(missing.values()), progress=progress)
        store.save_embeddings(embedder.name, list(missing), vectors)
        cached.update(zip(missing, vectors))
    if not hashes:
        return np.zeros((0, embedder.dim), dtype=np.float32)
    return np.stack([cached[h] for h in hashes]).astype(np.float32, copy=False)


def embed_documents(store: Store, corpus: str, doc_ids: Sequence[str], embedding_model: str,
                    progress: bool = False) -> np.ndarray:
    """Vectors of stored documents, in the order of doc_ids: the one way to embed a corpus's documents (the run's
    context adds a per-run cache on top, `RunContext.embed`)."""
    docs = store.documents(corpus, doc_ids)
    return embed_texts(store, get_embedder(embedding_model), [d.text for d in docs], progress=progress)
