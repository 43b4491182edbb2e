"""Numbered, named schema migrations, recorded in the `schema_migrations` table as they are applied.

A database is brought up to date when it is opened for writing: every migration whose number is not in the table
runs, in order, and is recorded. Each migration must be safe on a database that already has what it adds (the
databases made before this table existed ran some of them without a record). Add a change as a new function at
the end of MIGRATIONS, and make `schema.SCHEMA` describe the table as it is afterwards.
"""

from __future__ import annotations

from collections.abc import Callable

import duckdb

from workflow.store.schema import SCHEMA, SCHEMA_VERSION, now

Migration = Callable[[duckdb.DuckDBPyConnection], None]


def m001_create_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Every table of `schema.SCHEMA` (a new database gets the latest columns at once)."""
    con.execute(SCHEMA)


def m002_added_columns(con: duckdb.DuckDBPyConnection) -> None:
    """Columns added after the first release: multi-label sets, the nearest label, hierarchies, recheck choices,
    active-selection rounds and a run's owning process."""
    con.execute("""
        ALTER TABLE assignments ADD COLUMN IF NOT EXISTS label_ids VARCHAR[];
        ALTER TABLE predictions ADD COLUMN IF NOT EXISTS label_ids VARCHAR[];
        ALTER TABLE assignments ADD COLUMN IF NOT EXISTS nearest_id VARCHAR;
        ALTER TABLE labels ADD COLUMN IF NOT EXISTS parent_id VARCHAR;
        ALTER TABLE labels ADD COLUMN IF NOT EXISTS level INTEGER;
        ALTER TABLE assignments ADD COLUMN IF NOT EXISTS offered_ids VARCHAR[];
        ALTER TABLE samples ADD COLUMN IF NOT EXISTS round INTEGER;
        ALTER TABLE runs ADD COLUMN IF NOT EXISTS owner VARCHAR;
    """)


def m003_label_origins_and_redactions(con: duckdb.DuckDBPyConnection) -> None:
    """Given vs discovered labels (`--labels`) and counts of scrubbed personal data (`--redact-pii`)."""
    con.execute("""
        CREATE TABLE IF NOT EXISTS label_origins(
            run_id VARCHAR, label_id VARCHAR, origin VARCHAR, PRIMARY KEY(run_id, label_id));
        CREATE TABLE IF NOT EXISTS redactions(run_id VARCHAR, call_id VARCHAR, kind VARCHAR, spans INTEGER);
    """)


MIGRATIONS: list[tuple[int, Migration]] = [(1, m001_create_tables), (2, m002_added_columns),
                                           (3, m003_label_origins_and_redactions)]
assert MIGRATIONS[-1][0] == SCHEMA_VERSION, "SCHEMA_VERSION is the number of the last migration"


def applied(con: duckdb.DuckDBPyConnection) -> set[int]:
    """Numbers of the migrations this database has recorded."""
    con.execute("CREATE TABLE IF NOT EXISTS schema_migrations(id INTEGER PRIMARY KEY, name VARCHAR, "
                "applied_at TIMESTAMP)")
    return {r[0] for r in con.execute("SELECT id FROM schema_migrations").fetchall()}


def migrate(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Apply and record the migrations this database lacks, each in its own transaction; returns their names."""
    done = applied(con)
    ran = []
    for number, fn in MIGRATIONS:
        if number in done:
            continue
        con.execute("BEGIN")
        try:
            fn(con)
            con.execute("INSERT INTO schema_migrations VALUES (?, ?, ?)", [number, fn.__name__, now()])
            con.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", [str(number)])
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        ran.append(fn.__name__)
    return ran
