"""`tnt serve` under a bounded loopback load test, against the same classifier called in-process (not a test).

    python benchmarks/bench_serve.py [--requests 2000] [--concurrency 8,32] [--embedder minilm-int8]

1. Trains a logistic-regression classifier on --train-n BANKING77 train texts embedded with --embedder and
   exports it (the product's path: train_classifier -> write_artifact).
2. Baseline, in this process: ``model.records(embedder.embed(texts))`` on --requests test texts in one call (the
   cheapest way to classify them: one batched, length-bucketed embedding pass).
3. Starts `tnt serve --model ARTIFACT --port 0` as a subprocess and, for each concurrency C, sends the same texts as
   --requests one-text POST /classify requests from C keep-alive connections (a raw asyncio HTTP/1.1 client: a
   few tens of microseconds per request, so the client does not hide the server's cost). Prints texts/s and its
   ratio to the baseline (measured again right before each level), the server's CPU-seconds per text against the
   baseline's (less sensitive to other work on a shared machine), p50/p99 latency, errors (non-200 or dropped),
   texts per embedding call (micro-batching), and how many labels differ from the in-process ones. The server and
   the client share this machine's cores, as on any loopback test.

`run(...)` returns the figures as a dict, for benchmarks/bench_scale.py.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DATA = Path("/work/shared/datasets/banking77")


def load_split(name: str, n: int | None, seed: int = 0) -> tuple[list[str], list[str]]:
    rows = [json.loads(line) for line in (DATA / f"{name}.jsonl").open() if line.strip()]
    random.Random(seed).shuffle(rows)
    rows = rows[:n] if n else rows
    return [r["text"] for r in rows], [r["label"] for r in rows]


def make_artifact(embedder_name: str, train_n: int, out: Path) -> Path:
    from workflow.classify.embed import get_embedder
    from workflow.classify.export import write_artifact
    from workflow.classify.train import train_classifier

    texts, labels = load_split("train", train_n)
    X = get_embedder(embedder_name).embed(texts)
    clf, metrics = train_classifier(X, labels)
    tax = [{"label_id": lab, "name": lab.replace("_", " "), "description": ""} for lab in sorted(set(labels))]
    return write_artifact(out, clf, taxonomy=tax, embedding_model=embedder_name, metrics=metrics, run_id="bench",
                          model_id="bench-serve", overwrite=True)


def start_server(artifact: Path) -> tuple[subprocess.Popen, str, int]:
    env = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True")
    proc = subprocess.Popen([sys.executable, "-m", "workflow.cli", "serve", "--model", str(artifact), "--port", "0"],
                            stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    deadline = time.monotonic() + 180
    assert proc.stderr is not None
    while time.monotonic() < deadline and proc.poll() is None:
        line = proc.stderr.readline()
        match = re.search(r"http://([\d.]+):(\d+)", line)
        if match:
            return proc, match.group(1), int(match.group(2))
    proc.kill()
    raise RuntimeError(f"tnt serve did not start: {proc.stderr.read()[-2000:]}")


async def load(host: str, port: int, bodies: list[bytes], concurrency: int) -> dict:
    """Every body POSTed once from `concurrency` keep-alive connections; latencies, errors and answers."""
    todo = iter(range(len(bodies)))
    latencies: list[float] = []
    answers: dict[int, list] = {}
    errors = 0

    async def worker() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(host, port)
        try:
            for i in todo:
                body = bodies[i]
                request = (b"POST /classify HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                           b"Content-Length: %d\r\n\r\n" % len(body)) + body
                started = time.perf_counter()
                try:
                    writer.write(request)
                    await writer.drain()
                    head = await reader.readuntil(b"\r\n\r\n")
                    length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))  # type: ignore[union-attr]
                    payload = await reader.readexactly(length)
                except (OSError, asyncio.IncompleteReadError, AttributeError):
                    errors += 1
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
                    continue
                latencies.append(time.perf_counter() - started)
                if head.split(b" ", 2)[1] != b"200":
                    errors += 1
                else:
                    answers[i] = json.loads(payload)
                if b"connection: close" in head.lower():
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    seconds = time.perf_counter() - started
    lat = np.array(latencies) * 1000
    return {"seconds": seconds, "errors": errors, "answers": answers,
            "p50_ms": float(np.percentile(lat, 50)) if len(lat) else float("nan"),
            "p99_ms": float(np.percentile(lat, 99)) if len(lat) else float("nan")}


def in_process(model: Any, emb: Any, texts: list[str]) -> tuple[float, float]:
    """(texts/s, process CPU-seconds) of classifying ``texts`` in one in-process call."""
    wall, cpu = time.perf_counter(), time.process_time()
    model.records(emb.embed(texts))
    return len(texts) / (time.perf_counter() - wall), time.process_time() - cpu


def cpu_seconds(pid: int) -> float:
    """user + system CPU seconds of process ``pid`` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def health(host: str, port: int) -> dict:
    import urllib.request

    with urllib.request.urlopen(f"http://{host}:{port}/health", timeout=30) as resp:
        return json.loads(resp.read())


