"""Read a corpus (JSONL, CSV, Parquet or a DuckDB table) into validated (doc_id, text, meta) records.

Every problem a real corpus has gets one clear line naming the file and line: invalid UTF-8, broken JSON, a
missing text field, duplicate ids. Empty texts are skipped with a warning (nothing to label); very long texts are
kept whole in the database and cut only when they go into a prompt.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("tnt")

LONG_DOC_CHARS = 20_000


class InputError(ValueError):
    """The corpus cannot be read as given; the message says where and why."""


@dataclass
class IngestReport:
    records: list[tuple[str, str, dict]] = field(default_factory=list)
    skipped_empty: int = 0
    long_docs: int = 0


def _content_id(text: str) -> str:
    return "d" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:15]


def _rows_jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    with path.open("rb") as fh:
        for n, raw in enumerate(fh, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InputError(f"{path}:{n}: not valid UTF-8 (byte {exc.start}); re-encode the file as UTF-8") from None
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{path}:{n}: not valid JSON ({exc.msg}); expected one JSON object per line") from None
            if not isinstance(obj, dict):
                raise InputError(f"{path}:{n}: expected a JSON object per line, got {type(obj).__name__}")
            yield n, obj


def _rows_csv(path: Path) -> Iterator[tuple[int, dict]]:
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InputError(f"{path}:{line}: not valid UTF-8; re-encode the file as UTF-8") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        for row in reader:
            if None in row or None in row.values():  # more fields than the header (key None) or fewer (value None)
                n = len(row) - (None in row) + len(row.get(None) or ()) - sum(v is None for v in row.values())
                raise InputError(
                    f"{path}:{reader.line_num}: {n} fields where the header has {len(reader.fieldnames or ())}; "
                    "quote fields that contain commas"
                )
            yield reader.line_num, row
    except csv.Error as exc:
        raise InputError(f"{path}:{reader.line_num}: malformed CSV ({exc})") from None


def _rows_parquet(path: Path) -> Iterator[tuple[int, dict]]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:
        raise InputError(f"{path}: not a readable Parquet file ({exc})") from None
    n = 0
    for batch in pf.iter_batches(batch_size=10_000):
        for row in batch.to_pylist():
            n += 1
            yield n, row


def _rows_duckdb(db: str, table: str) -> Iterator[tuple[int, dict]]:
    import duckdb

    try:
        con = duckdb.connect(db, read_only=True)
    except Exception as exc:
        raise InputError(f"{db}: cannot open as DuckDB ({exc})") from None
    try:
        cur = con.execute(f'SELECT * FROM "{table.replace(chr(34), "")}"')
    except Exception as exc:
        raise InputError(f"{db}: cannot read table {table} ({str(exc).splitlines()[0]})") from None
    cols = [d[0] for d in cur.description]
    n = 0
    while rows := cur.fetchmany(10_000):
        for r in rows:
            n += 1
            yield n, dict(zip(cols, r))
    con.close()


def iter_source(source: str) -> Iterator[tuple[int, dict]]:
    """Rows of a corpus source: a file path, or `path.duckdb:table` for a DuckDB table."""
    if ".duckdb:" in source or ".db:" in source:
        db, table = source.rsplit(":", 1)
        return _rows_duckdb(db, table)
    path = Path(source)
    if not path.exists():
        raise InputError(f"{source}: no such file")
    if path.stat().st_size == 0:
        raise InputError(f"{source}: the file is empty")
    suffix = path.suffix.lower()
    readers = {".jsonl": _rows_jsonl, ".ndjson": _rows_jsonl, ".json": _rows_jsonl, ".csv": _rows_csv,
               ".parquet": _rows_parquet, ".pq": _rows_parquet}
    if suffix not in readers:
        raise InputError(f"{source}: unknown format '{suffix}'; use .jsonl, .csv, .parquet or file.duckdb:table")
    return readers[suffix](path)


def read_corpus(source: str, text_field: str = "text", id_field: str | None = "id") -> IngestReport:
    """Validated records of a corpus. Ids come from `id_field` when the corpus has it, else from the text's hash
    (stable across re-runs)."""
    report = IngestReport()
    seen: dict[str, int] = {}
    first = True
    for n, row in iter_source(source):
        if first:
            if text_field not in row:
                raise InputError(
                    f"{source}: no field '{text_field}' (fields: {', '.join(map(str, row)) or 'none'}); "
                    "choose one with --text-field"
                )
            if id_field and id_field not in row and id_field != "id":
                raise InputError(f"{source}: no field '{id_field}' (fields: {', '.join(map(str, row))}); choose one with --id-field")
            first = False
        text = row.get(text_field)
        if text is None or not str(text).strip():
            report.skipped_empty += 1
            continue
        if not isinstance(text, str):  # a number, list or blob is not a document: likely the wrong column
            raise InputError(
                f"{source}:{n}: field '{text_field}' holds {type(text).__name__} values, not text; "
                "choose the text column with --text-field"
            )
        if "\x00" in text:
            text = text.replace("\x00", "")
        raw_id = row.get(id_field) if id_field else None
        doc_id = str(raw_id).strip() if raw_id is not None and str(raw_id).strip() else _content_id(text)
        if doc_id in seen:
            if raw_id is None:  # identical text without ids: a duplicate document, keep the first
                continue
            raise InputError(f"{source}: duplicate id '{doc_id}' at rows {seen[doc_id]} and {n}; ids must be unique")
        seen[doc_id] = n
        report.long_docs += len(text) > LONG_DOC_CHARS
        meta: dict[str, Any] = {k: v for k, v in row.items() if k not in (text_field, id_field)}
        report.records.append((doc_id, text, meta))
    if not report.records:
        raise InputError(
            f"{source}: no documents with text"
            + (f" ({report.skipped_empty} rows had an empty '{text_field}')" if report.skipped_empty else "")
        )
    return report
