"""Labels given to documents (by the LLM, a recheck, or a human) and the human edits of the review page.

Human edits from `tnt review`: each is a `reviews` row, and a taxonomy edit is also a new taxonomy version.
Assignments of the run are re-pointed to the new version in the same transaction; those whose label is
gone (deleted, split) turn 'stale', so the label node re-labels exactly those documents on resume.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

from workflow.store.connection import Database
from workflow.store.schema import OTHER_ID, Label, now
from workflow.store.taxonomy import insert_labels


class Assignments(Database):
    """Assignments by run, document and source; reviews by run."""

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

    def teacher_labels(self, run_id: str) -> Any:
        """`training_labels` with the documents' texts, as a DataFrame for the Python API: doc_id, text, label_id,
        source (human | recheck | llm), confidence."""
        with self._lock:
            return self.con.execute(
                "SELECT a.doc_id, d.text, a.label_id, a.source, a.confidence FROM assignments a "
                "JOIN runs r ON r.run_id = a.run_id JOIN documents d ON d.corpus = r.corpus AND d.doc_id = a.doc_id "
                "WHERE a.run_id = ? AND a.status = 'ok' AND a.source IN ('llm', 'recheck', 'human') "
                "QUALIFY row_number() OVER (PARTITION BY a.doc_id "
                "ORDER BY CASE a.source WHEN 'human' THEN 0 WHEN 'recheck' THEN 1 ELSE 2 END) = 1 "
                "ORDER BY a.doc_id", [run_id]).df()

    def final_labels(self, run_id: str, model_id: str) -> Any:
        """Every predicted document of a model with its final label, a human correction winning over the
        classifier, as a DataFrame: doc_id, text, label_id, source (classifier | human), confidence, uncertain."""
        with self._lock:
            return self.con.execute(
                "SELECT p.doc_id, d.text, coalesce(h.label_id, p.label_id) AS label_id, "
                "CASE WHEN h.label_id IS NULL THEN 'classifier' ELSE 'human' END AS source, "
                "CASE WHEN h.label_id IS NULL THEN p.probability ELSE 1.0 END AS confidence, "
                "coalesce(h.label_id IS NULL AND p.uncertain, false) AS uncertain "
                "FROM predictions p JOIN runs r ON r.run_id = p.run_id "
                "JOIN documents d ON d.corpus = r.corpus AND d.doc_id = p.doc_id "
                "LEFT JOIN assignments h ON h.run_id = p.run_id AND h.doc_id = p.doc_id AND h.source = 'human' "
                "AND h.status = 'ok' WHERE p.model_id = ? ORDER BY p.doc_id", [model_id]).df()

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
                insert_labels(con, run_id, version, labels, parents)
                live = "run_id = ? AND source IN ('llm', 'recheck', 'human') AND status = 'ok'"
                for src, dst in (merge or {}).items():
                    con.execute(f"UPDATE assignments SET label_id = ? WHERE {live} AND label_id = ?",
                                [dst, run_id, src])
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
