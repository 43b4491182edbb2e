"""Documents (one corpus = the rows sharing a `corpus` name), their embeddings and gold labels, and streamed
reads of any table in the database for `tnt predict`."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import duckdb
import numpy as np

from workflow.store.connection import Database
from workflow.store.schema import Document, StoreError, now, text_hash


class Corpus(Database):
    """Documents by corpus and id; embeddings by text hash and model."""

    def insert_documents(self, corpus: str, docs: Iterable[tuple[str, str, dict]]) -> tuple[int, int]:
        """Add (doc_id, text, meta) rows; returns (added, already_present).

        Re-ingesting the same corpus is a no-op; an id that already holds a different text is refused, because
        runs that labeled the old text would silently point at new text.
        """
        rows = [(corpus, d, t, text_hash(t), len(t), json.dumps(m, default=str), now()) for d, t, m in docs]
        if not rows:
            return 0, 0
        with self.transaction() as con:
            con.execute("CREATE OR REPLACE TEMP TABLE _incoming AS SELECT * FROM documents LIMIT 0")
            con.executemany("INSERT INTO _incoming VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            clash = con.execute(
                "SELECT i.doc_id FROM _incoming i JOIN documents d USING (corpus, doc_id) "
                "WHERE d.text_hash <> i.text_hash LIMIT 1"
            ).fetchone()
            if clash:
                raise StoreError(
                    f"corpus '{corpus}' already has a document with id '{clash[0]}' and a different text; "
                    "ingest under another --corpus name"
                )
            present = con.execute(
                "SELECT count(*) FROM _incoming i JOIN documents d USING (corpus, doc_id)"
            ).fetchone()[0]
            con.execute("INSERT INTO documents SELECT * FROM _incoming ANTI JOIN documents USING (corpus, doc_id)")
            con.execute("DROP TABLE _incoming")
        return len(rows) - present, present

    def corpus_size(self, corpus: str) -> int:
        return self._one("SELECT count(*) FROM documents WHERE corpus = ?", [corpus])[0]

    def corpus_doc_ids(self, corpus: str) -> list[str]:
        return [r[0] for r in self._rows("SELECT doc_id FROM documents WHERE corpus = ? ORDER BY doc_id", [corpus])]

    def documents(self, corpus: str, doc_ids: Sequence[str]) -> list[Document]:
        """Documents in the order of doc_ids."""
        if not doc_ids:
            return []
        rows = dict(
            self._rows(
                "SELECT doc_id, text FROM documents WHERE corpus = ? AND doc_id IN (SELECT unnest(?))",
                [corpus, list(doc_ids)],
            )
        )
        return [Document(d, rows[d]) for d in doc_ids]

    def iter_corpus(self, corpus: str, batch_size: int = 2048) -> Iterator[list[tuple[str, str, str]]]:
        """(doc_id, text, text_hash) batches over a whole corpus in a stable order, with bounded memory."""
        last = ""
        while True:
            rows = self._rows(
                "SELECT doc_id, text, text_hash FROM documents WHERE corpus = ? AND doc_id > ? "
                "ORDER BY doc_id LIMIT ?",
                [corpus, last, batch_size],
            )
            if not rows:
                return
            yield rows
            last = rows[-1][0]

    def corpus_batches(self, corpus: str, batch_size: int = 8192) -> Iterator[Any]:
        """pyarrow RecordBatches (doc_id, text, text_hash) over a corpus, streamed with bounded memory."""
        cur = self.con.cursor()
        try:
            reader = cur.sql(
                "SELECT doc_id, text, text_hash FROM documents WHERE corpus = ? ORDER BY doc_id", params=[corpus]
            ).to_arrow_reader(batch_size)
            yield from reader
        finally:
            cur.close()

    def table_batches(self, table: str, columns: Sequence[str], batch_size: int = 8192) -> Iterator[Any]:
        """pyarrow RecordBatches of some columns of any table in this database, streamed."""
        cols = ", ".join(self._quote_ident(c) for c in columns)
        cur = self.con.cursor()
        try:
            try:
                result = cur.sql(f"SELECT {cols} FROM {self._quote_ident(table)}")
            except duckdb.Error as exc:
                raise StoreError(f"cannot read {', '.join(columns)} from table {table}: "
                                 f"{str(exc).splitlines()[0]}") from None
            yield from result.to_arrow_reader(batch_size)
        finally:
            cur.close()

    def table_columns(self, table: str) -> list[str]:
        """Column names of a table in this database (empty if there is no such table)."""
        return [r[0] for r in self._rows(
            "SELECT column_name FROM duckdb_columns() WHERE table_name = ? ORDER BY column_index", [table]
        )]

    def gold_labels(self, corpus: str, field: str) -> dict[str, str]:
        """Gold labels by doc id from documents.meta ->> field (documents without one are left out)."""
        rows = self._rows(
            "SELECT doc_id, meta ->> ? FROM documents WHERE corpus = ? AND meta ->> ? IS NOT NULL",
            [field, corpus, field],
        )
        return {d: str(v) for d, v in rows}

    def cached_embeddings(self, model: str, hashes: Sequence[str]) -> dict[str, np.ndarray]:
        """Stored vectors by text hash. Read as one Arrow column and reshaped, never row by row as Python floats
        (which took 6-13x longer; benchmarks/bench_predict.py --cache-rows)."""
        if not hashes:
            return {}
        import pyarrow as pa

        wanted = pa.table({"h": pa.array(list(set(hashes)), type=pa.string())})
        # A cursor of its own: DuckDB 2 refuses register() on a connection whose last statement (an INSERT's
        # count, say) was never fetched, and the shared connection is used from several threads' steps.
        with self._lock, self.con.cursor() as cur:
            cur.register("_wanted_hashes", wanted)
            got = cur.sql(
                "SELECT e.text_hash, e.vector FROM embeddings e JOIN _wanted_hashes w ON e.text_hash = w.h "
                "WHERE e.model = ?", params=[model]).to_arrow_table()
        if not got.num_rows:
            return {}
        vectors = got.column(1).combine_chunks()
        lengths = pa.compute.list_value_length(vectors).to_numpy(zero_copy_only=False)
        if (lengths != lengths[0]).any():  # vectors of one model have one size; if not, do not guess a shape
            return {h: np.asarray(v, dtype=np.float32) for h, v in zip(got.column(0).to_pylist(), vectors.to_pylist())}
        flat = vectors.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
        return dict(zip(got.column(0).to_pylist(), flat.reshape(len(lengths), int(lengths[0]))))

    def save_embeddings(self, model: str, hashes: Sequence[str], vectors: np.ndarray) -> None:
        if not len(hashes):
            return
        import pyarrow as pa

        table = pa.table(
            {
                "text_hash": list(hashes),
                "model": [model] * len(hashes),
                "vector": pa.LargeListArray.from_arrays(  # one flat buffer, not one Python object per vector
                    pa.array(np.arange(len(hashes) + 1, dtype=np.int64) * np.shape(vectors)[1]),
                    pa.array(np.ascontiguousarray(vectors, dtype=np.float32).ravel())),
            }
        )
        with self._lock, self.con.cursor() as cur:
            cur.register("_emb", table)
            cur.execute("INSERT OR IGNORE INTO embeddings SELECT * FROM _emb").fetchall()
