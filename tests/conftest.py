"""Shared fixtures: a small real corpus (BANKING77 sample) and a fresh database per test."""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import workflow.testing  # noqa: E402,F401  registers the scripted/ test models with the transport registry

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "banking77_sample.jsonl"


def sample_rows(n: int) -> list[dict]:
    rows = []
    with SAMPLE.open() as fh:
        for line in fh:
            rows.append(json.loads(line))
            if len(rows) == n:
                break
    return rows


def signal_mid_query(con=None, sig: int = signal.SIGINT) -> None:
    """Send this process a real signal while DuckDB runs a query that would take minutes, on ``con`` (a store's
    connection) or a fresh one. Most Ctrl-Cs and SIGTERMs land in DuckDB: every step writes to it. DuckDB answers
    with its own RuntimeError and drops the signal's exception. On one thread: with more, DuckDB's main thread may
    wait on its workers without looking for signals, and see this one only when the query ends. The second's delay:
    on a loaded machine the signal must not arrive before the query starts."""
    import duckdb

    con = con if con is not None else duckdb.connect()
    threads = con.execute("SELECT current_setting('threads')").fetchone()[0]
    con.execute("SET threads = 1")
    try:
        threading.Timer(1.0, os.kill, (os.getpid(), sig)).start()
        con.execute("SELECT count(*) FROM range(10000000000) t(a) WHERE a % 7 = 3").fetchall()
    finally:
        con.execute(f"SET threads = {int(threads)}")


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """120 real banking queries as JSONL."""
    path = tmp_path / "corpus.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in sample_rows(120)))
    return path


@pytest.fixture
def db(tmp_path: Path) -> str:
    return str(tmp_path / "tnt.duckdb")


SCRIPTED_JOB = dict(
    use_case="What do customers ask the bank's support bot for?", model="scripted/keywords",
    batch_size=30, taxonomy_sample=90, label_sample=60, max_labels=6, concurrency=4,
)


@pytest.fixture
def new_run():
    """A function that ingests a corpus file as corpus 'c' and creates a run of SCRIPTED_JOB (with overrides)."""
    from workflow.config import JobConfig
    from workflow.ingest import read_corpus

    def make(store, corpus: Path, **overrides) -> str:
        store.insert_documents("c", read_corpus(str(corpus)).records)
        config = JobConfig(**{**SCRIPTED_JOB, **overrides})
        return store.create_run("c", config.use_case, config.model_dump())

    return make
