"""The data model in one place: every table tnt keeps (as it is after the last migration), its constants and the
typed rows the store hands out.

One DuckDB file holds a project. Big data (documents, summaries, assignments, embeddings) lives here and is
read by id; the LangGraph state only carries ids and cursors. Every LLM answer, human edit and trained model is
a row, so a run can be audited, resumed, diffed and re-exported. Columns added after the first release are listed
last in their table, in the order `migrations.py` adds them, so a migrated database and a new one agree.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from functools import cached_property
from typing import Any

from workflow.config import JobConfig

SCHEMA_VERSION = 3  # the number of the last migration (workflow/store/migrations.py)
OTHER_ID = "other"
OTHER_NAME = "Other"

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key VARCHAR PRIMARY KEY, value VARCHAR);
CREATE TABLE IF NOT EXISTS runs(
    run_id VARCHAR PRIMARY KEY, corpus VARCHAR, use_case VARCHAR, config JSON,
    stage VARCHAR, status VARCHAR, error VARCHAR,
    created_at TIMESTAMP, updated_at TIMESTAMP, owner VARCHAR);
CREATE TABLE IF NOT EXISTS documents(
    corpus VARCHAR, doc_id VARCHAR, text VARCHAR, text_hash VARCHAR, n_chars INTEGER,
    meta JSON, ingested_at TIMESTAMP, PRIMARY KEY(corpus, doc_id));
CREATE TABLE IF NOT EXISTS samples(
    run_id VARCHAR, phase INTEGER, doc_id VARCHAR, batch INTEGER, round INTEGER, PRIMARY KEY(run_id, phase, doc_id));
CREATE TABLE IF NOT EXISTS summaries(
    run_id VARCHAR, doc_id VARCHAR, summary VARCHAR, status VARCHAR, call_id VARCHAR,
    PRIMARY KEY(run_id, doc_id));
CREATE TABLE IF NOT EXISTS taxonomies(
    run_id VARCHAR, version INTEGER, stage VARCHAR, batch INTEGER, rating INTEGER, notes VARCHAR,
    author VARCHAR, call_id VARCHAR, created_at TIMESTAMP, PRIMARY KEY(run_id, version));
CREATE TABLE IF NOT EXISTS labels(
    run_id VARCHAR, version INTEGER, label_id VARCHAR, name VARCHAR, description VARCHAR, position INTEGER,
    parent_id VARCHAR, level INTEGER, PRIMARY KEY(run_id, version, label_id));
CREATE TABLE IF NOT EXISTS llm_calls(
    call_id VARCHAR PRIMARY KEY, run_id VARCHAR, step VARCHAR, request_hash VARCHAR, model VARCHAR,
    prompt_name VARCHAR, prompt_hash VARCHAR, status VARCHAR, attempts INTEGER, response JSON, error VARCHAR,
    prompt_tokens INTEGER, completion_tokens INTEGER, cost DOUBLE, latency_s DOUBLE, created_at TIMESTAMP);
CREATE INDEX IF NOT EXISTS llm_calls_hash ON llm_calls(request_hash);
CREATE TABLE IF NOT EXISTS assignments(
    run_id VARCHAR, doc_id VARCHAR, source VARCHAR, label_id VARCHAR, taxonomy_version INTEGER,
    rationale VARCHAR, confidence DOUBLE, status VARCHAR, call_id VARCHAR, created_at TIMESTAMP,
    label_ids VARCHAR[], nearest_id VARCHAR, offered_ids VARCHAR[], PRIMARY KEY(run_id, doc_id, source));
CREATE TABLE IF NOT EXISTS embeddings(
    text_hash VARCHAR, model VARCHAR, vector FLOAT[], PRIMARY KEY(text_hash, model));
CREATE TABLE IF NOT EXISTS models(
    model_id VARCHAR PRIMARY KEY, run_id VARCHAR, algorithm VARCHAR, embedding_model VARCHAR,
    taxonomy_version INTEGER, metrics JSON, artifact BLOB, created_at TIMESTAMP);
CREATE TABLE IF NOT EXISTS predictions(
    model_id VARCHAR, run_id VARCHAR, doc_id VARCHAR, label_id VARCHAR, probability DOUBLE,
    uncertain BOOLEAN, label_ids VARCHAR[], PRIMARY KEY(model_id, doc_id));
CREATE TABLE IF NOT EXISTS reviews(
    run_id VARCHAR, review_id INTEGER, action VARCHAR, reviewer VARCHAR, details JSON,
    taxonomy_version INTEGER, created_at TIMESTAMP, PRIMARY KEY(run_id, review_id));
CREATE TABLE IF NOT EXISTS label_members(
    run_id VARCHAR, doc_id VARCHAR, label_id VARCHAR, PRIMARY KEY(run_id, doc_id));
CREATE TABLE IF NOT EXISTS eval_results(
    run_id VARCHAR, metric VARCHAR, value DOUBLE, details JSON, created_at TIMESTAMP);
CREATE TABLE IF NOT EXISTS updates(
    run_id VARCHAR, update_id INTEGER, source_key VARCHAR, status VARCHAR, state JSON, report JSON,
    created_at TIMESTAMP, updated_at TIMESTAMP, PRIMARY KEY(run_id, update_id));
CREATE TABLE IF NOT EXISTS drift(
    model_id VARCHAR, source VARCHAR, batch INTEGER, n INTEGER, other_share DOUBLE, uncertain_share DOUBLE,
    centroid_distance DOUBLE, baseline JSON, created_at TIMESTAMP);
CREATE TABLE IF NOT EXISTS structured_modes(
    api_base VARCHAR, model VARCHAR, mode VARCHAR, updated_at TIMESTAMP, PRIMARY KEY(api_base, model));
CREATE TABLE IF NOT EXISTS label_origins(
    run_id VARCHAR, label_id VARCHAR, origin VARCHAR, PRIMARY KEY(run_id, label_id));
CREATE TABLE IF NOT EXISTS redactions(
    run_id VARCHAR, call_id VARCHAR, kind VARCHAR, spans INTEGER);
"""
# What the columns mean, where the name does not say it:
# runs.owner: "host:boot id:pid:start time" of the process that set the run running (workflow/owner.py). A run
#   left 'running' by a process that no longer exists (SIGKILL, native crash, power cut) is marked 'interrupted' the
#   next time the database is opened for writing, so `tnt status` never shows a dead run as running.
# assignments.label_ids / predictions.label_ids: every label of a multi-label run (label_id is the first).
# assignments.nearest_id: the label nearest the document by embedding, kept beside the LLM's choice.
# assignments source 'recheck' (`--recheck`): the model's second answer for a suspect label, beside (never over)
#   its 'llm' row; `offered_ids` = [the label it had, the classifier's alternative], the only two it could choose.
#   Training labels: human > recheck > llm.
# labels.parent_id / level (hierarchy, issue 12): a leaf label's `parent_id` names a level-2 row of the same
#   taxonomy version (level = 2); leaves have level NULL or 1, so every reader of leaves (labeling, training) keeps
#   seeing only leaves.
# samples.round (active label selection, issue 11): the selection round that picked a phase-2 document (0: the
#   random seed set, or the whole random sample; 1...: rounds chosen by the classifier's uncertainty; NULL: drawn
#   before rounds existed, or added by `tnt update`).
# label_origins (`--labels`, issue 22): 'seed' for a label id the user gave, 'discovered' for one proposal added;
#   per id, not per version, so renames in review keep it. Runs without given labels have no rows.
# redactions (`--redact-pii`, issue 22): spans of personal data scrubbed from one call's prompt, by kind (email,
#   phone, card, iban); the spans themselves are never stored.
# models.metrics.held_out_ids: the documents a single-label model held out (its test split, which also set its
#   conformal threshold); drift baselines and `tnt update` read it. Models trained before it was stored have the
#   seeded split recomputed (`workflow.classify.fit.held_out_ids`).