def run(requests: int = 2000, concurrency: tuple[int, ...] = (8, 32), embedder: str = "minilm-int8",
        train_n: int = 1000, verbose: bool = True) -> dict:
    from workflow.classify.embed import get_embedder
    from workflow.classify.loader import from_artifact

    say = print if verbose else (lambda *a, **k: None)
    texts = (load_split("test", None)[0] * (requests // 3080 + 1))[:requests]
    with tempfile.TemporaryDirectory(prefix="tnt-bench-serve-") as tmp:
        artifact = make_artifact(embedder, train_n, Path(tmp) / "artifact")
        model, emb = from_artifact(artifact), get_embedder(embedder)
        model.records(emb.embed(texts[:64]))  # warm-up
        expected = model.records(emb.embed(texts))
        base, _ = in_process(model, emb, texts)
        say(f"{len(texts)} BANKING77 test texts, one per request; embedder {embedder}; {os.cpu_count()} cores")
        say(f"in-process baseline: model.records(embedder.embed(texts)), one call: {base:,.0f} texts/s")
        proc, host, port = start_server(artifact)
        out: dict = {"embedder": embedder, "requests": len(texts), "in_process_texts_per_s": base, "runs": []}
        try:
            bodies = [json.dumps({"texts": [t]}).encode() for t in texts]
            asyncio.run(load(host, port, bodies[:32], 4))  # warm-up: connections, first batches
            for c in concurrency:
                # The baseline again right before each load level: on a shared machine the available CPU drifts.
                base, base_cpu = in_process(model, emb, texts)
                cpu0, calls0 = cpu_seconds(proc.pid), health(host, port)["embedding_calls"]
                r = asyncio.run(load(host, port, bodies, c))
                cpu, calls = cpu_seconds(proc.pid) - cpu0, health(host, port)["embedding_calls"] - calls0
                rate = len(texts) / r["seconds"]
                differ = sum(1 for i, a in r["answers"].items() if a[0]["label_id"] != expected[i]["label_id"])
                row = {"concurrency": c, "texts_per_s": rate, "in_process_texts_per_s": base, "ratio": rate / base,
                       "cpu_ratio": base_cpu / cpu, "p50_ms": r["p50_ms"], "p99_ms": r["p99_ms"],
                       "errors": r["errors"], "labels_differ": differ, "texts_per_call": len(texts) / max(calls, 1)}
                out["runs"].append(row)
                say(f"tnt serve, {c:>3} concurrent: {rate:6,.0f} texts/s = {rate / base:4.2f}x in-process "
                    f"({base:,.0f}/s just before); server CPU-s per text {cpu / len(texts) * 1000:.1f} ms = "
                    f"{base_cpu / cpu:4.2f}x in-process efficiency; p50 {r['p50_ms']:6.1f} ms, p99 "
                    f"{r['p99_ms']:6.1f} ms; errors {r['errors']}; {len(texts) / max(calls, 1):.1f} texts per "
                    f"embedding call; labels differing from in-process {differ}")
        finally:
            proc.terminate()
            proc.wait(30)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--concurrency", default="8,32")
    ap.add_argument("--embedder", default="minilm-int8")
    ap.add_argument("--train-n", type=int, default=1000)
    args = ap.parse_args()
    run(args.requests, tuple(int(c) for c in args.concurrency.split(",")), args.embedder, args.train_n)


if __name__ == "__main__":
    main()
