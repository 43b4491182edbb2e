"""How fast does `tnt run` stop against a server that will never answer, and what did retrying cost before?

Runs `tnt run` (in-process, 20 documents, --max-attempts 4, --concurrency 8) against the loopback server's
strict profiles (workflow/testing/testserver.py):

- `llamacpp-python` with `--structured-output json_schema`: the issue's case (llama-cpp-python's server answers a
  500 naming response_format to every request);
- `reject-all` with `auto`: a server that refuses json_schema, json_object and tools, then fails every plain
  prompt with the same 500.

Each is measured twice in the same run: as shipped, and with the baseline behaviour (the identical-error tracker
off, and for llamacpp-python also mode refusals treated as ordinary 500s: every document burns its attempts with
backoff, as before issue 10).

    python benchmarks/bench_refuse_all.py
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from typer.testing import CliRunner  # noqa: E402

from tests.conftest import sample_rows  # noqa: E402
from workflow.cli import app  # noqa: E402
from workflow.llm import failfast, structured  # noqa: E402
from workflow.testing.testserver import OpenAITestServer  # noqa: E402

USE_CASE = "What do customers ask the bank's support bot for?"


def one(profile: str, mode: str, baseline: tuple[str, ...] = ()) -> dict:
    tmp = Path(tempfile.mkdtemp())
    corpus = tmp / "c.jsonl"
    import json

    corpus.write_text("".join(json.dumps(r) + "\n" for r in sample_rows(20)))
    patches = {"refusals": mock.patch.object(structured, "is_refusal", lambda *a: False),
               "tracker": mock.patch.object(failfast.FailureTracker.__init__, "__defaults__", (10**9,))}
    patches = [patches[k] for k in baseline]
    with OpenAITestServer(profile=profile) as srv:
        for p in patches:
            p.start()
        try:
            started = time.perf_counter()
            res = CliRunner().invoke(app, ["run", str(corpus), "-u", USE_CASE, "--db", str(tmp / "t.duckdb"),
                                           "--model", "openai/test-model", "--api-base", srv.base_url,
                                           "--structured-output", mode, "--max-attempts", "4", "--taxonomy-sample",
                                           "20", "--label-sample", "20", "-q"])
            elapsed = time.perf_counter() - started
        finally:
            for p in patches:
                p.stop()
        requests = srv.total_requests
    last = [line for line in res.output.splitlines() if line.startswith("failed:")]
    return {"seconds": elapsed, "requests": requests, "exit": res.exit_code, "line": last[-1] if last else ""}


def main() -> None:
    rows = []
    # baseline: what is off. llamacpp-python: both (its refusal was a plain 500 before); reject-all: the tracker
    # (with refusal detection off its first 400 would be fatal, as before, and nothing steps down to compare)
    for profile, mode, off in (("llamacpp-python", "json_schema", ("refusals", "tracker")),
                               ("reject-all", "auto", ("tracker",))):
        base = one(profile, mode, baseline=off)
        new = one(profile, mode)
        rows.append((profile, mode, base, new))
    print(f"{'server profile':16} {'mode':12} {'baseline s':>10} {'req':>4} {'fail-fast s':>11} {'req':>4} "
          f"{'speed-up':>8}")
    for profile, mode, base, new in rows:
        print(f"{profile:16} {mode:12} {base['seconds']:10.1f} {base['requests']:4d} {new['seconds']:11.1f} "
              f"{new['requests']:4d} {base['seconds'] / new['seconds']:7.1f}x")
    for profile, mode, _, new in rows:
        print(f"\n{profile} / {mode} (exit {new['exit']}):\n  {new['line']}")


if __name__ == "__main__":
    main()
