"""Helpers shared by the reliability suite: a loopback responder that answers like scripted/keywords, the CLI
in-process and as a subprocess, and database checks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from workflow.testing.scripted import PROMPT_OF_SCHEMA, keywords
from workflow.testing.testserver import requested_schema

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SCRIPTED_CLI = HERE / "scripted_cli.py"
USE_CASE = "What do customers ask the bank's support bot for?"



def prompt_name_of(request: dict) -> str:
    """The prompt a chat request comes from: its schema's name (in any structured-output mode), else its first
    words."""
    name, _ = requested_schema(request)
    if name in PROMPT_OF_SCHEMA:
        return PROMPT_OF_SCHEMA[name]
    system = next((m["content"] for m in request["messages"] if m["role"] == "system"), "")
    for key, prompt in (("come from document clusters", "merge_labels"), ("write short summaries", "summarize"),
                        ("assign documents", "label"),
                        ("design label", "propose"), ("refine label", "update"), ("review label", "review"),
                        ("name groups of similar", "name_cluster")):
        if key in system:
            return prompt
    raise ValueError(f"cannot tell which prompt this request comes from: {system[:80]!r}")


def respond(request: dict) -> str:
    """A valid answer to any tnt request, as scripted/keywords would give it."""
    _, schema = requested_schema(request)
    return keywords(prompt_name_of(request), request["messages"], schema or {})


_runner = CliRunner()


def tnt(*args: str):
    """`tnt ...` in this process (so it can reach a loopback server started by the test)."""
    from workflow.cli import app

    return _runner.invoke(app, [str(a) for a in args], catch_exceptions=True)


def tnt_subprocess(*args: str, env: dict | None = None, cwd: str | Path | None = None,
                   timeout: float = 240) -> subprocess.CompletedProcess:
    """`tnt ...` as its own process, with the test's scripted models registered (see scripted_cli.py)."""
    return subprocess.run(
        [sys.executable, str(SCRIPTED_CLI), *map(str, args)], capture_output=True, text=True, timeout=timeout,
        env={**os.environ, **(env or {})}, cwd=cwd,
    )


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def no_traceback(output: str) -> None:
    assert "Traceback" not in output, output


@pytest.fixture
def rows():
    from tests.conftest import sample_rows

    return sample_rows(120)
