"""Classify inside any DuckDB session: ``SELECT tnt_classify(text) FROM docs``.

``register(con, model)`` adds vectorised Arrow functions to a user's own connection:

* ``tnt_classify(text VARCHAR) -> VARCHAR``        label name
* ``tnt_classify_id(text VARCHAR) -> VARCHAR``     stable label id ("L3", "other")
* ``tnt_classify_proba(text VARCHAR) -> DOUBLE``   probability of that label
* ``tnt_classify_uncertain(text VARCHAR) -> BOOLEAN`` conformal prediction set size != 1
* ``tnt_classify_vector(vec FLOAT[]) -> VARCHAR``  label id from a precomputed embedding (no embedding cost)
* ``tnt_classify_parent(text VARCHAR) -> VARCHAR`` level-2 (parent) name of a two-level taxonomy (NULL if flat)
* ``tnt_classify_parent_id(text VARCHAR) -> VARCHAR`` its stable parent id ("P2")

DuckDB hands each function whole vectors of rows (Arrow arrays), so texts are embedded in batches. Using
several of these functions on the same column in one query embeds each chunk once: the last chunks' results
are memoised by content.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from workflow.classify.embed import get_embedder
from workflow.classify.loader import ServingModel, load_model
from workflow.classify.predict import vectors_from_arrow

MEMO_CHUNKS = 8  # recent chunks kept; DuckDB evaluates the functions of one chunk back to back


class _Classifier:
    """Arrow text array -> (idx, prob, uncertain) with a small memo keyed by the chunk's content."""

    def __init__(self, model: ServingModel, batch_size: int) -> None:
        self.model = model
        self.embedder = get_embedder(model.embedding_model)
        self.batch_size = batch_size
        self._memo: OrderedDict[bytes, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, texts: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(idx, prob, uncertain, valid) for every row; rows with a NULL text are not valid."""
        if isinstance(texts, pa.ChunkedArray):
            texts = texts.combine_chunks()
        values = texts.to_pylist()
        key = hashlib.sha256("\x1f".join("\x00" if v is None else v for v in values).encode()).digest()
        with self._lock:
            if key in self._memo:
                self._memo.move_to_end(key)
                return self._memo[key]
        valid = np.array([v is not None for v in values], dtype=bool)
        n = len(values)
        idx, prob, unc = np.zeros(n, dtype=np.int64), np.zeros(n), np.zeros(n, dtype=bool)
        if valid.any():
            X = self.embedder.embed([v for v in values if v is not None], batch_size=self.batch_size)
            idx[valid], prob[valid], unc[valid] = self.model.classify(X)
        result = (idx, prob, unc, valid)
        with self._lock:
            self._memo[key] = result
            while len(self._memo) > MEMO_CHUNKS:
                self._memo.popitem(last=False)
        return result


def _labels(values: list[str | None], idx: np.ndarray, valid: np.ndarray) -> pa.Array:
    return pa.array(values, type=pa.string()).take(pa.array(idx, mask=~valid))


def register(con: Any, model: ServingModel | str | Path, *, prefix: str = "tnt_classify",
             batch_size: int = 64) -> ServingModel:
    """Register the tnt_classify* functions on a DuckDB connection; ``model`` may be an artifact directory.

    Returns the loaded model. Functions are registered as deterministic, so DuckDB may reuse results for
    equal inputs within a query.
    """
    try:
        from duckdb import sqltypes as T  # duckdb >= 1.4
    except ImportError:  # pragma: no cover - older duckdb
        from duckdb import typing as T

    if not isinstance(model, ServingModel):
        model = load_model(str(model))
    run = _Classifier(model, batch_size)
    ids, names = list(model.labels), list(model.label_names)

    def label_name(texts: pa.Array) -> pa.Array:
        idx, _, _, valid = run(texts)
        return _labels(names, idx, valid)

    def label_id(texts: pa.Array) -> pa.Array:
        idx, _, _, valid = run(texts)
        return _labels(ids, idx, valid)

    def proba(texts: pa.Array) -> pa.Array:
        _, prob, _, valid = run(texts)
        return pa.array(prob, mask=~valid, type=pa.float64())

    def uncertain(texts: pa.Array) -> pa.Array:
        _, _, unc, valid = run(texts)
        return pa.array(unc, mask=~valid, type=pa.bool_())

    def parent_name(texts: pa.Array) -> pa.Array:
        idx, _, _, valid = run(texts)
        return _labels(model.parent_names, idx, valid)

    def parent_id(texts: pa.Array) -> pa.Array:
        idx, _, _, valid = run(texts)
        return _labels(model.parent_ids, idx, valid)

    def from_vector(vecs: pa.Array) -> pa.Array:
        if isinstance(vecs, pa.ChunkedArray):
            vecs = vecs.combine_chunks()
        valid = np.asarray(vecs.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
        idx = np.zeros(len(vecs), dtype=np.int64)
        if valid.any():
            X = vectors_from_arrow(vecs.filter(pa.array(valid)))
            idx[valid] = model.classify(X)[0]
        return _labels(ids, idx, valid)

    fns = [
        (prefix, label_name, [T.VARCHAR], T.VARCHAR),
        (f"{prefix}_id", label_id, [T.VARCHAR], T.VARCHAR),
        (f"{prefix}_proba", proba, [T.VARCHAR], T.DOUBLE),
        (f"{prefix}_uncertain", uncertain, [T.VARCHAR], T.BOOLEAN),
        (f"{prefix}_vector", from_vector, [con.list_type(T.FLOAT)], T.VARCHAR),
        (f"{prefix}_parent", parent_name, [T.VARCHAR], T.VARCHAR),
        (f"{prefix}_parent_id", parent_id, [T.VARCHAR], T.VARCHAR),
    ]
    for name, fn, params, ret in fns:
        try:
            con.remove_function(name)
        except Exception:  # not registered yet
            pass
        con.create_function(name, fn, params, ret, type="arrow", null_handling="special", side_effects=False)
    return model


__all__ = ["register"]
