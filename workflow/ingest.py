"""Read a corpus (JSONL, CSV, Parquet or a DuckDB table) into validated (doc_id, text, meta) records.

Every problem a real corpus has gets one clear line naming the file and line: invalid UTF-8, broken JSON, a
missing text field (in any row), a stray CSV quote that would run rows together, duplicate ids. Empty texts are
skipped with a warning (nothing to label); very long texts are kept whole in the database and cut only when they go
into a prompt.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import re
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
                obj = json.loads(line.rstrip("\r\n"))  # so the column counts within this line
            except json.JSONDecodeError as exc:  # exc.msg alone is cut off ("Invalid control character at")
                raise InputError(
                    f"{path}:{n}: not valid JSON: {exc.msg.removesuffix(' at')} at column {exc.colno}"
                    + (f" ({line[exc.pos]!r})" if exc.msg.startswith("Invalid control") else "")
                    + "; expected one JSON object per line"
                ) from None
            if not isinstance(obj, dict):
                raise InputError(f"{path}:{n}: expected a JSON object per line, got {type(obj).__name__}")
            yield n, obj


_NEWLINE = re.compile(r"\r\n|\r|\n")
_ROW_START = re.compile(r"([^,\s\"]{1,64}),")


def _shape(value: str) -> str:
    """An id's shape: every digit becomes 9 (q17 and q23 share the shape q99; 7 and 2019 do not)."""
    return re.sub(r"\d", "9", value)


def _quote_opened_at(text: str, line_starts: list[int], first: int, last: int) -> int:
    """The line of the last quoted field that opens between lines `first` and `last` (1-based): the quote the CSV
    reader was inside when it gave up. Follows the same rules as csv.reader (a quote opens a field only at its
    start; "" inside a quoted field is a literal quote)."""
    i, end = line_starts[first - 1], line_starts[last] if last < len(line_starts) else len(text)
    line, opened, at_start, quoted = first, first, True, False
    while i < end:
        c = text[i]
        if c == "\r" and text[i + 1 : i + 2] == "\n":
            i += 1
            continue  # \r\n: counted once, at the \n
        if quoted:
            if c == '"':
                if text[i + 1 : i + 2] == '"':
                    i += 1
                else:
                    quoted = False
            elif c in "\r\n":
                line += 1
        elif c == '"' and at_start:
            quoted, opened = True, line
        else:
            at_start = c in ",\r\n"
            line += c in "\r\n"
        i += 1
    return opened


def _rows_csv(path: Path) -> Iterator[tuple[int, dict]]:
    """Rows of a CSV file with a header line, or an InputError at the first quote the parser would have to guess at.

    A stray quote (a field that opens with " and is never closed where it should be) makes a lenient CSV parser run
    the following rows into that field: rows silently vanish into another row's text. Two checks refuse that:

    - csv.reader in strict mode: a closing quote must be followed by a comma or the end of the line, and the file
      must not end inside a quoted field. This catches a stray quote in nearly every case, at no cost to valid files
      (a quoted field may still hold commas, "" for a quote, and line breaks).
    - a stray quote can still pair up cleanly with a later quote that happens to end a field (`my screen is 12"`).
      So a quoted field that spans lines is refused when one of its inner lines starts like a row of this file:
      a value with the shape of the first column's values (digits count, q17 ~ q99) followed by a comma, that is
      not itself one of the first column's values (a swallowed row's id is missing from the file). Quoted text
      with line breaks passes: its lines rarely start with an id-shaped token and a comma, and never with a
      missing id. The check is off when the first column holds free text (values with spaces).

    A quote inside an unquoted field (`my 12" screen`) is kept as a literal character: it cannot merge rows.
    """
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InputError(f"{path}:{line}: not valid UTF-8; re-encode the file as UTF-8") from None
    csv.field_size_limit(2**31 - 1)  # a huge document is kept whole (the default stops at 131,072 characters)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    rows: list[tuple[int, list[str]]] = []  # (first line of the row, fields); blank lines dropped
    read = 0
    try:
        for fields in reader:
            if fields:
                rows.append((read + 1, fields))
            read = reader.line_num
    except csv.Error as exc:
        if "expected after" not in str(exc) and "end of data" not in str(exc):
            raise InputError(f"{path}:{reader.line_num}: malformed CSV ({exc})") from None
        line_starts = [0] + [m.end() for m in _NEWLINE.finditer(text)]
        opened = _quote_opened_at(text, line_starts, read + 1, reader.line_num)
        if "end of data" in str(exc):
            where = f"is never closed (the file ends inside it, at line {reader.line_num})"
        elif opened == reader.line_num:
            where = f"is closed too early ({exc})"
        else:
            where = f"is not closed where it should be (line {reader.line_num}: {exc})"
        raise InputError(
            f"{path}:{opened}: a quoted field opened on this line {where}, so rows would run together; "
            'close the quote, or write a quote inside a field as ""'
        ) from None
    if not rows:
        return
    header, body = rows[0][1], rows[1:]
    firsts = {fields[0] for _, fields in body if fields[0]}
    if firsts and all(len(v) <= 64 and not any(ch.isspace() for ch in v) for v in firsts):
        shapes = {_shape(v) for v in firsts}
        for start, fields in body:
            line = start
            for value in fields:
                inner = _NEWLINE.split(value)
                for k, part in enumerate(inner[1:], 1):
                    m = _ROW_START.match(part)
                    if m and m.group(1) not in firsts and _shape(m.group(1)) in shapes:
                        raise InputError(
                            f"{path}:{line}: a quoted field opened on this line runs on and swallows what looks like "
                            f"the row '{m.group(1)},...' on line {line + k}, so rows would run together; close the "
                            'quote, or write a quote inside a field as ""'
                        )
                line += len(inner) - 1
    for start, fields in body:
        if len(fields) != len(header):
            raise InputError(
                f"{path}:{start}: {len(fields)} fields where the header has {len(header)}; "
                "quote fields that contain commas"
            )
        yield start, dict(zip(header, fields))


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
    if path.is_dir():
        raise InputError(f"{source}: is a directory; give one corpus file: .jsonl, .csv, .parquet or file.duckdb:table")
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
        elif text_field not in row:  # a null or "" text is empty; a row without the field at all is a mistake
            raise InputError(
                f"{source}:{n}: no field '{text_field}' (fields: {', '.join(map(str, row)) or 'none'}); "
                f"every row needs one (null or \"\" for an empty text)"
            )
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
