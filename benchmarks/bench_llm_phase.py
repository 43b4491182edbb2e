"""How close does a real tnt run get to a provider's limits in its LLM phase, and what does the cache save?

A loopback OpenAI-compatible server (workflow.testing.testserver) answers with valid JSON for each prompt (the logic
of the scripted `keywords` model), with a fixed latency, a token-bucket rate limit and random 500s. A real tnt run
(`model="openai/bench"`, the server as api_base, litellm transport, concurrency 8) summarises N documents, builds
a taxonomy and labels N other documents. Its LLM-phase wall time is compared with

  (a) the ideal bound set by the server: max(calls / rate_limit, latency * calls / concurrency), and
  (b) a naive sequential loop (openai client, one call at a time, simple retries) replaying the very same
      requests against the same server in the same process.

Then the same job runs again and must make zero requests (every answer comes from the llm_calls cache).

    python benchmarks/bench_llm_phase.py                              # N=200, 0.2 s, 20 req/s, 5% errors
    python benchmarks/bench_llm_phase.py --n 50 --latency 0.1 --naive-limit 40
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

DATA = Path(__file__).resolve().parents[1] / "data" / "banking77_sample.jsonl"
# response_format name (the gateway sends the response model's class name) -> prompt name
SCHEMA_TO_PROMPT = {"Summary": "summarize", "ProposedTaxonomy": "propose", "UpdatedTaxonomy": "update",
                    "ReviewedTaxonomy": "review", "Assignment": "label"}


def responder(body: dict) -> str:
    """Valid answers per prompt, inferred from the request's json_schema name; the messages are the prompt."""
    from workflow.testing.scripted import keywords

    fmt = (body.get("response_format") or {}).get("json_schema") or {}
    prompt = SCHEMA_TO_PROMPT.get(fmt.get("name", ""))
    if prompt is None:
        raise ValueError(f"unknown response format {fmt.get('name')!r}")
    return keywords(prompt, body["messages"], fmt.get("schema") or {})


def phase_spans(store, run_id: str) -> dict[str, float]:
    """Wall seconds per step: first call's start to last call's end (llm_calls logs end time and latency)."""
    spans = {}
    for r in store.query(
        "SELECT step, min(epoch(created_at) - latency_s) AS t0, max(epoch(created_at)) AS t1 FROM llm_calls "
        "WHERE run_id = ? GROUP BY step", [run_id]
    ):
        spans[r["step"]] = r["t1"] - r["t0"]
    return spans


