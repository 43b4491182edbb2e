"""What every node needs besides the state: the job's settings, the store, the gateway and the run's embeddings."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from workflow.classify.embed import get_embedder
from workflow.classify.vectors import embed_documents, embed_texts
from workflow.config import JobConfig
from workflow.llm.gateway import Gateway
from workflow.store import Store

log = logging.getLogger("tnt")

CACHED_VECTORS = 50_000  # document vectors a run keeps in memory (~75 MB at 384 dimensions); the store keeps all


class RunFailed(RuntimeError):
    """A step cannot go on (e.g. no valid taxonomy after all retries); the message says what to do."""


@dataclass
class RunContext:
    run_id: str
    corpus: str
    config: JobConfig
    store: Store
    gateway: Gateway
    show_progress: bool = True
    _vectors: dict[str, np.ndarray] = field(default_factory=dict, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def stage(self, name: str) -> None:
        self.store.set_run_stage(self.run_id, name)

    def embed(self, doc_ids: Sequence[str], progress: bool | None = None) -> np.ndarray:
        """The run's embeddings of its corpus's documents, rows in the order of doc_ids. Vectors are stored by text
        hash (computed once, ever) and kept in memory for the run, since several steps embed the same documents
        (clusters, shortlists per label batch, active rounds, recheck)."""
        ids = list(dict.fromkeys(doc_ids))
        with self._lock:
            found = {d: self._vectors[d] for d in ids if d in self._vectors}
        missing = [d for d in ids if d not in found]
        if missing:
            X = embed_documents(self.store, self.corpus, missing, self.config.embedding_model,
                                progress=self.show_progress if progress is None else progress)
            found.update(zip(missing, X))
            with self._lock:
                if len(self._vectors) + len(missing) > CACHED_VECTORS:
                    self._vectors.clear()  # a huge corpus: start over rather than grow without bound
                if len(missing) <= CACHED_VECTORS:
                    self._vectors.update(zip(missing, X))
        if not ids:
            return np.zeros((0, get_embedder(self.config.embedding_model).dim), dtype=np.float32)
        return np.stack([found[d] for d in doc_ids])

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """The run's embeddings of texts that are not documents (label names and descriptions), stored by hash."""
        return embed_texts(self.store, get_embedder(self.config.embedding_model), texts)
