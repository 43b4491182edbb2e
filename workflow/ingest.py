"""Read a corpus (JSONL, CSV, Parquet or a DuckDB table) into validated (doc_id, text, meta) records.

Every problem a real corpus has gets one clear line naming the file and line: invalid UTF-8, broken JSON, a
missing text field (in any row), a stray CSV quote that would run rows together, duplicate ids. Empty texts are
skipped with a warning (nothing to label); very long texts are kept whole in the database and cut only when they go
into a prompt.
"""

from __future__ import annotations

import codecs
import csv
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workflow.store import content_id

log = logging.getLogger("tnt")

LONG_DOC_CHARS = 20_000


class InputError(ValueError):
    """The corpus cannot be read as given; the message says where and why."""


@dataclass
class IngestReport:
    """What reading a corpus found. ``records`` is filled by read_corpus only (the streaming ingest keeps them in
    DuckDB); ``n_docs`` counts the documents either way."""

    records: list[tuple[str, str, dict]] = field(default_factory=list)
    skipped_empty: int = 0
    long_docs: int = 0
    n_docs: int = 0


def duckdb_table(source: str) -> tuple[str, str] | None:
    """(database file, table) when a source names a table of a DuckDB file (``file.duckdb:table``, ``file.db:table``),
    else None. The one reading of that form, for `tnt run`, `tnt update` and `tnt predict`."""
    if ".duckdb:" in source or ".db:" in source:
        db, table = source.rsplit(":", 1)
        return db, table
    return None


def default_corpus_name(source: Any) -> str:
    """A corpus's name when none is given: a file's stem (the database file's for ``file.duckdb:table``), or
    "records" for in-memory data."""
    if not isinstance(source, (str, Path)):
        return "records"
    table = duckdb_table(str(source))
    return Path(table[0] if table else str(source)).stem