# tnt's own tables: `tnt predict` never writes an output table of one of these names (a new table is covered).
TNT_TABLES = frozenset(re.findall(r"CREATE TABLE IF NOT EXISTS (\w+)", SCHEMA)) | {"schema_migrations"}


class StoreError(RuntimeError):
    """A problem with the database a user can act on (in use, unknown run...)."""


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def content_id(text: str) -> str:
    """The id a document without one gets, from its text (same text, same id; `tnt run` and `tnt predict`)."""
    return "d" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:15]


def next_label_ids(used: Iterable[str], n: int, prefix: str = "L") -> list[str]:
    """n fresh label ids after the highest ``<prefix><number>`` in ``used`` ("L" leaves, "P" level-2 parents).
    Pass every id the run ever used (`Store.all_label_ids`) so a deleted label's id is never given again."""
    pattern = re.compile(rf"{re.escape(prefix)}(\d+)")
    top = max([int(m.group(1)) for i in used if (m := pattern.fullmatch(i))] + [0])
    return [f"{prefix}{top + k}" for k in range(1, n + 1)]


@dataclass(frozen=True)
class Label:
    label_id: str
    name: str
    description: str
    parent_id: str | None = None  # a level-2 label of the same taxonomy version (hierarchies only)


@dataclass(frozen=True)
class Document:
    doc_id: str
    text: str


@dataclass(frozen=True, eq=False)
class RunRow(Mapping[str, Any]):
    """A row of `runs`. ``.config`` is the run's settings validated once, here (JobConfig); ``row["column"]`` reads
    still work (``row["config"]`` is the stored dict), for code and notebooks written against dict rows."""

    run_id: str
    corpus: str
    use_case: str
    stored_config: dict[str, Any]  # the config as written by create_run / update_run_config
    stage: str | None
    status: str | None
    error: str | None
    created_at: dt.datetime | None
    updated_at: dt.datetime | None
    owner: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # columns added by a later migration

    @classmethod
    def from_db(cls, row: dict[str, Any]) -> RunRow:
        row = dict(row)
        raw = row.pop("config")
        known = {f.name for f in fields(cls)} - {"stored_config", "extra"}
        return cls(stored_config=json.loads(raw) if isinstance(raw, str) else dict(raw or {}),
                   extra={k: row.pop(k) for k in list(row) if k not in known}, **row)

    @cached_property
    def config(self) -> JobConfig:
        """The run's settings, validated (a pydantic error names a bad stored value)."""
        return JobConfig.model_validate(self.stored_config)

    def config_with(self, overrides: Mapping[str, Any] | None) -> JobConfig:
        """The settings with some options replaced (``tnt resume --max-cost``), validated together."""
        return JobConfig.model_validate({**self.stored_config, **(overrides or {})}) if overrides else self.config

    def _columns(self) -> list[str]:
        return [*(("config" if f.name == "stored_config" else f.name) for f in fields(self) if f.name != "extra"),
                *self.extra]

    def __getitem__(self, key: str) -> Any:
        if key == "config":
            return self.stored_config
        if key in self.extra:
            return self.extra[key]
        if key in ("stored_config", "extra") or key not in {f.name for f in fields(self)}:
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._columns())

    def __len__(self) -> int:
        return len(self._columns())
