"""Fixtures for the review tests: a finished scripted run (built once, copied per test) and a live server."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import SCRIPTED_JOB
from workflow.config import JobConfig
from workflow.ingest import read_corpus
from workflow.review.server import ReviewApp, make_server, url_of
from workflow.runner import execute
from workflow.store import Store

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "banking77_sample.jsonl"

XSS = "<script>alert(1)</script> my card got charged twice <b>bold?</b>"


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A DuckDB file with a finished run on scripted/keywords plus one hostile document labeled with top confidence."""
    base = tmp_path_factory.mktemp("review-run")
    corpus = base / "corpus.jsonl"
    corpus.write_text("".join(SAMPLE.read_text().splitlines(keepends=True)[:120]))
    db = base / "tnt.duckdb"
    with Store(db) as store:
        store.insert_documents("c", read_corpus(str(corpus)).records)
        store.insert_documents("c", [("000-xss", XSS, {})])
        run_id = store.create_run("c", SCRIPTED_JOB["use_case"], JobConfig(**SCRIPTED_JOB).model_dump())
        assert execute(store, run_id, show_progress=False).status == "done"
        version, labels = store.taxonomy(run_id)
        store.save_assignment(run_id, "000-xss", "llm", labels[0].label_id, taxonomy_version=version,
                              rationale="<img src=x onerror=alert(2)>", confidence=0.95)
    return db, run_id


@pytest.fixture(scope="session")
def paused_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A DuckDB file with a scripted run paused for review (`--review`): a taxonomy and its cluster members, no
    labels yet; the hostile document is made a member of the first label."""
    base = tmp_path_factory.mktemp("paused-run")
    corpus = base / "corpus.jsonl"
    corpus.write_text("".join(SAMPLE.read_text().splitlines(keepends=True)[:120]))
    db = base / "tnt.duckdb"
    with Store(db) as store:
        store.insert_documents("c", read_corpus(str(corpus)).records)
        store.insert_documents("c", [("000-xss", XSS, {})])
        config = JobConfig(**{**SCRIPTED_JOB, "auto_approve": False}).model_dump()
        run_id = store.create_run("c", SCRIPTED_JOB["use_case"], config)
        assert execute(store, run_id, show_progress=False).status == "paused"
        store.add_cluster_members(run_id, {"000-xss": store.taxonomy(run_id)[1][0].label_id})
    return db, run_id


@pytest.fixture
def paused_db(paused_run: tuple[Path, str], tmp_path: Path) -> tuple[str, str]:
    """A private copy of the paused run's database."""
    from workflow.graph.build import checkpoint_path

    src, run_id = paused_run
    dst = tmp_path / "paused.duckdb"
    shutil.copy(src, dst)
    shutil.copy(checkpoint_path(str(src)), checkpoint_path(str(dst)))  # where the graph paused: resume goes on
    return str(dst), run_id


@pytest.fixture
def paused_server(paused_db: tuple[str, str]) -> Iterator[tuple[str, ReviewApp]]:
    """A live review server on the paused run."""
    yield from _serve(*paused_db)


@pytest.fixture
def run_db(finished_run: tuple[Path, str], tmp_path: Path) -> tuple[str, str]:
    """A private copy of the finished run's database (tests edit it)."""
    src, run_id = finished_run
    dst = tmp_path / "tnt.duckdb"
    shutil.copy(src, dst)
    return str(dst), run_id


@pytest.fixture
def server(run_db: tuple[str, str]) -> Iterator[tuple[str, ReviewApp]]:
    """A live review server on a free localhost port, as (url, app)."""
    yield from _serve(*run_db)


def _serve(db: str, run_id: str) -> Iterator[tuple[str, ReviewApp]]:
    app = ReviewApp(db, run_id, "tester")
    srv = make_server(app)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield url_of(srv), app
    finally:
        srv.shutdown()
        srv.server_close()
