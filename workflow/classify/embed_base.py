"""What every embedder shares: the one list of embedder names, the Embedder protocol, the error for a backend that
cannot run here, and small helpers. No backend lives here, so config validation and the backends import it without
importing each other."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Protocol, runtime_checkable

import numpy as np

from workflow.cores import usable_cores

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


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (as torch.nn.functional.normalize: zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def chunks(n: int, size: int, progress: bool, label: str) -> Iterator[tuple[int, int]]:
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


def default_threads() -> int:
    """onnxruntime intra-op threads: ``TNT_EMBED_THREADS`` or the usable cores, capped at 4.

    More threads than cores only adds contention, and a model this small gains little past a few threads.
    """
    env = os.environ.get("TNT_EMBED_THREADS")
    if env:
        return max(1, int(env))
    return max(1, min(usable_cores(), 4))
