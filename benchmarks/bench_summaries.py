"""Do summaries pay for the embedded model (issue 24)? Clusters and keyword names made from the embedded model's
summaries vs from the documents themselves (cut to the embedder's 256-token window), on short and long documents.

* short: BANKING77 queries as they are (most are shorter than a summary, so they are their own summary: no call);
* long: BANKING77 queries of one intent concatenated, PER_DOC at a time (about 100 words a document).

For each set: the embedded model (local/smollm2) summarises every document through the product's own step
(`summarize_docs`, the summarize prompt and its validation), timed; then k-means at k = number of intents on the
embeddings of the texts and of the summaries (ARI and NMI against the gold intents), and keyword names
(`workflow.keywords.represent`) on the same clusters from the texts and from the summaries (mean cosine between
the name and the Hungarian-matched gold intent name, as bench_names.py).

    python benchmarks/bench_summaries.py                 # 10 intents: 100 short, 30 long documents
    python benchmarks/bench_summaries.py --sets long --intents 8 --long 2
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

DATA = Path(os.environ.get("TNT_BANKING77_DIR", "/work/shared/datasets/banking77"))
PER_DOC = 8  # queries of one intent per long document
USE_CASE = "What do customers ask the bank's support bot for?"


def corpora(n_intents: int, short: int, long: int, seed: int) -> dict[str, tuple[list[str], list[str]]]:
    rows = [json.loads(line) for line in (DATA / "train.jsonl").open() if line.strip()]
    rng = np.random.default_rng(seed)
    intents = sorted(rng.choice(sorted({r["label"] for r in rows}), size=n_intents, replace=False))
    by = {i: [r["text"] for r in rows if r["label"] == i] for i in intents}
    out_short, out_long = ([], []), ([], [])
    for i in intents:
        texts = [by[i][j] for j in rng.permutation(len(by[i]))]
        for t in texts[:short]:
            out_short[0].append(t), out_short[1].append(i)
        for d in range(long):
            chunk = texts[short + d * PER_DOC: short + (d + 1) * PER_DOC]
            out_long[0].append(" ".join(chunk)), out_long[1].append(i)
    return {"short": out_short, "long": out_long}


def summarise(texts: list[str], db: str, timeout_s: float) -> tuple[list[str], float, int]:
    """The embedded model's summaries of texts (own text where it is no longer than a summary), seconds, calls."""
    from workflow.config import JobConfig
    from workflow.graph.context import RunContext
    from workflow.graph.nodes.summarize import summarize_docs
    from workflow.llm.gateway import Gateway
    from workflow.store import Store

    with Store(db) as store:
        store.insert_documents("bench", [(f"d{i}", t, {}) for i, t in enumerate(texts)])
        config = JobConfig(use_case=USE_CASE, model="local/smollm2", taxonomy_sample=len(texts), summaries="always",
                           timeout_s=timeout_s)
        run_id = store.create_run("bench", USE_CASE, config.model_dump())
        gateway = Gateway(store, run_id, show_progress=False, timeout_s=timeout_s)
        ctx = RunContext(run_id, "bench", config, store, gateway, False)
        ids = [f"d{i}" for i in range(len(texts))]
        t0 = time.perf_counter()
        got = summarize_docs(ctx, ids)
        seconds = time.perf_counter() - t0
        calls = sum(r["ok"] + r["rejected"] + r["failed"] for r in store.call_stats(run_id))
    return [got.get(d) or t for d, t in zip(ids, texts)], seconds, calls


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--intents", type=int, default=10)
    ap.add_argument("--short", type=int, default=10, help="short documents per intent")
    ap.add_argument("--long", type=int, default=3, help="long documents per intent")
    ap.add_argument("--sets", default="short,long")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds a summary call may take (shared cores)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import bench_names as names_bench
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    from workflow import clustering
    from workflow.classify.embed import get_embedder
    from workflow.keywords import represent

    embedder = get_embedder("minilm-int8")
    tmp = tempfile.mkdtemp(prefix="bench_summaries_")
    for kind, (texts, gold) in corpora(args.intents, args.short, args.long, args.seed).items():
        if kind not in args.sets.split(","):
            continue
        sums, seconds, calls = summarise(texts, os.path.join(tmp, f"{kind}.duckdb"), args.timeout)
        k = len(set(gold))
        mean_words = round(float(np.mean([len(t.split()) for t in texts])), 1)
        row: dict = {"set": kind, "docs": len(texts), "mean_words": mean_words,
                     "summary_calls": calls, "summarise_s": round(seconds, 1),
                     "s_per_call": round(seconds / calls, 2) if calls else None}
        X_text = clustering.unit(embedder.embed(texts))
        assign_text, _ = clustering.kmeans(X_text, k, args.seed)
        for source, shown in (("text", texts), ("summary", sums)):
            X = X_text if source == "text" else clustering.unit(embedder.embed(shown))
            assign, _ = clustering.kmeans(X, k, args.seed)
            reps = represent(shown, X, assign_text, embedder.embed, seed=args.seed)  # the same clusters, named
            m = names_bench.measure({c: r.name for c, r in reps.items()}, assign_text, shown, gold, embedder.embed)
            row[source] = {"ari": round(adjusted_rand_score(gold, assign), 3),
                           "nmi": round(normalized_mutual_info_score(gold, assign), 3),
                           "name_gold_cos": m["name_gold_cos"], "names": m["examples"][:4]}
        print(json.dumps(row, indent=1), flush=True)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
