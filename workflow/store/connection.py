"""The one owner of the DuckDB connection: opening (with a clear error when another process holds the file),
migrating, locking and transactions. The aggregate modules write their SQL through these helpers only."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

import duckdb

from workflow.store.migrations import migrate
from workflow.store.schema import StoreError


def is_interrupt(exc: BaseException) -> bool:
    """Ctrl-C or SIGTERM. A signal that arrives while DuckDB runs a query in this thread does not surface as the
    handler's KeyboardInterrupt: DuckDB cancels the query and raises its own "Query interrupted" instead."""
    return isinstance(exc, (KeyboardInterrupt, duckdb.InterruptException)) or (
        isinstance(exc, RuntimeError) and str(exc) == "Query interrupted")


class Database:
    """A DuckDB file with tnt's schema. Thread-safe: one connection guarded by a lock (writes are short)."""

    def __init__(self, path: str | Path = "tnt.duckdb", read_only: bool = False):
        self.path = str(path)
        try:
            self.con = duckdb.connect(self.path, read_only=read_only)
        except duckdb.IOException as exc:
            if "lock" in str(exc).lower():
                raise StoreError(
                    f"database {self.path} is in use by another tnt process; wait for it to finish"
                ) from None
            raise StoreError(f"cannot open database {self.path}: {exc}") from None
        self._lock = threading.RLock()
        if not read_only:
            migrate(self.con)

    def close(self) -> None:
        with self._lock:
            self.con.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- helpers for the aggregate modules (and tests) ---------------------------------------------------------

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        with self._lock:
            return self.con.execute(sql, params).fetchall()

    def _one(self, sql: str, params: Sequence[Any] = ()) -> tuple | None:
        with self._lock:
            return self.con.execute(sql, params).fetchone()

    def _exec(self, sql: str, params: Sequence[Any] = ()) -> None:
        with self._lock:  # fetched, so no unfinished result blocks the next register() on this connection
            self.con.execute(sql, params).fetchall()

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with self._lock:
            self.con.execute("BEGIN")
            try:
                yield self.con
            except BaseException:
                self.con.execute("ROLLBACK")
                raise
            self.con.execute("COMMIT")

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict]:
        """Read-only convenience for reports and tests: rows as dicts."""
        with self._lock:
            cur = self.con.execute(sql, params)
            cols = [d[0] for d in cur.description]
            return [dict(zip(cols, r)) for r in cur.fetchall()]

    def limit_memory(self, limit: str) -> None:
        """Cap DuckDB's memory (e.g. '256MB') for a streaming job. A long scan otherwise keeps every block it read
        cached, up to 80% of RAM, so the footprint would grow with the table instead of staying flat. Row order
        of plain scans is given up too (every output row carries its id); that halves what a sort keeps pinned."""
        try:
            self.con.execute(f"SET memory_limit = '{limit.replace(chr(39), '')}'")
            self.con.execute("SET preserve_insertion_order = false")
        except duckdb.Error as exc:
            raise StoreError(f"bad memory limit {limit!r}: {str(exc).splitlines()[0]}") from None

    @staticmethod
    def _quote_ident(name: str) -> str:
        """A SQL identifier quoted for DuckDB (names come from users' command lines)."""
        return '"' + name.replace('"', '""') + '"'
