"""tnt's database: the one place that writes SQL. `Store` composes one class per aggregate over one connection.

Layout: `schema` (tables, constants, typed rows), `migrations` (numbered, recorded), `connection` (opening, locking,
transactions), then one module per aggregate: `corpus`, `runs`, `taxonomy`, `assignments` (with reviews), `calls`,
`models` (with predictions and evaluations), `drift` (with updates).
"""

from __future__ import annotations

from pathlib import Path

from workflow.store.assignments import Assignments
from workflow.store.calls import Calls
from workflow.store.corpus import Corpus
from workflow.store.drift import Drift
from workflow.store.models import Models
from workflow.store.runs import Runs
from workflow.store.schema import (
    OTHER_ID,
    OTHER_NAME,
    SCHEMA_VERSION,
    Document,
    Label,
    RunRow,
    StoreError,
    content_id,
    next_label_ids,
    now,
    text_hash,
)
from workflow.store.taxonomy import Taxonomies

__all__ = ["OTHER_ID", "OTHER_NAME", "SCHEMA_VERSION", "Document", "Label", "RunRow", "Store", "StoreError",
           "content_id", "next_label_ids", "now", "text_hash"]


class Store(Corpus, Runs, Taxonomies, Assignments, Calls, Models, Drift):
    """A DuckDB file with tnt's schema (default `tnt.duckdb`). Opening it for writing migrates it and marks
    'interrupted' the runs whose process died while they were running."""

    def __init__(self, path: str | Path = "tnt.duckdb", read_only: bool = False):
        super().__init__(path, read_only=read_only)
        if not read_only:
            self.reap_dead_runs()
