"""Trained classifiers, their predictions and evaluations, and the output tables `tnt predict` writes."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from workflow.store.connection import Database
from workflow.store.schema import TNT_TABLES, StoreError, now


class Models(Database):
    """Models by id, predictions by model, evaluation results by run."""

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

    def predictions(self, model_id: str) -> dict[str, str]:
        """Classifier label ids by doc id for one model."""
        return dict(self._rows("SELECT doc_id, label_id FROM predictions WHERE model_id = ?", [model_id]))

    def create_prediction_table(self, table: str, overwrite: bool = False) -> None:
        """An output table for `tnt predict`; never one of tnt's own tables, never silently replaced."""
        if table.lower() in TNT_TABLES:
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
