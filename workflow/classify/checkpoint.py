"""Resumable `tnt predict`: the output is its own checkpoint.

A table output is marked unfinished (a table comment naming the model version) until its last batch is written;
each batch is one INSERT, so a killed run leaves whole batches. A Parquet output is written as part files in
``<out>.partial/`` (each renamed into place once complete) and combined into ``<out>`` at the end. Rerunning the
same command finds the unfinished output, drops the documents it already holds from each input batch before they
are embedded, and appends the rest: no document is embedded twice and no row is written twice. Document ids are
taken as unique within an input (as `tnt run` requires).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa

from workflow.classify.predict import OUTPUT_SCHEMA, InputBatch, PredictInputError, Sink

UNFINISHED = "tnt predict unfinished; model "


class DoneIds:
    """The ids an interrupted prediction already wrote, looked up batch by batch in DuckDB (never all in memory)."""

    def __init__(self, con: Any, relation: str, total: int) -> None:
        self.con, self.relation, self.total, self.seen = con, relation, total, 0

    def filter(self, batch: InputBatch) -> InputBatch:
        """The batch without the documents already written (the same batch when none are left to find)."""
        if self.seen >= self.total or len(batch.ids) == 0:
            return batch
        ids = batch.ids.cast(pa.string()).to_pylist()
        done = {r[0] for r in self.con.execute(
            f"SELECT doc_id FROM {self.relation} WHERE doc_id IN (SELECT unnest($1::VARCHAR[]))", [ids]
        ).fetchall()}
        if not done:
            return batch
        self.seen += len(done)
        keep = [i for i, d in enumerate(ids) if d not in done]
        pick = pa.array(keep, type=pa.int64())
        return InputBatch(
            batch.ids.take(pick),
            None if batch.texts is None else [batch.texts[i] for i in keep],
            None if batch.hashes is None else [batch.hashes[i] for i in keep],
            None if batch.vectors is None else batch.vectors[keep],
        )


class ResumableSink(Sink):
    """A sink that can take up an unfinished output: ``done`` rows are there already (0 for a fresh output)."""

    done: int = 0
    done_ids: DoneIds | None = None

    def abort(self) -> None:
        """Stop without finishing: what was written stays, for the next run to continue."""


class ResumableTableSink(ResumableSink):
    def __init__(self, store: Any, table: str, model_version: str, overwrite: bool = False) -> None:
        from workflow.store import StoreError

        self.store, self.table, self.version = store, table, model_version
        ident = store._quote_ident(table)
        note = _table_comment(store, table)
        if note and note.startswith(UNFINISHED) and not overwrite:
            if note != UNFINISHED + model_version:
                raise PredictInputError(
                    f"table '{table}' holds an unfinished prediction by model {note.removeprefix(UNFINISHED)}; "
                    "rerun with that model to finish it, or pass --overwrite to start again")
            self.done = store.con.execute(f"SELECT count(*) FROM {ident}").fetchone()[0]
            self.done_ids = DoneIds(store.con, ident, self.done)
        else:
            try:
                store.create_prediction_table(table, overwrite)
            except StoreError as exc:
                raise PredictInputError(str(exc)) from None
            self._comment(UNFINISHED + model_version)

    def _comment(self, text: str | None) -> None:
        value = "NULL" if text is None else "'" + text.replace("'", "''") + "'"
        self.store.con.execute(f"COMMENT ON TABLE {self.store._quote_ident(self.table)} IS {value}")

    def write(self, batch: pa.RecordBatch) -> None:
        self.store.append_arrow(self.table, batch)

    def close(self) -> None:
        self._comment(None)


def _table_comment(store: Any, table: str) -> str | None:
    row = store.con.execute("SELECT comment FROM duckdb_tables() WHERE table_name = ? AND database_name = "
                            "current_database()", [table]).fetchone()
    return row[0] if row else None


class ResumableParquetSink(ResumableSink):
    def __init__(self, path: Path, model_version: str, overwrite: bool = False) -> None:
        import duckdb

        self.path, self.version = path, model_version
        self.parts = path.with_name(path.name + ".partial")
        if overwrite:
            shutil.rmtree(self.parts, ignore_errors=True)
            path.unlink(missing_ok=True)
        marker = self.parts / "MODEL"
        if self.parts.is_dir() and marker.is_file():
            found = marker.read_text().strip()
            if found != model_version:
                raise PredictInputError(
                    f"{path} is an unfinished prediction by model {found} ({self.parts}); rerun with that model to "
                    "finish it, or pass --overwrite to start again")
        elif path.exists():
            raise PredictInputError(f"{path} already exists; pass --overwrite to replace it")
        else:
            self.parts.mkdir(parents=True, exist_ok=True)
            marker.write_text(model_version)
        for tmp in self.parts.glob("*.tmp"):  # a part being written when the process died
            tmp.unlink()
        done = sorted(self.parts.glob("part-*.parquet"))
        self.k = len(done)
        if done:
            self._con = duckdb.connect()
            self._con.execute("SET memory_limit = '64MB'")
            self._con.execute("CREATE TABLE done AS SELECT doc_id FROM read_parquet($1)", [[str(p) for p in done]])
            self.done = self._con.execute("SELECT count(*) FROM done").fetchone()[0]
            self.done_ids = DoneIds(self._con, "done", self.done)

    def write(self, batch: pa.RecordBatch) -> None:
        import pyarrow.parquet as pq

        final = self.parts / f"part-{self.k:08d}.parquet"
        tmp = final.with_suffix(".tmp")
        pq.write_table(pa.Table.from_batches([batch], OUTPUT_SCHEMA), tmp)
        os.replace(tmp, final)  # a part is there whole or not at all
        self.k += 1

    def close(self) -> None:
        """Combine the parts, in order, into the output file (written aside, then renamed)."""
        import pyarrow.parquet as pq

        tmp = self.path.with_name(self.path.name + ".tmp")
        with pq.ParquetWriter(tmp, OUTPUT_SCHEMA) as writer:
            for part in sorted(self.parts.glob("part-*.parquet")):
                for batch in pq.ParquetFile(part).iter_batches():
                    writer.write_batch(batch)
        os.replace(tmp, self.path)
        shutil.rmtree(self.parts, ignore_errors=True)


def open_resumable_output(target: str, store: Any, model_version: str, overwrite: bool = False) -> ResumableSink:
    """A ``.parquet`` file or a table name in ``store``, continued when an earlier run of it was interrupted."""
    if target.lower().endswith((".parquet", ".pq")):
        return ResumableParquetSink(Path(target), model_version, overwrite)
    if store is None:
        raise PredictInputError(f"output table '{target}' needs a database (--db)")
    if not target.replace("_", "").isalnum():
        raise PredictInputError(f"'{target}' is not a plain table name (letters, digits, _) nor a .parquet file")
    return ResumableTableSink(store, target, model_version, overwrite)


def count_input_rows(source: str, store: Any) -> int | None:
    """Rows in a JSONL/CSV file (lines, counted in chunks) or a table, for the progress bar's total and ETA; None
    when unknown. A CSV with line breaks inside fields counts a little high."""
    path = Path(source)
    if path.suffix.lower() in (".jsonl", ".ndjson", ".json", ".csv") and path.is_file():
        lines, last = 0, b"\n"
        with path.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                lines += chunk.count(b"\n")
                last = chunk[-1:]
        lines += last != b"\n"
        return max(0, lines - (path.suffix.lower() == ".csv"))
    try:
        if ".duckdb:" in source or ".db:" in source:
            import duckdb

            db, table = source.rsplit(":", 1)
            with duckdb.connect(db, read_only=True) as con:
                return con.execute(f'SELECT count(*) FROM "{table.replace(chr(34), "")}"').fetchone()[0]
        if store is not None and store.table_columns(source):
            return store.con.execute(f"SELECT count(*) FROM {store._quote_ident(source)}").fetchone()[0]
    except Exception:
        return None
    return None
