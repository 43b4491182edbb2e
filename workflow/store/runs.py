"""A run, the documents it sampled and the summaries it wrote: what a job has done so far."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

from workflow.owner import is_dead, this_process
from workflow.secrets import redact
from workflow.store.connection import Database
from workflow.store.schema import RunRow, StoreError, now


class Runs(Database):
    """Runs, their samples (phase 1: taxonomy, phase 2: labeling) and their summaries."""

    def create_run(self, corpus: str, use_case: str, config: dict, run_id: str | None = None) -> str:
        run_id = run_id or f"run-{now():%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"
        self._exec(
            "INSERT INTO runs (run_id, corpus, use_case, config, stage, status, error, created_at, updated_at, owner) "
            "VALUES (?, ?, ?, ?, 'created', 'running', NULL, ?, ?, ?)",
            [run_id, corpus, use_case, json.dumps(config), now(), now(), this_process()],
        )
        return run_id

    def run(self, run_id: str) -> RunRow:
        """A run by id: ``.config`` is its validated JobConfig (StoreError when there is no such run)."""
        rows = self.query("SELECT * FROM runs WHERE run_id = ?", [run_id])
        if not rows:
            raise StoreError(f"no run '{run_id}' in {self.path} (see `tnt status`)")
        return RunRow.from_db(rows[0])

    def latest_run_id(self) -> str:
        row = self._one("SELECT run_id FROM runs ORDER BY created_at DESC LIMIT 1")
        if not row:
            raise StoreError(f"no runs in {self.path} yet (start one with `tnt run`)")
        return row[0]

    def runs(self) -> list[RunRow]:
        return [RunRow.from_db(r) for r in self.query("SELECT * FROM runs ORDER BY created_at")]

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
