"""The data model: every table tnt keeps, and the only module that writes SQL.

One DuckDB file holds a project. Big data (documents, summaries, assignments, embeddings) lives here and is
read by id; the LangGraph state only carries ids and cursors. Every LLM answer, human edit and trained model is
a row, so a run can be audited, resumed, diffed and re-exported.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import threading
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

from workflow.owner import is_dead, this_process
from workflow.secrets import redact

SCHEMA_VERSION = 1
OTHER_ID = "other"
OTHER_NAME = "Other"

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key VARCHAR PRIMARY KEY, value VARCHAR);
CREATE TABLE IF NOT EXISTS runs(
    run_id VARCHAR PRIMARY KEY, corpus VARCHAR, use_case VARCHAR, config JSON,
    stage VARCHAR, status VARCHAR, error VARCHAR,
    created_at TIMESTAMP, updated_at TIMESTAMP);
CREATE TABLE IF NOT EXISTS documents(
    corpus VARCHAR, doc_id VARCHAR, text VARCHAR, text_hash VARCHAR, n_chars INTEGER,
    meta JSON, ingested_at TIMESTAMP, PRIMARY KEY(corpus, doc_id));
CREATE TABLE IF NOT EXISTS samples(
    run_id VARCHAR, phase INTEGER, doc_id VARCHAR, batch INTEGER, PRIMARY KEY(run_id, phase, doc_id));
CREATE TABLE IF NOT EXISTS summaries(
    run_id VARCHAR, doc_id VARCHAR, summary VARCHAR, status VARCHAR, call_id VARCHAR,
    PRIMARY KEY(run_id, doc_id));
CREATE TABLE IF NOT EXISTS taxonomies(
    run_id VARCHAR, version INTEGER, stage VARCHAR, batch INTEGER, rating INTEGER, notes VARCHAR,
    author VARCHAR, call_id VARCHAR, created_at TIMESTAMP, PRIMARY KEY(run_id, version));
CREATE TABLE IF NOT EXISTS labels(
    run_id VARCHAR, version INTEGER, label_id VARCHAR, name VARCHAR, description VARCHAR, position INTEGER,
    PRIMARY KEY(run_id, version, label_id));
CREATE TABLE IF NOT EXISTS llm_calls(
    call_id VARCHAR PRIMARY KEY, run_id VARCHAR, step VARCHAR, request_hash VARCHAR, model VARCHAR,
    prompt_name VARCHAR, prompt_hash VARCHAR, status VARCHAR, attempts INTEGER, response JSON, error VARCHAR,
    prompt_tokens INTEGER, completion_tokens INTEGER, cost DOUBLE, latency_s DOUBLE, created_at TIMESTAMP);
CREATE INDEX IF NOT EXISTS llm_calls_hash ON llm_calls(request_hash);
CREATE TABLE IF NOT EXISTS assignments(
    run_id VARCHAR, doc_id VARCHAR, source VARCHAR, label_id VARCHAR, taxonomy_version INTEGER,
    rationale VARCHAR, confidence DOUBLE, status VARCHAR, call_id VARCHAR, created_at TIMESTAMP,
    label_ids VARCHAR[], PRIMARY KEY(run_id, doc_id, source));
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
"""


# Columns added after schema version 1; `label_ids` holds every label of a multi-label run (label_id is the first);
# `nearest_id` is the label nearest the document by embedding, kept beside the LLM's choice.
MIGRATIONS = """
ALTER TABLE assignments ADD COLUMN IF NOT EXISTS label_ids VARCHAR[];
ALTER TABLE predictions ADD COLUMN IF NOT EXISTS label_ids VARCHAR[];
ALTER TABLE assignments ADD COLUMN IF NOT EXISTS nearest_id VARCHAR;
ALTER TABLE labels ADD COLUMN IF NOT EXISTS parent_id VARCHAR;
ALTER TABLE labels ADD COLUMN IF NOT EXISTS level INTEGER;
ALTER TABLE assignments ADD COLUMN IF NOT EXISTS offered_ids VARCHAR[];
ALTER TABLE samples ADD COLUMN IF NOT EXISTS round INTEGER;
ALTER TABLE runs ADD COLUMN IF NOT EXISTS owner VARCHAR;
"""
# Runs: `owner` is "host:boot id:pid:start time" of the process that set the run running (workflow/owner.py). A run
# left 'running' by a process that no longer exists (SIGKILL, native crash, power cut) is marked 'interrupted' the
# next time the database is opened for writing, so `tnt status` never shows a dead run as running.
# Recheck (`--recheck`): a source 'recheck' row is the model's second answer for a suspect label, beside (never over)
# its 'llm' row; `offered_ids` = [the label it had, the classifier's alternative], the only two it could choose.
# Training labels: human > recheck > llm (TRAINING_SOURCES).
# Hierarchy (issue 12): a leaf label's `parent_id` names a level-2 row of the same taxonomy version (level = 2);
# leaves have level NULL or 1, so every reader of leaves (labeling, training) keeps seeing only leaves.
# Active label selection (issue 11): `samples.round` is the selection round that picked a phase-2 document (0: the
# random seed set, or the whole random sample; 1...: rounds chosen by the classifier's uncertainty; NULL: drawn
# before rounds existed, or added by `tnt update`).
# Models: `metrics.held_out_ids` lists the documents a single-label model held out (its test split, which also set
# its conformal threshold); drift baselines and `tnt update` read it. Models trained before it was stored have the
# seeded split recomputed (`workflow.classify.fit.held_out_ids`).


class StoreError(RuntimeError):
    """A problem with the database a user can act on (in use, unknown run...)."""


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


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