def naive_replay(base_url: str, bodies: list[dict]) -> tuple[float, int]:
    """Send the requests one after another with the openai client; retry 429 (after Retry-After) and 5xx."""
    import openai

    client = openai.OpenAI(base_url=base_url, api_key="not-needed", max_retries=0)
    started, attempts = time.perf_counter(), 0
    for body in bodies:
        kwargs = {k: v for k, v in body.items() if k in ("model", "messages", "temperature", "max_tokens", "seed",
                                                         "response_format")}
        for attempt in range(8):
            attempts += 1
            try:
                client.chat.completions.create(**kwargs)
                break
            except openai.RateLimitError as exc:
                time.sleep(float(exc.response.headers.get("retry-after", 1)))
            except (openai.InternalServerError, openai.APIConnectionError):
                time.sleep(0.5 * 2 ** attempt)
    return time.perf_counter() - started, attempts


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200, help="documents summarised, and other documents labeled")
    ap.add_argument("--latency", type=float, default=0.2, help="server seconds per request")
    ap.add_argument("--rate", type=float, default=20.0, help="server rate limit, requests/s")
    ap.add_argument("--error-rate", type=float, default=0.05, help="share of requests answered with a 500")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--naive-limit", type=int, default=None, help="replay only this many requests naively "
                    "(its time is scaled to all of them)")
    args = ap.parse_args(argv)

    from workflow.config import JobConfig
    from workflow.ingest import read_corpus
    from workflow.runner import execute
    from workflow.store import Store
    from workflow.testing.testserver import OpenAITestServer

    tmp = Path(tempfile.mkdtemp(prefix="tnt-bench-llm-"))
    rows = [json.loads(line) for line in DATA.open()][: 2 * args.n]
    corpus = tmp / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(r) + "\n" for r in rows))
    srv = OpenAITestServer(responder, latency_s=args.latency, rate_limit_per_s=args.rate,
                           error_rate=args.error_rate, seed=0).start()
    config = JobConfig(use_case="What do customers ask the bank's support bot for?", model="openai/bench",
                       api_base=srv.base_url, taxonomy_sample=args.n, label_sample=args.n, batch_size=args.n,
                       max_labels=10, concurrency=args.concurrency, max_attempts=8)
    print(f"server: latency {args.latency}s, rate limit {args.rate:g} req/s, error rate {args.error_rate:.0%}; "
          f"N={args.n} summaries + {args.n} labels, concurrency {args.concurrency}; machine: {os.cpu_count()} CPUs",
          flush=True)
    try:
        with Store(tmp / "tnt.duckdb") as store:
            store.insert_documents("bench", read_corpus(str(corpus)).records)
            run_id = store.create_run("bench", config.use_case, config.model_dump())
            started = time.perf_counter()
            outcome = execute(store, run_id, show_progress=False)
            run_wall = time.perf_counter() - started
            assert outcome.status == "done", outcome.message
            spans = phase_spans(store, run_id)
            calls = store.query("SELECT count(*) AS n, sum(attempts) AS attempts FROM llm_calls WHERE run_id = ?",
                                [run_id])[0]
            stats = srv.stats()
            bodies = [b for b in srv.requests]
            # one body per distinct call (retries of a call resend the same messages)
            ok_bodies = list({json.dumps([b.get("messages"), b.get("response_format")], sort_keys=True): b
                              for b in bodies}.values())

            llm_wall = sum(spans.values())
            n_calls = calls["n"]
            bound = max(n_calls / args.rate, args.latency * n_calls / args.concurrency)
            print(f"tnt run: {n_calls} calls ({calls['attempts']} attempts, server saw {stats['total_requests']} "
                  f"requests, status {stats['status_counts']}, max in flight {stats['max_concurrency_observed']})")
            print(f"  LLM phase wall {llm_wall:.1f}s (summarize {spans.get('summarize', 0):.1f}s, taxonomy "
                  f"{spans.get('taxonomy', 0):.1f}s, label {spans.get('label', 0):.1f}s); whole run incl. "
                  f"embedding+training {run_wall:.1f}s")
            print(f"  ideal bound max({n_calls}/{args.rate:g}, {args.latency}*{n_calls}/{args.concurrency}) = "
                  f"{bound:.1f}s -> tnt / bound = {llm_wall / bound:.2f}x")

            replay = ok_bodies[: args.naive_limit] if args.naive_limit else ok_bodies
            srv.reset_counters()
            naive_s, naive_attempts = naive_replay(srv.base_url, replay)
            naive_full = naive_s * len(ok_bodies) / len(replay)
            print(f"naive sequential loop: {len(replay)} requests in {naive_s:.1f}s ({naive_attempts} attempts)"
                  + (f", scaled to {len(ok_bodies)}: {naive_full:.1f}s" if len(replay) < len(ok_bodies) else "")
                  + f" -> naive / tnt = {naive_full / llm_wall:.2f}x")

            srv.reset_counters()
            again = store.create_run("bench", config.use_case, config.model_dump())
            started = time.perf_counter()
            out2 = execute(store, again, show_progress=False)
            rerun_wall = time.perf_counter() - started
            print(f"re-run of the same job: {srv.stats()['total_requests']} requests, {out2.usage.calls} calls, "
                  f"{out2.usage.cached} answers from the cache, status {out2.status}, {rerun_wall:.1f}s "
                  f"(first run {run_wall:.1f}s -> {run_wall / rerun_wall:.1f}x faster)")
    finally:
        srv.stop()


if __name__ == "__main__":
    main()
