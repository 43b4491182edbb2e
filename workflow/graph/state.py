"""The graph state: ids and cursors only. Documents, summaries and labels live in DuckDB and are read by id,
so checkpoints stay tiny and never hold document text or secrets."""

from __future__ import annotations

from typing import TypedDict


class RunState(TypedDict, total=False):
    run_id: str
    batch: int  # next phase-1 minibatch for the taxonomy update loop
    taxonomy_version: int  # latest taxonomy version produced by the LLM steps
    approved_version: int  # the version labels are assigned with (after human review)
    model_id: str  # the trained classifier
