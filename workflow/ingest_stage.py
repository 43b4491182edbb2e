"""Stream a corpus into DuckDB batch by batch, so memory stays at one batch whatever the corpus size.

Rows are validated as they are read (workflow.ingest.RowValidator: fields, empty and non-text values, ids) and
appended as Arrow batches to a scratch DuckDB file, not the store. A corpus found bad half-way leaves the store
untouched, and `tnt run --dry-run` touches no database. Duplicate ids are found by a GROUP BY that DuckDB can
spill to disk, not by a Python dict holding every id. One transaction then copies the staged rows into
`documents` (ATTACH), with Store.insert_documents's rules: re-ingesting is a no-op, a changed text under a known
id is refused.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from workflow.ingest import (
    LONG_DOC_CHARS,
    IngestReport,
    InputError,
    RowValidator,
    duplicate_id_error,
    iter_rows,
    source_label,
)

BATCH_ROWS = 10_000
STAGE_MEMORY = "32MB"  # DuckDB's buffer cap while staging; it spills beyond (measured: benchmarks/bench_scale.py)
INSERT_MEMORY = "48MB"  # the store's cap while it copies the staged rows in (100k-row commits fit in it)
INSERT_CHUNK = 100_000  # rows per transaction when copying in
_INSERT_SETTINGS = ("memory_limit", "allocator_flush_threshold")  # set while copying in, then restored


class StagedTexts:
    """The staged texts as a re-iterable sequence (len and iteration, streamed): what estimate_run reads."""

    def __init__(self, con: duckdb.DuckDBPyConnection, n: int) -> None:
        self._con, self._n = con, n

    def __len__(self) -> int:
        return self._n

    def __iter__(self) -> Iterator[str]:
        cur = self._con.cursor()
        try:
            for batch in cur.sql("SELECT text FROM staged").to_arrow_reader(BATCH_ROWS):  # in n order: no sort
                yield from batch.column(0).to_pylist()
        finally:
            cur.close()


class StagedCorpus:
    """A validated corpus in a scratch DuckDB file; ``report`` says what was read. Close it (or use ``with``) to
    delete the file."""

    def __init__(self, source: str, tmp: Path, con: duckdb.DuckDBPyConnection, report: IngestReport) -> None:
        self.source, self._tmp, self.con, self.report = source, tmp, con, report

    @property
    def path(self) -> Path:
        return self._tmp / "stage.duckdb"

    def texts(self) -> StagedTexts:
        return StagedTexts(self.con, self.report.n_docs)

    def release(self) -> Path:
        """Close the scratch connection (so another connection can ATTACH the file); returns its path."""
        if self.con is not None:
            self.con.execute("CHECKPOINT")
            self.con.close()
            self.con = None  # type: ignore[assignment]
        return self.path

    def close(self) -> None:
        if self.con is not None:
            self.con.close()
            self.con = None  # type: ignore[assignment]
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> StagedCorpus:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def stage_corpus(source: Any, text_field: str = "text", id_field: str | None = "id", *,
                 tmp_dir: str | Path | None = None, batch_rows: int = BATCH_ROWS,
                 memory_limit: str = STAGE_MEMORY) -> StagedCorpus:
    """Read and validate a corpus (a path, ``file.duckdb:table``, a DataFrame, or an iterable of texts or dicts)
    into a scratch DuckDB under ``tmp_dir`` (default: the system's temporary directory). Raises InputError with
    the same line read_corpus would give."""
    label = source_label(source)
    tmp = Path(tempfile.mkdtemp(prefix="tnt-ingest-", dir=tmp_dir))
    con = duckdb.connect(str(tmp / "stage.duckdb"))
    try:
        con.execute(f"SET memory_limit = '{memory_limit}'")
        con.execute("SET allocator_flush_threshold = '8MB'")  # hand freed memory back instead of caching it
        con.execute(f"SET temp_directory = '{tmp / 'spill'}'")
        con.execute("CREATE TABLE staged(n BIGINT, doc_id VARCHAR, has_id BOOLEAN, text VARCHAR, meta VARCHAR)")
        check = RowValidator(label, text_field, id_field)
        cols: tuple[list, ...] = ([], [], [], [], [])
        try:
            for n, row in iter_rows(source, text_field):
                rec = check.record(n, row)
                if rec is None:
                    continue
                doc_id, text, meta, has_id = rec
                for col, v in zip(cols, (n, doc_id, has_id, text, meta)):
                    col.append(v)
                if len(cols[0]) >= batch_rows:
                    _flush(con, cols)
        except InputError:
            _flush(con, cols)
            _check_duplicates(con, label, drop=False)  # reading in order would have met an earlier duplicate first
            raise
        _flush(con, cols)
        _check_duplicates(con, label, drop=True)
        n_docs, long_docs = con.execute(
            f"SELECT count(*), count(*) FILTER (WHERE length(text) > {LONG_DOC_CHARS}) FROM staged"
        ).fetchone()
        if not n_docs:
            raise check.no_documents()
        report = IngestReport(skipped_empty=check.skipped_empty, long_docs=long_docs, n_docs=n_docs)
        return StagedCorpus(label, tmp, con, report)
    except BaseException:
        con.close()
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _flush(con: duckdb.DuckDBPyConnection, cols: tuple[list, ...]) -> None:
    import json

    if not cols[0]:
        return
    batch = pa.table({
        "n": pa.array(cols[0], pa.int64()), "doc_id": pa.array(cols[1], pa.string()),
        "has_id": pa.array(cols[2], pa.bool_()), "text": pa.array(cols[3], pa.large_string()),
        "meta": pa.array([json.dumps(m, default=str) if m else "{}" for m in cols[4]], pa.large_string()),
    })
    con.register("_batch", batch)
    try:
        con.execute("INSERT INTO staged SELECT * FROM _batch")
    finally:
        con.unregister("_batch")
    for col in cols:
        col.clear()


def _check_duplicates(con: duckdb.DuckDBPyConnection, label: str, drop: bool) -> None:
    """The first repeated id (in row order) that came from the id field is an InputError; repeated texts without
    an id are one document, the first kept (dropped from the stage when ``drop``)."""
    dup = con.execute("SELECT count(*) FROM (SELECT doc_id FROM staged GROUP BY doc_id HAVING count(*) > 1)").fetchone()
    if not dup[0]:
        return
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _later AS SELECT doc_id, n, has_id, first FROM ("
        "  SELECT doc_id, n, has_id, min(n) OVER (PARTITION BY doc_id) AS first FROM staged"
        "  WHERE doc_id IN (SELECT doc_id FROM staged GROUP BY doc_id HAVING count(*) > 1)) WHERE n > first"
    )
    bad = con.execute("SELECT doc_id, first, n FROM _later WHERE has_id ORDER BY n LIMIT 1").fetchone()
    if bad:
        raise duplicate_id_error(label, bad[0], bad[1], bad[2])
    if drop:
        con.execute("DELETE FROM staged WHERE n IN (SELECT n FROM _later)")
    con.execute("DROP TABLE _later")


def insert_staged(store: Any, corpus: str, staged: StagedCorpus, memory_limit: str = INSERT_MEMORY,
                  chunk_rows: int = INSERT_CHUNK) -> tuple[int, int]:
    """Copy a staged corpus into the store's documents; returns (added, already_present). Same rules as
    Store.insert_documents (a changed text under a known id is refused before anything is written).

    It commits every ``chunk_rows`` rows: one transaction over millions of rows holds them all (and their
    primary-key entries) in memory until it commits. If a chunk fails, the rows this call added are deleted again,
    so a corpus is never half-ingested; a killed process leaves a prefix that the next ingest completes (re-ingesting
    is a no-op for documents already stored). The store's DuckDB memory cap is lowered meanwhile, then restored."""
    from workflow.store.schema import StoreError, now

    path = staged.release()
    con = store.con
    before = [con.execute(f"SELECT current_setting('{k}')").fetchone()[0] for k in _INSERT_SETTINGS]
    for k, v in zip(_INSERT_SETTINGS, (memory_limit, "8MB")):
        con.execute(f"SET {k} = '{v}'")
    con.execute(f"ATTACH '{str(path).replace(chr(39), chr(39) * 2)}' AS _tnt_stage (READ_ONLY)")
    stamp = now()  # marks this call's rows, to take them back if a later chunk fails
    try:
        clash = con.execute(
            "SELECT s.doc_id FROM _tnt_stage.staged s JOIN documents d ON d.corpus = ? AND d.doc_id = s.doc_id "
            "WHERE d.text_hash <> left(sha256(s.text), 32) LIMIT 1", [corpus],
        ).fetchone()
        if clash:
            raise StoreError(
                f"corpus '{corpus}' already has a document with id '{clash[0]}' and a different text; "
                "ingest under another --corpus name"
            )
        # the rows already stored, found once (a join per chunk would hash the whole corpus's ids every time)
        con.execute("CREATE OR REPLACE TEMP TABLE _tnt_present AS SELECT s.n FROM _tnt_stage.staged s "
                    "JOIN documents d ON d.corpus = ? AND d.doc_id = s.doc_id", [corpus])
        present = con.execute("SELECT count(*) FROM _tnt_present").fetchone()[0]
        skip = " AND s.n NOT IN (SELECT n FROM _tnt_present WHERE n >= $3 AND n < $4)" if present else ""
        last = con.execute("SELECT coalesce(max(n), 0) FROM _tnt_stage.staged").fetchone()[0]
        try:
            for lo in range(0, last + 1, chunk_rows):
                with store.transaction() as tx:  # rows stay in file order (the stage is in n order)
                    tx.execute(
                        "INSERT INTO documents SELECT $1, s.doc_id, s.text, left(sha256(s.text), 32), "
                        "length(s.text), s.meta::JSON, $2 FROM _tnt_stage.staged s WHERE s.n >= $3 AND s.n < $4" + skip,
                        [corpus, stamp, lo, lo + chunk_rows],
                    )
        except BaseException:
            with store.transaction() as tx:
                tx.execute("DELETE FROM documents WHERE corpus = ? AND ingested_at = ? "
                           "AND doc_id IN (SELECT doc_id FROM _tnt_stage.staged)", [corpus, stamp])
            raise
    finally:
        con.execute("DROP TABLE IF EXISTS _tnt_present")
        con.execute("DETACH _tnt_stage")
        for k, v in zip(_INSERT_SETTINGS, before):
            con.execute(f"SET {k} = '{v}'")
    return staged.report.n_docs - present, present


def ingest_stream(store: Any, source: Any, corpus: str, text_field: str = "text", id_field: str | None = "id",
                  tmp_dir: str | Path | None = None) -> tuple[IngestReport, int]:
    """Stage then insert: (report, new documents). The stage lives beside the store's file unless ``tmp_dir``."""
    if tmp_dir is None and store.path not in (":memory:", ""):
        tmp_dir = Path(store.path).resolve().parent
    with stage_corpus(source, text_field, id_field, tmp_dir=tmp_dir) as staged:
        added, _ = insert_staged(store, corpus, staged)
        return staged.report, added
