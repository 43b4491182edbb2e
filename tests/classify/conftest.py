"""One finished scripted run with a stored model, shared by the serving tests (training it takes seconds)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import SCRIPTED_JOB, sample_rows
from workflow.config import JobConfig
from workflow.ingest import read_corpus
from workflow.runner import execute
from workflow.store import Store


@dataclass(frozen=True)
class Trained:
    db: str
    corpus_file: Path
    corpus: str
    run_id: str
    model_id: str
    texts: list[str]
    ids: list[str]


@pytest.fixture(scope="package")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    root = tmp_path_factory.mktemp("serving")
    rows = sample_rows(120)
    corpus_file = root / "corpus.jsonl"
    corpus_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    db = str(root / "tnt.duckdb")
    with Store(db) as store:
        store.insert_documents("c", read_corpus(str(corpus_file)).records)
        run_id = store.create_run("c", SCRIPTED_JOB["use_case"], JobConfig(**SCRIPTED_JOB).model_dump())
        outcome = execute(store, run_id, show_progress=False)
        assert outcome.status == "done", outcome.message
        model_id = store.model(run_id=run_id)["model_id"]
    return Trained(db, corpus_file, "c", run_id, model_id, [r["text"] for r in rows], [str(r["id"]) for r in rows])


@pytest.fixture(scope="package")
def artifact(trained: Trained, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from workflow.classify.export import classifier_from_bytes, write_artifact

    out = tmp_path_factory.mktemp("artifact") / "model"
    with Store(trained.db) as store:
        row = store.model(trained.model_id)
        _, labels = store.taxonomy(trained.run_id, row["taxonomy_version"])
        write_artifact(out, classifier_from_bytes(row["artifact"]),
                       taxonomy=[{"label_id": lb.label_id, "name": lb.name, "description": lb.description}
                                 for lb in labels],
                       embedding_model=row["embedding_model"], metrics=row["metrics"], run_id=trained.run_id,
                       model_id=row["model_id"])
    return out
