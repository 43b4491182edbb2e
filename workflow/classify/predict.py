"""Apply a classifier to inputs of any size in batches: constant memory, cached embeddings, one row per doc.

``predict_corpus`` labels a run's corpus into the ``predictions`` table (the graph's predict node).
``predict_stream`` is the general path behind ``tnt predict``: batches from a corpus, a DuckDB table or a
JSONL/CSV/Parquet file (texts, or precomputed vectors) -> classifier -> a DuckDB table or a Parquet file, and a
drift summary (share of uncertain and Other predictions) at the end.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)

from workflow.classify.embed import get_embedder
from workflow.classify.loader import ServingModel, from_store, sets_of
from workflow.classify.vectors import embed_texts
from workflow.ingest import duckdb_table
from workflow.progress import progress_bar
from workflow.store import OTHER_ID, Store, content_id, text_hash

UNCERTAIN = "uncertain"

OUTPUT_SCHEMA = pa.schema([
    ("doc_id", pa.string()), ("label_id", pa.string()), ("label_name", pa.string()),
    ("probability", pa.float64()), ("uncertain", pa.bool_()), ("model_version", pa.string()),
    ("label_ids", pa.list_(pa.string())),  # every predicted label of a multi-label model; null otherwise
    ("parent_id", pa.string()), ("parent_name", pa.string()),  # level 2 of a hierarchy; null for a flat taxonomy
])


class PredictInputError(ValueError):
    """The input or output of `tnt predict` cannot be used as given; the message says why."""


def predict_corpus(store: Store, model_id: str, corpus: str, run_id: str, *, batch_size: int = 2048,
                   show_progress: bool = True) -> int:
    """Label a run's whole corpus into ``predictions``, deciding exactly as every other serving path does."""
    model = from_store(store, model_id)
    embedder = get_embedder(model.embedding_model)
    n = 0
    with progress_bar("predict", total=store.corpus_size(corpus), enabled=show_progress) as advance:
        for rows in store.iter_corpus(corpus, batch_size):
            ids, texts, hashes = zip(*rows)
            idx, prob, unc, sets = model.classify_sets(embed_texts(store, embedder, texts, hashes))
            store.save_predictions(
                model_id, run_id,
                [(d, model.labels[i], float(p), bool(u)) for d, i, p, u in zip(ids, idx.tolist(), prob, unc)],
                None if sets is None else sets_of(sets, model.labels),
            )
            n += len(rows)
            advance(len(rows))
    return n


# --------------------------------------------------------------------------- streaming inputs


@dataclass
class InputBatch:
    """One batch of documents: ids plus either texts (to embed) or precomputed vectors."""

    ids: pa.Array
    texts: list[str] | None = None
    hashes: list[str] | None = None
    vectors: np.ndarray | None = None


