"""`tnt predict --engine ray`: the same prediction spread over a Ray cluster's CPUs.

The driver reads the input exactly as the single-machine path does (workflow.classify.predict.open_input: same
ids, same validation) and writes the same output (a table or a Parquet file, resumable). Only embedding and
classifying move: each batch goes to one of a pool of Ray actors, each holding the model and its embedder, loaded
once. At most two batches per actor are in flight and results are written in input order, so memory stays
bounded and the output rows are the single-machine path's rows. Workers need tnt installed (the embedding model
ships with it); the embedding cache in --db is not used (workers have no database).

    tnt predict --engine ray --model ./artifact --input docs.parquet --output preds.parquet
    tnt predict --engine ray --ray-address auto ...      # an existing cluster (`ray start --head` / KubeRay)

In Python: ``predict_ray(model, batches, sink)`` with the same arguments as ``predict_stream``.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable
from typing import Any

import numpy as np
import pyarrow as pa

from workflow.classify.loader import ServingModel
from workflow.classify.predict import InputBatch, PredictStats, Sink, output_batch
from workflow.progress import progress_bar

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage report from a local cluster


class _Classifier:
    """One Ray actor: the model and its embedder, loaded once, classifying whole batches."""

    def __init__(self, model: ServingModel, embed_batch_size: int = 64) -> None:
        from workflow.classify.embed import get_embedder

        self.model, self.embed_batch_size = model, embed_batch_size
        self.embedder = None if model.embedding_model is None else get_embedder(model.embedding_model)

    def run(self, ids: pa.Array, texts: list[str] | None, vectors: np.ndarray | None
            ) -> tuple[pa.RecordBatch, np.ndarray, np.ndarray]:
        if vectors is None:
            vectors = self.embedder.embed(texts or [], batch_size=self.embed_batch_size)  # type: ignore[union-attr]
        idx, prob, unc, sets = self.model.classify_sets(vectors)
        return output_batch(self.model, ids, idx, prob, unc, sets), idx, unc


def start_ray(address: str | None = None, num_cpus: int | None = None) -> Any:
    """Connect to a cluster (``address``, e.g. "auto") or start a local one on ``num_cpus`` CPUs; a session already
    started in this process is reused."""
    import ray

    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
                     object_store_memory=256 * 1024 * 1024)
    return ray


def predict_ray(model: ServingModel, batches: Iterable[InputBatch], sink: Sink, *, total: int | None = None,
                show_progress: bool = False, address: str | None = None, workers: int | None = None,
                threads_per_worker: int = 1) -> PredictStats:
    """Classify every batch on Ray actors and write the results in input order (see the module docstring).
    ``workers`` defaults to the cluster's CPUs / ``threads_per_worker``."""
    from workflow.classify.predict import fault_after

    ray = start_ray(address)
    n = workers or max(1, int(ray.cluster_resources().get("CPU", 1)) // threads_per_worker)
    actor = ray.remote(_Classifier).options(
        num_cpus=threads_per_worker, runtime_env={"env_vars": {"TNT_EMBED_THREADS": str(threads_per_worker)}})
    model_ref = ray.put(model)
    pool = [actor.remote(model_ref) for _ in range(n)]
    stats, k = PredictStats(), len(model.labels)
    done_ids = getattr(sink, "done_ids", None)
    done = getattr(sink, "done", 0)
    in_flight: deque = deque()
    finished, written, turn = False, 0, 0
    label = f"predict on ray ({n} workers" + (f", resumed, {done} done before)" if done else ")")
    try:
        with progress_bar(label, total=None if total is None else max(total - done, 0),  # type: ignore[arg-type]
                          enabled=show_progress) as advance:

            def collect() -> None:
                nonlocal written
                rb, idx, unc = ray.get(in_flight.popleft())
                sink.write(rb)
                stats.add(idx, unc, k)
                advance(len(idx))
                written += 1
                fault_after(written)

            for batch in batches:
                if done_ids is not None:
                    batch = done_ids.filter(batch)
                if len(batch.ids) == 0:
                    continue
                in_flight.append(pool[turn % n].run.remote(batch.ids, batch.texts, batch.vectors))
                turn += 1
                if len(in_flight) >= 2 * n:
                    collect()
            while in_flight:
                collect()
        finished = True
    finally:
        for a in pool:
            ray.kill(a)
        if finished or not hasattr(sink, "abort"):
            sink.close()
        else:
            sink.abort()  # type: ignore[attr-defined]
    return stats


def ray_available() -> bool:
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


__all__ = ["predict_ray", "start_ray", "ray_available"]
