"""Drift figures of new data against a model's held-out baseline (`tnt predict`, `tnt update`), and the
record of each `tnt update`, so a daily job can alert and an update can be resumed."""

from __future__ import annotations

import json
from collections.abc import Sequence

from workflow.store.connection import Database
from workflow.store.schema import now


class Drift(Database):
    """Drift rows by model and source; updates by run."""

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

    def drift(self, run_id: str) -> list[dict]:
        """Drift rows of every model of a run, newest pass first, batches in order; baseline parsed."""
        rows = self.query(
            "SELECT d.* FROM drift d JOIN models m USING (model_id) WHERE m.run_id = ? "
            "ORDER BY d.created_at DESC, d.source, d.batch", [run_id],
        )
        for r in rows:
            r["baseline"] = json.loads(r["baseline"]) if r["baseline"] else {}
        return rows

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