def vectors_from_arrow(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """(n, dim) float32 from a FLOAT[dim] / FLOAT[] column, without a Python loop over rows."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    n = len(arr)
    if n == 0:
        return np.zeros((0, 0), dtype=np.float32)
    if arr.null_count:
        raise PredictInputError(f"{arr.null_count} rows have no vector")
    if pa.types.is_fixed_size_list(arr.type):
        dim = arr.type.list_size
    elif pa.types.is_list(arr.type) or pa.types.is_large_list(arr.type):
        lengths = pa.compute.list_value_length(arr).to_numpy()
        dim = int(lengths[0])
        if (lengths != dim).any():
            raise PredictInputError("vectors have different lengths")
    else:
        raise PredictInputError(f"expected a list-of-float vector column, got {arr.type}")
    flat = arr.flatten()  # honours slice offsets
    values = flat.to_numpy(zero_copy_only=False)
    return values.astype(np.float32, copy=False).reshape(n, dim)


def _text_batch(ids: list[str | None] | pa.Array | None, texts: list[Any]) -> InputBatch:
    """Drop rows without text; documents without an id get the content id `tnt run` would give them."""
    keep = [i for i, t in enumerate(texts) if t is not None]
    tx = [str(texts[i]) for i in keep]
    if ids is None:
        id_list = [content_id(t) for t in tx]
    else:
        raw = ids.to_pylist() if isinstance(ids, pa.Array) else list(ids)
        id_list = [str(raw[i]) if raw[i] is not None else content_id(t) for i, t in zip(keep, tx)]
    return InputBatch(pa.array(id_list, type=pa.string()), tx)


def _arrow_batches(batches: Iterable[pa.RecordBatch], text_field: str, id_field: str | None,
                   vector_field: str | None) -> Iterator[InputBatch]:
    for rb in batches:
        names = rb.schema.names
        ids = rb.column(names.index(id_field)) if id_field and id_field in names else None
        if vector_field:
            if ids is None:
                raise PredictInputError(f"precomputed vectors need an id column; no field '{id_field}'")
            yield InputBatch(ids.cast(pa.string()), vectors=vectors_from_arrow(rb.column(names.index(vector_field))))
        else:
            yield _text_batch(ids, rb.column(names.index(text_field)).to_pylist())


def _row_batches(rows: Iterable[tuple[int, dict]], text_field: str, id_field: str | None,
                 batch_size: int) -> Iterator[InputBatch]:
    ids: list[Any] = []
    texts: list[Any] = []
    first = True
    for _, row in rows:
        if first and text_field not in row:
            raise PredictInputError(f"no field '{text_field}' (fields: {', '.join(map(str, row))}); use --text-field")
        first = False
        ids.append(row.get(id_field) if id_field else None)
        texts.append(row.get(text_field))
        if len(texts) == batch_size:
            yield _text_batch(ids, texts)
            ids, texts = [], []
    if texts:
        yield _text_batch(ids, texts)


def _parquet_columns(path: Path, wanted: list[str]) -> tuple[Any, list[str], int]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:
        raise PredictInputError(f"{path}: not a readable Parquet file ({exc})") from None
    names = pf.schema_arrow.names
    return pf, [c for c in wanted if c in names], pf.metadata.num_rows


def open_input(source: str, store: Store | None, *, text_field: str = "text", id_field: str | None = "id",
               vector_field: str | None = None, batch_size: int = 4096,
               memory_limit: str | None = None) -> tuple[Iterator[InputBatch], int | None]:
    """(batches, total rows if known) for a data file, ``db.duckdb:table``, or a corpus or table name in ``store``
    (a file of that name wins).

    ``memory_limit`` caps the DuckDB instance an input table is read from, when it is not ``store``."""
    wanted = [c for c in (id_field, vector_field or text_field) if c]
    if (db_table := duckdb_table(source)) is not None:
        db, table = db_table
        same = store is not None and Path(db).resolve() == Path(store.path).resolve()
        src = store if same else _open_readonly(db)
        if memory_limit and not same:
            _limit(src, memory_limit)
        cols = [c for c in wanted if c in _table_columns(src, table)]
        if (vector_field or text_field) not in cols:
            raise PredictInputError(f"{source}: no column '{vector_field or text_field}'")
        return _arrow_batches(src.table_batches(table, cols, batch_size), text_field, id_field, vector_field), None
    path = Path(source)
    if path.suffix.lower() in (".parquet", ".pq") and path.is_file():
        pf, cols, total = _parquet_columns(path, wanted)
        if (vector_field or text_field) not in cols:
            raise PredictInputError(f"{source}: no column '{vector_field or text_field}'; use --text-field")
        it = pf.iter_batches(batch_size=batch_size, columns=cols)
        return _arrow_batches(it, text_field, id_field, vector_field), total
    if path.exists():
        if vector_field:
            raise PredictInputError("--vector-field needs a Parquet file or a DuckDB table")
        from workflow.ingest import InputError, iter_source

        try:
            rows = iter_source(source)
        except InputError as exc:
            raise PredictInputError(str(exc)) from None
        return _row_batches(rows, text_field, id_field, batch_size), None
    if store is not None and _bare_name(source):
        if store.corpus_size(source):
            return _corpus_batches(store, source, batch_size), store.corpus_size(source)
        cols = store.table_columns(source)
        if cols:  # a table (or view) of --db, named bare
            if (vector_field or text_field) not in cols:
                raise PredictInputError(f"table '{source}' in {store.path} has no column "
                                        f"'{vector_field or text_field}' (columns: {', '.join(cols)}); use "
                                        f"{'--vector-field' if vector_field else '--text-field'}")
            picked = [c for c in wanted if c in cols]
            return _arrow_batches(store.table_batches(source, picked, batch_size), text_field, id_field,
                                  vector_field), None
    if store is None or not _bare_name(source):
        hint = " (a corpus or table name needs a database: --db)" if names_db_object(source) else ""
        raise PredictInputError(f"{source}: no such file{hint}")
    raise PredictInputError(f"{source}: no such file, and no table or corpus of that name in {store.path} "
                            "(a table of another DuckDB file: file.duckdb:table)")


DATA_SUFFIXES = (".jsonl", ".ndjson", ".json", ".csv", ".parquet", ".pq")


def names_db_object(source: str) -> bool:
    """Whether `tnt predict` needs a database to read this input: a bare name (no existing file of that name, not
    file.duckdb:table, no directory part) without a data-file extension names a corpus or table in --db."""
    return _bare_name(source) and Path(source).suffix.lower() not in DATA_SUFFIXES


def _bare_name(source: str) -> bool:
    if duckdb_table(source) is not None or "/" in source or "\\" in source:
        return False
    return not Path(source).exists()


def _corpus_batches(store: Store, corpus: str, batch_size: int) -> Iterator[InputBatch]:
    for rb in store.corpus_batches(corpus, batch_size):
        yield InputBatch(rb.column(0), rb.column(1).to_pylist(), rb.column(2).to_pylist())


def _limit(store: Store, memory_limit: str) -> None:
    from workflow.store import StoreError

    try:
        store.limit_memory(memory_limit)
    except StoreError as exc:
        raise PredictInputError(str(exc)) from None


def _open_readonly(db: str) -> Store:
    from workflow.store import StoreError

    if not Path(db).is_file():
        raise PredictInputError(f"{db}: no such DuckDB file")
    try:
        return Store(db, read_only=True)
    except StoreError as exc:
        raise PredictInputError(str(exc)) from None


def _table_columns(store: Store, table: str) -> list[str]:
    cols = store.table_columns(table)
    if not cols:
        raise PredictInputError(f"{store.path}: no table '{table}'")
    return cols


# --------------------------------------------------------------------------- outputs


class Sink:
    """Where prediction batches go; ``close`` finishes the output."""

    def write(self, batch: pa.RecordBatch) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def close(self) -> None:
        pass


class ParquetSink(Sink):
    def __init__(self, path: Path, overwrite: bool = False) -> None:
        import pyarrow.parquet as pq

        if path.exists() and not overwrite:
            raise PredictInputError(f"{path} already exists; pass --overwrite to replace it")
        path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = pq.ParquetWriter(path, OUTPUT_SCHEMA)

    def write(self, batch: pa.RecordBatch) -> None:
        self._writer.write_batch(batch)

    def close(self) -> None:
        self._writer.close()


class TableSink(Sink):
    def __init__(self, store: Store, table: str, overwrite: bool = False) -> None:
        from workflow.store import StoreError

        try:
            store.create_prediction_table(table, overwrite)
        except StoreError as exc:
            raise PredictInputError(str(exc)) from None
        self.store, self.table = store, table

    def write(self, batch: pa.RecordBatch) -> None:
        self.store.append_arrow(self.table, batch)


def open_output(target: str, store: Store | None, overwrite: bool = False) -> Sink:
    """A ``.parquet`` file, or a table name in ``store``."""
    if target.lower().endswith((".parquet", ".pq")):
        return ParquetSink(Path(target), overwrite)
    if store is None:
        raise PredictInputError(f"output table '{target}' needs a database (--db)")
    if not target.replace("_", "").isalnum():
        raise PredictInputError(f"'{target}' is not a plain table name (letters, digits, _) nor a .parquet file")
    return TableSink(store, target, overwrite)


# --------------------------------------------------------------------------- the streaming loop


@dataclass
class PredictStats:
    """What a prediction pass saw: totals and the drift signals (uncertain and Other shares)."""

    n: int = 0
    uncertain: int = 0
    counts: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def add(self, idx: np.ndarray, unc: np.ndarray, k: int) -> None:
        if not len(self.counts):
            self.counts = np.zeros(k, dtype=np.int64)
        self.n += len(idx)
        self.uncertain += int(unc.sum())
        self.counts += np.bincount(idx, minlength=k)

    def share(self, count: int) -> float:
        return count / self.n if self.n else 0.0


def output_batch(model: ServingModel, ids: pa.Array, idx: np.ndarray, prob: np.ndarray,
                 unc: np.ndarray, sets: list[list[int]] | None = None) -> pa.RecordBatch:
    """Prediction rows as Arrow, built with vectorised takes (no Python loop per row, except label sets)."""
    take = pa.array(np.asarray(idx, dtype=np.int32))
    n = len(idx)
    if sets is None:
        label_ids = pa.nulls(n, pa.list_(pa.string()))
    else:
        label_ids = pa.array(sets_of(sets, model.labels), type=pa.list_(pa.string()))
    return pa.RecordBatch.from_arrays(
        [ids.cast(pa.string()), pa.array(model.labels, type=pa.string()).take(take),
         pa.array(model.label_names, type=pa.string()).take(take),
         pa.array(np.asarray(prob, dtype=np.float64)), pa.array(unc, type=pa.bool_()),
         pa.array([model.version], type=pa.string()).take(pa.array(np.zeros(n, dtype=np.int32))), label_ids,
         pa.array(model.parent_ids, type=pa.string()).take(take),
         pa.array(model.parent_names, type=pa.string()).take(take)],
        schema=OUTPUT_SCHEMA,
    )


def make_vectorizer(model: ServingModel, store: Store | None, embed_batch_size: int = 64,
                    ) -> Callable[[InputBatch], np.ndarray]:
    """Texts -> vectors with the model's embedder; cached in ``store`` (by text hash) when one is given."""
    embedder = get_embedder(model.embedding_model)

    def vectorize(batch: InputBatch) -> np.ndarray:
        if batch.vectors is not None:
            return batch.vectors
        texts = batch.texts or []
        if store is None:
            return embedder.embed(texts, batch_size=embed_batch_size)
        hashes = batch.hashes or [text_hash(t) for t in texts]
        return embed_texts(store, embedder, texts, hashes)

    return vectorize


def prefetch(items: Iterable[Any], depth: int = 2) -> Iterator[Any]:
    """Pull items from a background thread, at most ``depth`` ahead.

    Reading the next batch (DuckDB/Parquet decoding) releases the GIL, so it overlaps with classifying and
    writing the current one; memory stays bounded at depth + 1 batches. Errors surface in the consumer.
    """
    import queue
    import threading

    q: queue.Queue = queue.Queue(maxsize=depth)
    done, stop = object(), threading.Event()

    def work() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(done)
        except BaseException as exc:  # handed to the consumer
            q.put(exc)

    thread = threading.Thread(target=work, name="tnt-prefetch", daemon=True)
    thread.start()
    try:
        while (item := q.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)


FAULT_ENV = "TNT_PREDICT_FAULT"  # "kill:N": SIGKILL this process after N batches are written (tests, benchmarks)


def fault_after(batches_written: int) -> None:
    """TNT_PREDICT_FAULT=kill:N kills this process (SIGKILL, no cleanup) once N batches are written."""
    spec = os.environ.get(FAULT_ENV, "")
    if spec.startswith("kill:") and batches_written >= int(spec.split(":", 1)[1]):
        os.kill(os.getpid(), signal.SIGKILL)


def predict_stream(model: ServingModel, batches: Iterable[InputBatch], sink: Sink, *,
                   vectorize: Callable[[InputBatch], np.ndarray] | None = None, total: int | None = None,
                   show_progress: bool = False, read_ahead: int = 2,
                   on_batch: Callable[[np.ndarray], None] | None = None) -> PredictStats:
    """Classify every batch and write it; memory stays at a few batches whatever the input size. ``on_batch``
    sees each batch's vectors (e.g. per-batch drift figures).

    A resumable sink (workflow.classify.checkpoint) that took up an unfinished output drops the documents it
    already holds from each batch before they are embedded; the bar then counts the rest. A sink with ``abort``
    keeps an unfinished output unfinished when this fails or is interrupted."""
    stats = PredictStats()
    k = len(model.labels)
    done_ids = getattr(sink, "done_ids", None)
    done = getattr(sink, "done", 0)
    if read_ahead:
        batches = prefetch(batches, read_ahead)
    label = f"predict (resumed, {done} done before)" if done else "predict"
    finished, written = False, 0
    try:
        with progress_bar(label, total=None if total is None else max(total - done, 0),  # type: ignore[arg-type]
                          enabled=show_progress) as advance:
            for batch in batches:
                if done_ids is not None:
                    batch = done_ids.filter(batch)
                if len(batch.ids) == 0:
                    continue
                X = batch.vectors if batch.vectors is not None else vectorize(batch)  # type: ignore[misc]
                if X.shape[1] != _dim(model, X):
                    raise PredictInputError(f"vectors have {X.shape[1]} dimensions; the model expects {_dim(model, X)}")
                idx, prob, unc, sets = model.classify_sets(X)
                sink.write(output_batch(model, batch.ids, idx, prob, unc, sets))
                stats.add(idx, unc, k)
                if on_batch is not None:
                    on_batch(X)
                advance(len(idx))
                written += 1
                fault_after(written)
        finished = True
    finally:
        if finished or not hasattr(sink, "abort"):
            sink.close()
        else:
            sink.abort()  # type: ignore[attr-defined]
    return stats


def _dim(model: ServingModel, X: np.ndarray) -> int:
    if model.heads is not None:
        return model.heads.W.shape[0]
    n = getattr(model.clf.estimator, "n_features_in_", None)
    return int(n) if n is not None else X.shape[1]


def other_share(model: ServingModel, stats: PredictStats) -> float:
    """Share of predictions that are the special Other label (0 when the model never learnt it)."""
    if OTHER_ID not in model.labels or not stats.n:
        return 0.0
    return stats.share(int(stats.counts[model.labels.index(OTHER_ID)]))