class Store:
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
            self.con.execute(SCHEMA)
            self.con.execute(MIGRATIONS)
            self.con.execute(
                "INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)]
            )
            self.reap_dead_runs()

    def close(self) -> None:
        with self._lock:
            self.con.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- low-level helpers -------------------------------------------------------------------------------------

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        with self._lock:
            return self.con.execute(sql, params).fetchall()

    def _one(self, sql: str, params: Sequence[Any] = ()) -> tuple | None:
        with self._lock:
            return self.con.execute(sql, params).fetchone()

    def _exec(self, sql: str, params: Sequence[Any] = ()) -> None:
        with self._lock:
            self.con.execute(sql, params)

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

    # -- documents ---------------------------------------------------------------------------------------------

    def insert_documents(self, corpus: str, docs: Iterable[tuple[str, str, dict]]) -> tuple[int, int]:
        """Add (doc_id, text, meta) rows; returns (added, already_present).

        Re-ingesting the same corpus is a no-op; an id that already holds a different text is refused, because
        runs that labeled the old text would silently point at new text.
        """
        rows = [(corpus, d, t, text_hash(t), len(t), json.dumps(m, default=str), now()) for d, t, m in docs]
        if not rows:
            return 0, 0
        with self.transaction() as con:
            con.execute("CREATE OR REPLACE TEMP TABLE _incoming AS SELECT * FROM documents LIMIT 0")
            con.executemany("INSERT INTO _incoming VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            clash = con.execute(
                "SELECT i.doc_id FROM _incoming i JOIN documents d USING (corpus, doc_id) "
                "WHERE d.text_hash <> i.text_hash LIMIT 1"
            ).fetchone()
            if clash:
                raise StoreError(
                    f"corpus '{corpus}' already has a document with id '{clash[0]}' and a different text; "
                    "ingest under another --corpus name"
                )
            present = con.execute(
                "SELECT count(*) FROM _incoming i JOIN documents d USING (corpus, doc_id)"
            ).fetchone()[0]
            con.execute("INSERT INTO documents SELECT * FROM _incoming ANTI JOIN documents USING (corpus, doc_id)")
            con.execute("DROP TABLE _incoming")
        return len(rows) - present, present

    def corpus_size(self, corpus: str) -> int:
        return self._one("SELECT count(*) FROM documents WHERE corpus = ?", [corpus])[0]

    def corpus_doc_ids(self, corpus: str) -> list[str]:
        return [r[0] for r in self._rows("SELECT doc_id FROM documents WHERE corpus = ? ORDER BY doc_id", [corpus])]

    def documents(self, corpus: str, doc_ids: Sequence[str]) -> list[Document]:
        """Documents in the order of doc_ids."""
        if not doc_ids:
            return []
        rows = dict(
            self._rows(
                "SELECT doc_id, text FROM documents WHERE corpus = ? AND doc_id IN (SELECT unnest(?))",
                [corpus, list(doc_ids)],
            )
        )
        return [Document(d, rows[d]) for d in doc_ids]

    def iter_corpus(self, corpus: str, batch_size: int = 2048) -> Iterator[list[tuple[str, str, str]]]:
        """(doc_id, text, text_hash) batches over a whole corpus in a stable order, with bounded memory."""
        last = ""
        while True:
            rows = self._rows(
                "SELECT doc_id, text, text_hash FROM documents WHERE corpus = ? AND doc_id > ? "
                "ORDER BY doc_id LIMIT ?",
                [corpus, last, batch_size],
            )
            if not rows:
                return
            yield rows
            last = rows[-1][0]

    # -- runs --------------------------------------------------------------------------------------------------

    def create_run(self, corpus: str, use_case: str, config: dict, run_id: str | None = None) -> str:
        run_id = run_id or f"run-{now():%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"
        self._exec(
            "INSERT INTO runs (run_id, corpus, use_case, config, stage, status, error, created_at, updated_at, owner) "
            "VALUES (?, ?, ?, ?, 'created', 'running', NULL, ?, ?, ?)",
            [run_id, corpus, use_case, json.dumps(config), now(), now(), this_process()],
        )
        return run_id

    def run(self, run_id: str) -> dict:
        rows = self.query("SELECT * FROM runs WHERE run_id = ?", [run_id])
        if not rows:
            raise StoreError(f"no run '{run_id}' in {self.path} (see `tnt status`)")
        row = rows[0]
        row["config"] = json.loads(row["config"])
        return row

    def latest_run_id(self) -> str:
        row = self._one("SELECT run_id FROM runs ORDER BY created_at DESC LIMIT 1")
        if not row:
            raise StoreError(f"no runs in {self.path} yet (start one with `tnt run`)")
        return row[0]

    def runs(self) -> list[dict]:
        return self.query("SELECT * FROM runs ORDER BY created_at")

    def update_run_config(self, run_id: str, config: dict) -> None:
        self._exec("UPDATE runs SET config = ?, updated_at = ? WHERE run_id = ?", [json.dumps(config), now(), run_id])

    def set_run_stage(self, run_id: str, stage: str, status: str = "running", error: str | None = None) -> None:
        self._exec(
            "UPDATE runs SET stage = ?, status = ?, error = ?, updated_at = ?, owner = ? WHERE run_id = ?",
            [stage, status, redact(error), now(), this_process() if status == "running" else None,
             run_id],
        )

    def reap_dead_runs(self) -> list[str]:
        """Mark 'interrupted' every run left 'running' by a process that is gone; returns their ids."""
        dead = [r for r, owner in self._rows("SELECT run_id, owner FROM runs WHERE status = 'running'")
                if is_dead(owner)]
        for run_id in dead:
            self._exec(
                "UPDATE runs SET status = 'interrupted', owner = NULL, error = ?, updated_at = ? WHERE run_id = ?",
                [f"the process running it ended without finishing (killed, crashed or lost power); continue with "
                 f"`tnt resume {run_id}`", now(), run_id],
            )
        return dead

    # -- samples -----------------------------------------------------------------------------------------------

    def save_sample(self, run_id: str, phase: int, doc_ids: Sequence[str], batch_size: int,
                    round: int | None = 0) -> None:
        """Write a sample once: a resumed run must reuse the very same documents."""
        rows = [(run_id, phase, d, i // batch_size, round) for i, d in enumerate(doc_ids)]
        with self.transaction() as con:
            con.execute("DELETE FROM samples WHERE run_id = ? AND phase = ?", [run_id, phase])
            if rows:
                con.executemany("INSERT INTO samples (run_id, phase, doc_id, batch, round) VALUES (?, ?, ?, ?, ?)",
                                rows)

    def extend_sample(self, run_id: str, phase: int, doc_ids: Sequence[str], batch_size: int,
                      round: int | None) -> None:
        """Append documents to a sample (an active-selection round, or `tnt update`'s extra documents), keeping the
        rows already there and their rounds; documents already in the sample are skipped."""
        with self.transaction() as con:
            have = {r[0] for r in con.execute("SELECT doc_id FROM samples WHERE run_id = ? AND phase = ?",
                                              [run_id, phase]).fetchall()}
            start = len(have)
            fresh = [d for d in dict.fromkeys(doc_ids) if d not in have]
            if fresh:
                con.executemany("INSERT INTO samples (run_id, phase, doc_id, batch, round) VALUES (?, ?, ?, ?, ?)",
                                [(run_id, phase, d, (start + i) // batch_size, round) for i, d in enumerate(fresh)])

    def sample(self, run_id: str, phase: int, batch: int | None = None) -> list[str]:
        sql = "SELECT doc_id FROM samples WHERE run_id = ? AND phase = ?"
        params: list[Any] = [run_id, phase]
        if batch is not None:
            sql += " AND batch = ?"
            params.append(batch)
        return [r[0] for r in self._rows(sql + " ORDER BY batch, rowid", params)]

    def sample_rounds(self, run_id: str, phase: int = 2) -> dict[str, int | None]:
        """The selection round that picked each sampled document (see `samples.round`), in sample order."""
        return dict(self._rows("SELECT doc_id, round FROM samples WHERE run_id = ? AND phase = ? ORDER BY batch, rowid",
                               [run_id, phase]))

    def n_batches(self, run_id: str, phase: int) -> int:
        return self._one(
            "SELECT coalesce(max(batch) + 1, 0) FROM samples WHERE run_id = ? AND phase = ?", [run_id, phase]
        )[0]

    # -- summaries ---------------------------------------------------------------------------------------------

    def save_summary(self, run_id: str, doc_id: str, summary: str | None, status: str, call_id: str | None) -> None:
        self._exec(
            "INSERT OR REPLACE INTO summaries VALUES (?, ?, ?, ?, ?)", [run_id, doc_id, summary, status, call_id]
        )

    def summaries(self, run_id: str, doc_ids: Sequence[str] | None = None) -> dict[str, str]:
        """Successful summaries by doc id."""
        rows = self._rows("SELECT doc_id, summary FROM summaries WHERE run_id = ? AND status = 'ok'", [run_id])
        found = dict(rows)
        return found if doc_ids is None else {d: found[d] for d in doc_ids if d in found}

    def failed_summary_ids(self, run_id: str) -> list[str]:
        return [r[0] for r in self._rows(
            "SELECT doc_id FROM summaries WHERE run_id = ? AND status <> 'ok' ORDER BY doc_id", [run_id])]

    def summarized_ids(self, run_id: str) -> set[str]:
        return {r[0] for r in self._rows("SELECT doc_id FROM summaries WHERE run_id = ? AND status = 'ok'", [run_id])}

    # -- taxonomies --------------------------------------------------------------------------------------------

    def save_taxonomy(
        self,
        run_id: str,
        labels: Sequence[Label],
        stage: str,
        *,
        batch: int | None = None,
        rating: int | None = None,
        notes: str | None = None,
        author: str = "llm",
        call_id: str | None = None,
        members: Mapping[str, str] | None = None,
        parents: Sequence[Label] | None = None,
        repoint: bool = False,
    ) -> int:
        """Append a new taxonomy version; versions are never edited in place. ``members`` (doc id -> label id) are
        the taxonomy-sample documents a cluster-seeded label was built from (they place each label in embedding
        space), replacing the previous members in the same transaction. ``parents``: level-2 labels the leaves'
        parent_id point at. ``repoint``: the leaves are unchanged (a hierarchy was added), so the run's live
        assignments move to the new version instead of looking out of date."""
        with self.transaction() as con:
            version = con.execute(
                "SELECT coalesce(max(version), 0) + 1 FROM taxonomies WHERE run_id = ?", [run_id]
            ).fetchone()[0]
            con.execute(
                "INSERT INTO taxonomies VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [run_id, version, stage, batch, rating, notes, author, call_id, now()],
            )
            self._insert_labels(con, run_id, version, labels, parents or ())
            if repoint:
                con.execute(
                    "UPDATE assignments SET taxonomy_version = ? WHERE run_id = ? "
                    "AND source IN ('llm', 'recheck', 'human') "
                    "AND status = 'ok'", [version, run_id],
                )
            if members is not None:
                con.execute("DELETE FROM label_members WHERE run_id = ?", [run_id])
                if members:
                    con.executemany("INSERT INTO label_members VALUES (?, ?, ?)",
                                    [(run_id, d, lid) for d, lid in members.items()])
        return version

    @staticmethod
    def _insert_labels(con: duckdb.DuckDBPyConnection, run_id: str, version: int, labels: Sequence[Label],
                       parents: Sequence[Label]) -> None:
        rows = [(run_id, version, lb.label_id, lb.name, lb.description, i, lb.parent_id, 1)
                for i, lb in enumerate(labels)]
        rows += [(run_id, version, p.label_id, p.name, p.description, i, None, 2) for i, p in enumerate(parents)]
        if rows:
            con.executemany(
                "INSERT INTO labels (run_id, version, label_id, name, description, position, parent_id, level) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows,
            )

    def taxonomy(self, run_id: str, version: int | None = None) -> tuple[int, list[Label]]:
        """A taxonomy version (default: the latest) as (version, labels)."""
        if version is None:
            row = self._one("SELECT max(version) FROM taxonomies WHERE run_id = ?", [run_id])
            version = row[0] if row else None
            if version is None:
                return 0, []
        rows = self._rows(
            "SELECT label_id, name, description, parent_id FROM labels WHERE run_id = ? AND version = ? "
            "AND coalesce(level, 1) = 1 ORDER BY position",
            [run_id, version],
        )
        return version, [Label(*r) for r in rows]

    def parents(self, run_id: str, version: int | None = None) -> list[Label]:
        """The level-2 labels of a taxonomy version (default: the latest); empty for a flat taxonomy."""
        if version is None:
            version = self._one("SELECT max(version) FROM taxonomies WHERE run_id = ?", [run_id])[0]
        rows = self._rows(
            "SELECT label_id, name, description FROM labels WHERE run_id = ? AND version = ? AND level = 2 "
            "ORDER BY position", [run_id, version],
        )
        return [Label(*r) for r in rows]

    def taxonomy_versions(self, run_id: str) -> list[dict]:
        return self.query("SELECT * FROM taxonomies WHERE run_id = ? ORDER BY version", [run_id])

    # -- LLM calls (log and cache) -----------------------------------------------------------------------------

    def cached_response(self, request_hash: str) -> str | None:
        row = self._one(
            "SELECT response FROM llm_calls WHERE request_hash = ? AND status = 'ok' ORDER BY created_at LIMIT 1",
            [request_hash],
        )
        return row[0] if row else None

    def rejected_response(self, request_hash: str) -> tuple[str, str, str] | None:
        """(last answer text, call_id, error) of a request whose answers were all rejected by validation."""
        row = self._one(
            "SELECT response, call_id, error FROM llm_calls WHERE request_hash = ? AND status = 'rejected' "
            "ORDER BY created_at DESC LIMIT 1", [request_hash],
        )
        if not row or row[0] is None:
            return None
        text = json.loads(row[0])
        return (text, row[1], row[2]) if isinstance(text, str) else None

    def log_call(self, **fields: Any) -> str:
        call_id = fields.pop("call_id", None) or uuid.uuid4().hex
        cols = [
            "run_id", "step", "request_hash", "model", "prompt_name", "prompt_hash", "status", "attempts",
            "response", "error", "prompt_tokens", "completion_tokens", "cost", "latency_s",
        ]
        fields["error"] = redact(fields.get("error"))
        values = [fields.get(c) for c in cols]
        self._exec(
            f"INSERT INTO llm_calls (call_id, {', '.join(cols)}, created_at) VALUES ({', '.join('?' * (len(cols) + 2))})",
            [call_id, *values, now()],
        )
        return call_id

    # -- structured-output modes (workflow/llm/structured.py): what each server accepted, so runs start from it --

    def structured_mode(self, api_base: str | None, model: str) -> str | None:
        row = self._one("SELECT mode FROM structured_modes WHERE api_base = ? AND model = ?", [api_base or "", model])
        return row[0] if row else None

    def save_structured_mode(self, api_base: str | None, model: str, mode: str) -> None:
        self._exec("INSERT OR REPLACE INTO structured_modes VALUES (?, ?, ?, ?)", [api_base or "", model, mode, now()])

    def call_stats(self, run_id: str | None = None) -> list[dict]:
        where, params = ("WHERE run_id = ?", [run_id]) if run_id else ("", [])
        return self.query(
            "SELECT step, model, count(*) AS calls, count(*) FILTER (status = 'ok') AS ok, "
            "count(*) FILTER (status = 'rejected') AS rejected, "
            "count(*) FILTER (status NOT IN ('ok', 'rejected')) AS failed, coalesce(sum(prompt_tokens), 0) AS prompt_tokens, "
            "coalesce(sum(completion_tokens), 0) AS completion_tokens, coalesce(sum(cost), 0) AS cost, "
            f"coalesce(sum(latency_s), 0) AS latency_s FROM llm_calls {where} GROUP BY step, model ORDER BY step",
            params,
        )

    def calls_since(self, run_ids: Sequence[str], since: dt.datetime) -> int:
        """Model calls (cache answers are not calls) logged for these runs since a moment."""
        return self._one("SELECT count(*) FROM llm_calls WHERE run_id IN (SELECT unnest(?)) AND created_at >= ?",
                         [list(run_ids), since])[0]

    def total_cost(self, run_id: str) -> float:
        return float(self._one("SELECT coalesce(sum(cost), 0) FROM llm_calls WHERE run_id = ?", [run_id])[0])

    # -- assignments -------------------------------------------------------------------------------------------

    def save_assignment(
        self,
        run_id: str,
        doc_id: str,
        source: str,
        label_id: str | None,
        *,
        taxonomy_version: int,
        rationale: str | None = None,
        confidence: float | None = None,
        status: str = "ok",
        call_id: str | None = None,
        label_ids: Sequence[str] | None = None,
        nearest_id: str | None = None,
        offered_ids: Sequence[str] | None = None,
    ) -> None:
        """``label_ids``: all labels of a multi-label answer, ``label_id`` first (None for single-label runs).
        ``nearest_id``: the label nearest the document by embedding; where it differs from the LLM's, the review
        queue looks first. ``offered_ids``: a recheck's two choices, [original, alternative]."""
        self._exec(
            "INSERT OR REPLACE INTO assignments BY NAME SELECT ? AS run_id, ? AS doc_id, ? AS source, ? AS label_id, "
            "? AS taxonomy_version, ? AS rationale, ? AS confidence, ? AS status, ? AS call_id, ? AS created_at, "
            "?::VARCHAR[] AS label_ids, ? AS nearest_id, ?::VARCHAR[] AS offered_ids",
            [run_id, doc_id, source, label_id, taxonomy_version, rationale, confidence, status, call_id, now(),
             list(label_ids) if label_ids is not None else None, nearest_id,
             list(offered_ids) if offered_ids is not None else None],
        )

    def assignments(self, run_id: str, source: str = "llm", taxonomy_version: int | None = None) -> dict[str, str]:
        """Successful label ids by doc id."""
        sql = "SELECT doc_id, label_id FROM assignments WHERE run_id = ? AND source = ? AND status = 'ok'"
        params: list[Any] = [run_id, source]
        if taxonomy_version is not None:
            sql += " AND taxonomy_version = ?"
            params.append(taxonomy_version)
        return dict(self._rows(sql, params))

    def training_labels(self, run_id: str) -> dict[str, str]:
        """Labels to train on: a human correction wins over a recheck answer, which wins over the LLM's label."""
        rows = self._rows(
            "SELECT doc_id, label_id FROM assignments WHERE run_id = ? AND status = 'ok' "
            "AND source IN ('llm', 'recheck', 'human') "
            "QUALIFY row_number() OVER (PARTITION BY doc_id "
            "ORDER BY CASE source WHEN 'human' THEN 0 WHEN 'recheck' THEN 1 ELSE 2 END) = 1",
            [run_id],
        )
        return dict(rows)

    def rechecks(self, run_id: str) -> dict[str, dict]:
        """Per rechecked document: its recheck row (label_id, status, offered_ids, rationale, call_id)."""
        rows = self.query(
            "SELECT doc_id, label_id, status, offered_ids, rationale, call_id FROM assignments "
            "WHERE run_id = ? AND source = 'recheck'", [run_id])
        return {r.pop("doc_id"): r for r in rows}

    def recheck_counts(self, run_id: str) -> dict[str, int]:
        """How many labels went back to the model, and how many answers flipped to the alternative or kept."""
        row = self._one(
            "SELECT count(*), count(*) FILTER (status = 'ok' AND label_id = offered_ids[2]), "
            "count(*) FILTER (status = 'ok' AND label_id = offered_ids[1]), count(*) FILTER (status <> 'ok') "
            "FROM assignments WHERE run_id = ? AND source = 'recheck'", [run_id])
        return dict(zip(("rechecked", "flipped", "kept", "failed"), row))

    def training_label_sets(self, run_id: str) -> dict[str, list[str]]:
        """Multi-label training targets: the LLM's label set, or a human correction's single label."""
        rows = self._rows(
            "SELECT doc_id, coalesce(label_ids, [label_id]) FROM assignments WHERE run_id = ? AND status = 'ok' "
            "AND source IN ('llm', 'human') "
            "QUALIFY row_number() OVER (PARTITION BY doc_id ORDER BY source = 'human' DESC) = 1",
            [run_id],
        )
        return {d: list(ls) for d, ls in rows}

    def cluster_members(self, run_id: str) -> dict[str, str]:
        """Label id by doc id of the taxonomy-sample documents each cluster-seeded label was built from."""
        return dict(self._rows("SELECT doc_id, label_id FROM label_members WHERE run_id = ?", [run_id]))

    def add_cluster_members(self, run_id: str, members: Mapping[str, str]) -> None:
        """Members for labels added later (`tnt update`), beside the existing ones (doc id -> label id)."""
        if members:
            with self.transaction() as con:
                con.executemany("INSERT OR REPLACE INTO label_members VALUES (?, ?, ?)",
                                [(run_id, d, lid) for d, lid in members.items()])

    def label_counts(self, run_id: str, source: str = "llm") -> dict[str, int]:
        return dict(
            self._rows(
                "SELECT label_id, count(*) FROM assignments WHERE run_id = ? AND source = ? AND status = 'ok' "
                "GROUP BY label_id",
                [run_id, source],
            )
        )

    def count_failed(self, run_id: str) -> dict[str, int]:
        summ = self._one("SELECT count(*) FROM summaries WHERE run_id = ? AND status <> 'ok'", [run_id])[0]
        lab = self._one(
            "SELECT count(*) FROM assignments WHERE run_id = ? AND source = 'llm' AND status <> 'ok'", [run_id]
        )[0]
        return {"summaries": summ, "labels": lab}

    # -- embeddings --------------------------------------------------------------------------------------------

    def cached_embeddings(self, model: str, hashes: Sequence[str]) -> dict[str, np.ndarray]:
        if not hashes:
            return {}
        rows = self._rows(
            "SELECT text_hash, vector FROM embeddings WHERE model = ? AND text_hash IN (SELECT unnest(?))",
            [model, list(set(hashes))],
        )
        return {h: np.asarray(v, dtype=np.float32) for h, v in rows}

    def save_embeddings(self, model: str, hashes: Sequence[str], vectors: np.ndarray) -> None:
        if not len(hashes):
            return
        import pyarrow as pa

        table = pa.table(
            {
                "text_hash": list(hashes),
                "model": [model] * len(hashes),
                "vector": pa.array(list(np.asarray(vectors, dtype=np.float32)), type=pa.list_(pa.float32())),
            }
        )
        with self._lock:
            self.con.register("_emb", table)
            try:
                self.con.execute("INSERT OR IGNORE INTO embeddings SELECT * FROM _emb")
            finally:
                self.con.unregister("_emb")

    # -- models and predictions --------------------------------------------------------------------------------

    def save_model(
        self,
        run_id: str,
        *,
        algorithm: str,
        embedding_model: str,
        taxonomy_version: int,
        metrics: dict,
        artifact: bytes,
    ) -> str:
        model_id = f"{run_id}-m{self._one('SELECT count(*) FROM models WHERE run_id = ?', [run_id])[0] + 1}"
        self._exec(
            "INSERT INTO models VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [model_id, run_id, algorithm, embedding_model, taxonomy_version, json.dumps(metrics), artifact, now()],
        )
        return model_id

    def model(self, model_id: str | None = None, run_id: str | None = None) -> dict:
        """A stored model by id, or the latest model of a run."""
        if model_id:
            rows = self.query("SELECT * FROM models WHERE model_id = ?", [model_id])
        else:
            rows = self.query(
                "SELECT * FROM models WHERE run_id = ? ORDER BY created_at DESC LIMIT 1", [run_id]
            )
        if not rows:
            raise StoreError(f"no trained model for {model_id or run_id}")
        row = rows[0]
        row["metrics"] = json.loads(row["metrics"])
        return row

    def latest_model(self, run_id: str) -> dict | None:
        """The run's newest model, or None when it has none (e.g. a single-label run)."""
        try:
            return self.model(run_id=run_id)
        except StoreError:
            return None

    def save_predictions(self, model_id: str, run_id: str, rows: Sequence[tuple[str, str, float, bool]],
                         label_sets: Sequence[Sequence[str]] | None = None) -> None:
        """Replace-or-insert (doc_id, label_id, probability, uncertain) rows for a model; ``label_sets`` (aligned
        with rows) only for a multi-label model."""
        if not rows:
            return
        sets = label_sets if label_sets is not None else [None] * len(rows)
        with self.transaction() as con:
            con.executemany(
                "INSERT OR REPLACE INTO predictions VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(model_id, run_id, d, lab, float(p), bool(u), None if ls is None else list(ls))
                 for (d, lab, p, u), ls in zip(rows, sets)],
            )

    def prediction_counts(self, model_id: str) -> dict[str, int]:
        return dict(
            self._rows("SELECT label_id, count(*) FROM predictions WHERE model_id = ? GROUP BY label_id", [model_id])
        )

    # -- evaluation --------------------------------------------------------------------------------------------
    # Reads the evaluation needs (gold labels, classifier predictions) and the eval_results log.

    def gold_labels(self, corpus: str, field: str) -> dict[str, str]:
        """Gold labels by doc id from documents.meta ->> field (documents without one are left out)."""
        rows = self._rows(
            "SELECT doc_id, meta ->> ? FROM documents WHERE corpus = ? AND meta ->> ? IS NOT NULL",
            [field, corpus, field],
        )
        return {d: str(v) for d, v in rows}

    def predictions(self, model_id: str) -> dict[str, str]:
        """Classifier label ids by doc id for one model."""
        return dict(self._rows("SELECT doc_id, label_id FROM predictions WHERE model_id = ?", [model_id]))

    def save_eval_results(self, run_id: str, results: Sequence[tuple[str, float | None, dict]]) -> None:
        """Append (metric, value, details) rows; earlier evaluations of the run stay for comparison."""
        stamp = now()
        with self.transaction() as con:
            con.executemany(
                "INSERT INTO eval_results VALUES (?, ?, ?, ?, ?)",
                [(run_id, m, v, json.dumps(d, default=str), stamp) for m, v, d in results],
            )

    def eval_results(self, run_id: str, latest_only: bool = True) -> list[dict]:
        """Stored metrics of a run (by default those of its latest evaluation), details parsed."""
        sql = "SELECT * FROM eval_results WHERE run_id = ?"
        if latest_only:
            sql += " AND created_at = (SELECT max(created_at) FROM eval_results WHERE run_id = ?)"
        rows = self.query(sql + " ORDER BY created_at, rowid", [run_id, run_id] if latest_only else [run_id])
        for r in rows:
            r["details"] = json.loads(r["details"]) if r["details"] else {}
        return rows

    # -- reviews (review page) ---------------------------------------------------------------------------------
    # Human edits from `tnt review`: each is a `reviews` row, and a taxonomy edit is also a new taxonomy version.
    # Assignments of the run are re-pointed to the new version in the same transaction; those whose label is
    # gone (deleted, split) turn 'stale', so the label node re-labels exactly those documents on resume.

    def apply_review(
        self,
        run_id: str,
        *,
        action: str,
        reviewer: str,
        details: dict,
        labels: Sequence[Label] | None = None,
        merge: dict[str, str] | None = None,
        stale_labels: Sequence[str] = (),
        correction: tuple[str, str] | None = None,
        parents: Sequence[Label] | None = None,
    ) -> tuple[int, int]:
        """Record one human edit atomically; returns (review_id, taxonomy version it leaves current).

        labels: the new taxonomy (None: the taxonomy is unchanged, e.g. a single-document correction).
        merge: label id -> label id its assignments move to. stale_labels: ids whose documents get re-labeled
        (besides any label missing from the new taxonomy). correction: (doc_id, label_id) as a human assignment.
        parents: the level-2 labels (None: the previous version's, and a label without a parent_id keeps the
        parent it had, so edits that rebuild labels never drop the hierarchy).
        """
        stamp = now()
        with self.transaction() as con:
            prev = con.execute(
                "SELECT coalesce(max(version), 0) FROM taxonomies WHERE run_id = ?", [run_id]
            ).fetchone()[0]
            version = prev
            if labels is not None:
                version = prev + 1
                con.execute(
                    "INSERT INTO taxonomies VALUES (?, ?, 'human', NULL, NULL, ?, ?, NULL, ?)",
                    [run_id, version, action, reviewer, stamp],
                )
                if parents is None:
                    parents = [Label(*r) for r in con.execute(
                        "SELECT label_id, name, description FROM labels WHERE run_id = ? AND version = ? "
                        "AND level = 2 ORDER BY position", [run_id, prev]).fetchall()]
                    had = dict(con.execute(
                        "SELECT label_id, parent_id FROM labels WHERE run_id = ? AND version = ? "
                        "AND coalesce(level, 1) = 1", [run_id, prev]).fetchall())
                    labels = [lb if lb.parent_id else Label(lb.label_id, lb.name, lb.description, had.get(lb.label_id))
                              for lb in labels]
                self._insert_labels(con, run_id, version, labels, parents)
                live = "run_id = ? AND source IN ('llm', 'recheck', 'human') AND status = 'ok'"
                for src, dst in (merge or {}).items():
                    con.execute(f"UPDATE assignments SET label_id = ? WHERE {live} AND label_id = ?", [dst, run_id, src])
                    con.execute("UPDATE assignments SET nearest_id = ? WHERE run_id = ? AND nearest_id = ?",
                                [dst, run_id, src])
                    # cluster members move too: they place the merged label in embedding space
                    con.execute("UPDATE label_members SET label_id = ? WHERE run_id = ? AND label_id = ?",
                                [dst, run_id, src])
                    con.execute(  # multi-label sets: the merged label is replaced, duplicates dropped
                        f"UPDATE assignments SET label_ids = list_distinct(list_transform(label_ids, "
                        f"lambda x: CASE WHEN x = ? THEN ? ELSE x END)) WHERE {live} AND list_contains(label_ids, ?)",
                        [src, dst, run_id, src],
                    )
                keep = [lb.label_id for lb in labels] + [OTHER_ID]
                con.execute(
                    f"UPDATE assignments SET status = 'stale' WHERE {live} "
                    "AND (label_id IN (SELECT unnest(?)) OR label_id NOT IN (SELECT unnest(?)) "
                    "OR list_has_any(coalesce(label_ids, []), ?::VARCHAR[]) "
                    "OR NOT list_has_all(?::VARCHAR[], coalesce(label_ids, [])))",
                    [run_id, list(stale_labels), keep, list(stale_labels), keep],
                )
                con.execute(
                    "UPDATE assignments SET taxonomy_version = ? WHERE run_id = ? "
                    "AND source IN ('llm', 'recheck', 'human') "
                    "AND status <> 'stale'",
                    [version, run_id],
                )
            if correction is not None:
                doc_id, label_id = correction
                con.execute(
                    "INSERT OR REPLACE INTO assignments BY NAME SELECT ? AS run_id, ? AS doc_id, 'human' AS source, "
                    "? AS label_id, ? AS taxonomy_version, ? AS rationale, 1.0 AS confidence, 'ok' AS status, "
                    "? AS created_at",
                    [run_id, doc_id, label_id, version, f"corrected by {reviewer}", stamp],
                )
            review_id = con.execute(
                "SELECT coalesce(max(review_id), 0) + 1 FROM reviews WHERE run_id = ?", [run_id]
            ).fetchone()[0]
            con.execute(
                "INSERT INTO reviews VALUES (?, ?, ?, ?, ?, ?, ?)",
                [run_id, review_id, action, reviewer, json.dumps(details, default=str), version, stamp],
            )
        return review_id, version

    def reviews(self, run_id: str) -> list[dict]:
        """The run's human edits, oldest first, details parsed."""
        rows = self.query("SELECT * FROM reviews WHERE run_id = ? ORDER BY review_id", [run_id])
        for r in rows:
            r["details"] = json.loads(r["details"]) if r["details"] else {}
        return rows

    def reviews_since(self, run_id: str, since: dt.datetime | None) -> int:
        """How many human edits were made after `since` (all of them when None)."""
        return self._one(
            "SELECT count(*) FROM reviews WHERE run_id = ? AND (? IS NULL OR created_at > ?)", [run_id, since, since]
        )[0]

    def all_label_ids(self, run_id: str) -> set[str]:
        """Every label id any version of the run used: fresh ids must never reuse a deleted label's id."""
        return {r[0] for r in self._rows("SELECT DISTINCT label_id FROM labels WHERE run_id = ?", [run_id])}

    def review_docs(self, run_id: str) -> list[dict]:
        """Per LLM-labeled document: text, LLM label/rationale/confidence/status and any human correction."""
        return self.query(
            "SELECT a.doc_id, d.text, d.text_hash, a.label_id AS llm_label, a.rationale, a.confidence, "
            "a.status, h.label_id AS human_label, a.nearest_id "
            "FROM assignments a JOIN runs r ON r.run_id = a.run_id "
            "JOIN documents d ON d.corpus = r.corpus AND d.doc_id = a.doc_id "
            "LEFT JOIN assignments h ON h.run_id = a.run_id AND h.doc_id = a.doc_id AND h.source = 'human' "
            "AND h.status = 'ok' "
            "WHERE a.run_id = ? AND a.source = 'llm' ORDER BY a.doc_id",
            [run_id],
        )

    def human_corrections(self, run_id: str) -> dict[str, str]:
        """Human label ids by doc id (ok corrections only)."""
        return self.assignments(run_id, "human")

    def review_doc_state(self, run_id: str, doc_id: str) -> dict | None:
        """{'llm': label, 'human': label} of one document of the run's corpus (None: no such document)."""
        row = self._one(
            "SELECT d.doc_id, "
            "(SELECT label_id FROM assignments WHERE run_id = ? AND doc_id = ? AND source = 'llm' AND status = 'ok'), "
            "(SELECT label_id FROM assignments WHERE run_id = ? AND doc_id = ? AND source = 'human' AND status = 'ok') "
            "FROM documents d JOIN runs r ON d.corpus = r.corpus WHERE r.run_id = ? AND d.doc_id = ?",
            [run_id, doc_id, run_id, doc_id, run_id, doc_id],
        )
        return None if row is None else {"llm": row[1], "human": row[2]}

    # -- serving ---------------------------------------------------------------------------------------------
    # Streaming reads and prediction-table writes for `tnt predict` (workflow/classify/predict.py). Reads use
    # their own cursor so a stream can stay open while predictions and cached embeddings are written.

    def corpus_batches(self, corpus: str, batch_size: int = 8192) -> Iterator[Any]:
        """pyarrow RecordBatches (doc_id, text, text_hash) over a corpus, streamed with bounded memory."""
        cur = self.con.cursor()
        try:
            reader = cur.sql(
                "SELECT doc_id, text, text_hash FROM documents WHERE corpus = ? ORDER BY doc_id", params=[corpus]
            ).to_arrow_reader(batch_size)
            yield from reader
        finally:
            cur.close()

    def table_batches(self, table: str, columns: Sequence[str], batch_size: int = 8192) -> Iterator[Any]:
        """pyarrow RecordBatches of some columns of any table in this database, streamed."""
        cols = ", ".join(self._quote_ident(c) for c in columns)
        cur = self.con.cursor()
        try:
            try:
                result = cur.sql(f"SELECT {cols} FROM {self._quote_ident(table)}")
            except duckdb.Error as exc:
                raise StoreError(f"cannot read {', '.join(columns)} from table {table}: {str(exc).splitlines()[0]}") from None
            yield from result.to_arrow_reader(batch_size)
        finally:
            cur.close()

    def limit_memory(self, limit: str) -> None:
        """Cap DuckDB's memory (e.g. '256MB') for a streaming job. A long scan otherwise keeps every block it read
        cached, up to 80% of RAM, so the footprint would grow with the table instead of staying flat. Row order
        of plain scans is given up too (every output row carries its id); that halves what a sort keeps pinned."""
        try:
            self.con.execute(f"SET memory_limit = '{limit.replace(chr(39), '')}'")
            self.con.execute("SET preserve_insertion_order = false")
        except duckdb.Error as exc:
            raise StoreError(f"bad memory limit {limit!r}: {str(exc).splitlines()[0]}") from None

    def table_columns(self, table: str) -> list[str]:
        """Column names of a table in this database (empty if there is no such table)."""
        return [r[0] for r in self._rows(
            "SELECT column_name FROM duckdb_columns() WHERE table_name = ? ORDER BY column_index", [table]
        )]

    def create_prediction_table(self, table: str, overwrite: bool = False) -> None:
        """An output table for `tnt predict`; never one of tnt's own tables, never silently replaced."""
        if table.lower() in self._TNT_TABLES:
            raise StoreError(f"'{table}' is one of tnt's own tables; choose another output table name")
        exists = self._one("SELECT count(*) FROM duckdb_tables() WHERE table_name = ?", [table])[0]
        if exists and not overwrite:
            raise StoreError(f"table '{table}' already exists in {self.path}; pass --overwrite to replace it")
        self._exec(
            f"CREATE OR REPLACE TABLE {self._quote_ident(table)}(doc_id VARCHAR, label_id VARCHAR, label_name VARCHAR, "
            "probability DOUBLE, uncertain BOOLEAN, model_version VARCHAR, label_ids VARCHAR[], parent_id VARCHAR, "
            "parent_name VARCHAR)"
        )

    def append_arrow(self, table: str, batch: Any) -> None:
        """Append a pyarrow Table/RecordBatch whose columns match the table's, in order."""
        with self._lock:
            self.con.register("_tnt_batch", batch)
            try:
                self.con.execute(f"INSERT INTO {self._quote_ident(table)} SELECT * FROM _tnt_batch")
            finally:
                self.con.unregister("_tnt_batch")

    _TNT_TABLES = frozenset(re.findall(r"CREATE TABLE IF NOT EXISTS (\w+)", SCHEMA))  # a new table is covered

    @staticmethod
    def _quote_ident(name: str) -> str:
        """A SQL identifier quoted for DuckDB (names come from users' command lines)."""
        return '"' + name.replace('"', '""') + '"'

    # -- drift (tnt predict, tnt update) ---------------------------------------------------------------------
    # Per-batch figures of new data against the run's own held-out baseline, so a daily job can alert.

    def save_drift(self, model_id: str, source: str, rows: Sequence[tuple[int, int, float, float, float | None]],
                   baseline: dict) -> None:
        """(batch, n, other_share, uncertain_share, centroid_distance) rows of one pass over ``source``."""
        stamp = now()
        with self.transaction() as con:
            con.execute("DELETE FROM drift WHERE model_id = ? AND source = ?", [model_id, source])
            con.executemany(
                "INSERT INTO drift VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(model_id, source, b, n, o, u, d, json.dumps(baseline), stamp) for b, n, o, u, d in rows],
            )

    def find_update(self, run_id: str, source_key: str) -> dict | None:
        """The `tnt update` of this run on these documents (same ids and texts), if one was started."""
        rows = self.query("SELECT * FROM updates WHERE run_id = ? AND source_key = ?", [run_id, source_key])
        if not rows:
            return None
        row = rows[0]
        row["state"], row["report"] = json.loads(row["state"] or "{}"), json.loads(row["report"] or "null")
        return row

    def save_update(self, run_id: str, update_id: int | None, source_key: str, status: str, state: dict,
                    report: dict | None = None) -> int:
        """Insert (update_id None) or replace an update's state; returns its id."""
        with self.transaction() as con:
            if update_id is None:
                update_id = con.execute(
                    "SELECT coalesce(max(update_id), 0) + 1 FROM updates WHERE run_id = ?", [run_id]).fetchone()[0]
                con.execute("INSERT INTO updates VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                            [run_id, update_id, source_key, status, json.dumps(state, default=str),
                             json.dumps(report, default=str), now(), now()])
            else:
                con.execute("UPDATE updates SET status = ?, state = ?, report = ?, updated_at = ? "
                            "WHERE run_id = ? AND update_id = ?",
                            [status, json.dumps(state, default=str), json.dumps(report, default=str), now(), run_id,
                             update_id])
        return update_id

    def drift(self, run_id: str) -> list[dict]:
        """Drift rows of every model of a run, newest pass first, batches in order; baseline parsed."""
        rows = self.query(
            "SELECT d.* FROM drift d JOIN models m USING (model_id) WHERE m.run_id = ? "
            "ORDER BY d.created_at DESC, d.source, d.batch", [run_id],
        )
        for r in rows:
            r["baseline"] = json.loads(r["baseline"]) if r["baseline"] else {}
        return rows

    # -- end serving ---