def _rows_jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    with path.open("rb") as fh:
        for n, raw in enumerate(fh, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InputError(f"{path}:{n}: not valid UTF-8 (byte {exc.start}); "
                                 "re-encode the file as UTF-8") from None
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


def _check_utf8(path: Path) -> None:
    """An InputError naming the line of the first byte that is not UTF-8, read in chunks."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    lines = 0
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                pending = len(exc.object) - len(chunk)  # bytes of a character split across chunks (no newline)
                line = lines + chunk[: max(0, exc.start - pending)].count(b"\n") + 1
                raise InputError(f"{path}:{line}: not valid UTF-8; re-encode the file as UTF-8") from None
            lines += chunk.count(b"\n")
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise InputError(f"{path}:{lines + 1}: not valid UTF-8; re-encode the file as UTF-8") from None


def _csv_reader(fh: Any) -> Any:
    csv.field_size_limit(2**31 - 1)  # a huge document is kept whole (the default stops at 131,072 characters)
    return csv.reader(fh, strict=True)


def _csv_rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(first line of the row, fields) of every non-blank row, or the InputError for a quote the parser gave up on."""
    with path.open(encoding="utf-8-sig", newline="") as fh:
        reader = _csv_reader(fh)
        read = 0
        try:
            for fields in reader:
                if fields:
                    yield read + 1, fields
                read = reader.line_num
        except csv.Error as exc:
            if "expected after" not in str(exc) and "end of data" not in str(exc):
                raise InputError(f"{path}:{reader.line_num}: malformed CSV ({exc})") from None
            text = path.read_text(encoding="utf-8-sig")  # only on this error: find where the quote opened
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


_MAX_SHAPES = 100_000  # beyond this many id shapes, any shape counts (the id lookup still decides)


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

    The file is streamed, never held whole: one pass checks the encoding, one parses it strictly (collecting the
    first column's shapes and the few inner lines that look like rows), a third (only when there are such lines)
    looks their ids up, and the last yields the rows. Errors come in the same order as reading it whole would.
    """
    _check_utf8(path)
    header: list[str] | None = None
    idlike, shapes = True, set()  # type: ignore[var-annotated]
    candidates: list[tuple[str, int, int]] = []  # (token, line of the quoted field, line it looks like a row on)
    has_body = False
    for start, fields in _csv_rows(path):
        if header is None:
            header = fields
            continue
        v = fields[0]
        if v:
            has_body = True
            if idlike and (len(v) > 64 or any(ch.isspace() for ch in v)):
                idlike = False
            if idlike and len(shapes) <= _MAX_SHAPES:
                shapes.add(_shape(v))
        if idlike:
            line = start
            for value in fields:
                if "\n" not in value and "\r" not in value:
                    continue
                inner = _NEWLINE.split(value)
                for k, part in enumerate(inner[1:], 1):
                    m = _ROW_START.match(part)
                    if m:
                        candidates.append((m.group(1), line, line + k))
                line += len(inner) - 1
    if header is None:
        return
    if has_body and idlike and candidates:
        many = len(shapes) > _MAX_SHAPES
        candidates = [c for c in candidates if many or _shape(c[0]) in shapes]
        wanted = {c[0] for c in candidates}
        found = {f[0] for i, (_, f) in enumerate(_csv_rows(path)) if i and f[0] in wanted} if wanted else set()
        for token, line, row_line in candidates:
            if token not in found:
                raise InputError(
                    f"{path}:{line}: a quoted field opened on this line runs on and swallows what looks like "
                    f"the row '{token},...' on line {row_line}, so rows would run together; close the "
                    'quote, or write a quote inside a field as ""'
                )
    rows = _csv_rows(path)
    next(rows)  # the header
    for start, fields in rows:
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
    if (db_table := duckdb_table(source)) is not None:
        return _rows_duckdb(*db_table)
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


def source_label(source: Any) -> str:
    """How error messages name a source: the path, or what kind of in-memory data it is."""
    if isinstance(source, (str, Path)):
        return str(source)
    return "<DataFrame>" if _is_dataframe(source) else "<records>"


def _is_dataframe(obj: Any) -> bool:
    return hasattr(obj, "columns") and hasattr(obj, "iloc") and hasattr(obj, "to_dict")


def iter_rows(source: Any, text_field: str = "text", chunk: int = 10_000) -> Iterator[tuple[int, dict]]:
    """Rows of any corpus source: a path or `file.duckdb:table` (see iter_source), a pandas DataFrame, or an
    iterable of texts or dicts (a text becomes {text_field: text}). Rows are numbered from 1."""
    if isinstance(source, (str, Path)):
        yield from iter_source(str(source))
        return
    if _is_dataframe(source):
        for start in range(0, len(source), chunk):
            part = source.iloc[start : start + chunk]
            part = part.astype(object).where(part.notna(), None)  # NaN is a missing value, not a text
            for k, row in enumerate(part.to_dict("records"), start + 1):
                yield k, {str(c): v for c, v in row.items()}
        return
    if isinstance(source, (bytes, dict)) or not hasattr(source, "__iter__"):
        raise InputError(f"{type(source).__name__} is not a corpus; give a file path, a DataFrame, or texts or dicts")
    for n, item in enumerate(source, 1):
        if isinstance(item, str):
            yield n, {text_field: item}
        elif isinstance(item, dict):
            yield n, item
        else:
            raise InputError(f"<records>:{n}: expected a text or a dict, got {type(item).__name__}")


class RowValidator:
    """Turns rows into (doc_id, text, meta, has_id) records with every per-row check; duplicates are the caller's
    (held in memory by read_corpus, in DuckDB by the streaming ingest)."""

    def __init__(self, source: str, text_field: str = "text", id_field: str | None = "id") -> None:
        self.source, self.text_field, self.id_field = source, text_field, id_field
        self.first = True
        self.skipped_empty = 0

    def record(self, n: int, row: dict) -> tuple[str, str, dict, bool] | None:
        """The record of row n, None for an empty text (counted), or an InputError."""
        source, text_field, id_field = self.source, self.text_field, self.id_field
        if self.first:
            if text_field not in row:
                raise InputError(
                    f"{source}: no field '{text_field}' (fields: {', '.join(map(str, row)) or 'none'}); "
                    "choose one with --text-field"
                )
            if id_field and id_field not in row and id_field != "id":
                raise InputError(f"{source}: no field '{id_field}' (fields: {', '.join(map(str, row))}); "
                                 "choose one with --id-field")
            self.first = False
        elif text_field not in row:  # a null or "" text is empty; a row without the field at all is a mistake
            raise InputError(
                f"{source}:{n}: no field '{text_field}' (fields: {', '.join(map(str, row)) or 'none'}); "
                f"every row needs one (null or \"\" for an empty text)"
            )
        text = row.get(text_field)
        if text is None or not str(text).strip():
            self.skipped_empty += 1
            return None
        if not isinstance(text, str):  # a number, list or blob is not a document: likely the wrong column
            raise InputError(
                f"{source}:{n}: field '{text_field}' holds {type(text).__name__} values, not text; "
                "choose the text column with --text-field"
            )
        if "\x00" in text:
            text = text.replace("\x00", "")
        raw_id = row.get(id_field) if id_field else None
        doc_id = str(raw_id).strip() if raw_id is not None and str(raw_id).strip() else content_id(text)
        meta: dict[str, Any] = {k: v for k, v in row.items() if k not in (text_field, id_field)}
        return doc_id, text, meta, raw_id is not None

    def no_documents(self) -> InputError:
        return InputError(
            f"{self.source}: no documents with text"
            + (f" ({self.skipped_empty} rows had an empty '{self.text_field}')" if self.skipped_empty else "")
        )


def duplicate_id_error(source: str, doc_id: str, first: int, second: int) -> InputError:
    return InputError(f"{source}: duplicate id '{doc_id}' at rows {first} and {second}; ids must be unique")


def read_corpus(source: Any, text_field: str = "text", id_field: str | None = "id") -> IngestReport:
    """Validated records of a corpus, all in memory (for small corpora and tests; `workflow.ingest_stage` streams
    a corpus of any size into DuckDB). Ids come from `id_field` when the corpus has it, else from the text's hash
    (stable across re-runs)."""
    report = IngestReport()
    label = source_label(source)
    check = RowValidator(label, text_field, id_field)
    seen: dict[str, int] = {}
    for n, row in iter_rows(source, text_field):
        rec = check.record(n, row)
        if rec is None:
            continue
        doc_id, text, meta, has_id = rec
        if doc_id in seen:
            if not has_id:  # identical text without ids: a duplicate document, keep the first
                continue
            raise duplicate_id_error(label, doc_id, seen[doc_id], n)
        seen[doc_id] = n
        report.long_docs += len(text) > LONG_DOC_CHARS
        report.records.append((doc_id, text, meta))
    report.skipped_empty = check.skipped_empty
    if not report.records:
        raise check.no_documents()
    report.n_docs = len(report.records)
    return report
