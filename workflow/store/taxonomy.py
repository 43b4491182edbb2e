"""Taxonomy versions of a run: labels (leaves, and level-2 parents for a hierarchy) and the documents each
cluster-seeded label was built from. Versions are appended, never edited in place."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import duckdb

from workflow.store.connection import Database
from workflow.store.schema import Label, next_label_ids, now


def insert_labels(con: duckdb.DuckDBPyConnection, run_id: str, version: int, labels: Sequence[Label],
                  parents: Sequence[Label]) -> None:
    """Write a version's leaves (level 1) and parents (level 2) inside the caller's transaction."""
    rows = [(run_id, version, lb.label_id, lb.name, lb.description, i, lb.parent_id, 1)
            for i, lb in enumerate(labels)]
    rows += [(run_id, version, p.label_id, p.name, p.description, i, None, 2) for i, p in enumerate(parents)]
    if rows:
        con.executemany(
            "INSERT INTO labels (run_id, version, label_id, name, description, position, parent_id, level) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows,
        )


class Taxonomies(Database):
    """Taxonomy versions and their labels."""

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
            insert_labels(con, run_id, version, labels, parents or ())
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

    def all_label_ids(self, run_id: str) -> set[str]:
        """Every label id any version of the run used: fresh ids must never reuse a deleted label's id."""
        return {r[0] for r in self._rows("SELECT DISTINCT label_id FROM labels WHERE run_id = ?", [run_id])}

    def fresh_label_ids(self, run_id: str, n: int, prefix: str = "L") -> list[str]:
        """n label ids the run never used (see schema.next_label_ids): new labels from edits and updates."""
        return next_label_ids(self.all_label_ids(run_id), n, prefix)

    def save_label_origins(self, run_id: str, origins: Mapping[str, str]) -> None:
        """Where label ids came from ('seed': given with --labels, 'discovered'); an id's first origin stays."""
        if origins:
            with self.transaction() as con:
                con.executemany("INSERT OR IGNORE INTO label_origins VALUES (?, ?, ?)",
                                [(run_id, lid, origin) for lid, origin in origins.items()])

    def label_origins(self, run_id: str) -> dict[str, str]:
        """Origin by label id ('seed' or 'discovered'); empty for a run without given labels."""
        return dict(self._rows("SELECT label_id, origin FROM label_origins WHERE run_id = ?", [run_id]))

    def cluster_members(self, run_id: str) -> dict[str, str]:
        """Label id by doc id of the taxonomy-sample documents each cluster-seeded label was built from."""
        return dict(self._rows("SELECT doc_id, label_id FROM label_members WHERE run_id = ?", [run_id]))

    def add_cluster_members(self, run_id: str, members: Mapping[str, str]) -> None:
        """Members for labels added later (`tnt update`), beside the existing ones (doc id -> label id)."""
        if members:
            with self.transaction() as con:
                con.executemany("INSERT OR REPLACE INTO label_members VALUES (?, ?, ?)",
                                [(run_id, d, lid) for d, lid in members.items()])
