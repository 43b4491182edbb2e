"""The embedded default's whole job on 1,000 long documents (issue 24): where the time goes, with and without
summaries.

Issue 24 saw the embedded model spend 46 of a job's 50 minutes summarising on a corpus of 1,000 long documents. The
corpus here is built the same way as bench_summaries' long set: each document is 8 BANKING77 training queries of one
intent joined (about 90 words), so each has one topic and a gold intent. Each mode runs `tnt run` in a subprocess on
its own database with the README's defaults but for the mode's --summaries, and reports wall seconds, the model
calls and seconds per step (from llm_calls), peak memory, and the share of labels' documents whose gold intent is
the label's majority (purity). The ratio is each mode's wall time against `auto` (the default), same machine, same
run of this script.

    python benchmarks/bench_long_run.py                       # --summaries auto (the default) only
    python benchmarks/bench_long_run.py --modes auto,always   # and the paper's path, summarising (slow)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DATA = Path(os.environ.get("TNT_BANKING77_DIR", "/work/shared/datasets/banking77"))
PER_DOC = 8
USE_CASE = "What do customers ask the bank's support bot for?"


def long_corpus(n: int, seed: int) -> list[dict]:
    """n documents of PER_DOC queries of one intent each, intents spread evenly, with the intent as gold."""
    rows = [json.loads(line) for line in (DATA / "train.jsonl").open() if line.strip()]
    rng = np.random.default_rng(seed)
    by: dict[str, list[str]] = {}
    for r in rows:
        by.setdefault(r["label"], []).append(r["text"])
    pools = {i: [ts[j] for j in rng.permutation(len(ts))] for i, ts in sorted(by.items())}
    out: list[dict] = []
    while len(out) < n:
        for intent, pool in pools.items():
            if len(out) == n or len(pool) < PER_DOC:
                continue
            chunk, pools[intent] = pool[:PER_DOC], pool[PER_DOC:]
            out.append({"id": f"long-{len(out)}", "text": " ".join(chunk), "intent": intent})
        if all(len(p) < PER_DOC for p in pools.values()):
            break
    return out


def run_mode(corpus: Path, mode: str, workdir: Path, extra: list[str]) -> dict:
    db = workdir / f"{mode}.duckdb"
    cmd = [sys.executable, "-m", "workflow.cli", "run", str(corpus), "--use-case", USE_CASE, "--db", str(db),
           "--summaries", mode, "-q", *extra]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    steps = {s: {"calls": int(n), "seconds": round(float(sec or 0), 1)} for s, n, sec in con.execute(
        "SELECT step, count(*), sum(latency_s) FROM llm_calls GROUP BY step ORDER BY step").fetchall()}
    run_id, status = con.execute("SELECT run_id, status FROM runs ORDER BY created_at DESC LIMIT 1").fetchone()
    gold = {json.loads(line)["text"]: json.loads(line)["intent"] for line in corpus.open()}
    members = con.execute("SELECT p.label_id, d.text FROM predictions p JOIN documents d USING (doc_id) "
                          "WHERE p.run_id = ?", [run_id]).fetchall()
    names = dict(con.execute("SELECT label_id, name FROM labels WHERE run_id = ? AND version = "
                             "(SELECT max(version) FROM labels WHERE run_id = ?)", [run_id, run_id]).fetchall())
    by: dict[str, list[str]] = {}
    for lid, text in members:
        by.setdefault(lid, []).append(gold.get(text, "?"))
    purity = sum(Counter(g).most_common(1)[0][1] for g in by.values()) / max(len(members), 1)
    return {"mode": mode, "exit": res.returncode, "status": status, "wall_s": round(wall, 1),
            "peak_rss_mb_max_so_far": round(peak_mb), "steps": steps, "labels": sorted(names.values()),
            "purity": round(purity, 3), "stderr_tail": res.stderr[-400:] if res.returncode else ""}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--modes", default="auto")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", help="directory to keep the corpus and databases in")
    ap.add_argument("extra", nargs="*", help="more `tnt run` options, after --")
    args = ap.parse_args()
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    workdir = Path(args.keep or tempfile.mkdtemp(prefix="bench_long_"))
    workdir.mkdir(parents=True, exist_ok=True)
    docs = long_corpus(args.n, args.seed)
    corpus = workdir / "long.jsonl"
    corpus.write_text("".join(json.dumps(d) + "\n" for d in docs))
    words = np.mean([len(d["text"].split()) for d in docs])
    print(json.dumps({"documents": len(docs), "words_per_doc": round(float(words), 1),
                      "intents": len({d["intent"] for d in docs}), "dir": str(workdir)}), flush=True)
    results = []
    for mode in args.modes.split(","):
        row = run_mode(corpus, mode, workdir, args.extra)
        results.append(row)
        print(json.dumps(row, indent=1), flush=True)
    base = next((r for r in results if r["mode"] == "auto"), results[0])
    for r in results:
        print(f"{r['mode']}: wall {r['wall_s']} s = {r['wall_s'] / max(base['wall_s'], 1e-9):.2f}x {base['mode']}; "
              f"summarize {r['steps'].get('summarize', {}).get('seconds', 0)} s of model time; status {r['status']}")


if __name__ == "__main__":
    main()
