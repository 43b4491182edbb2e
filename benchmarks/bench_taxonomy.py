"""Which taxonomy proposal works: the paper's minibatch proposal vs cluster-seeded proposal (shortlist on/off),
with a real model, scored against BANKING77's gold intents; k-means on the same embeddings is the baseline.

For each configuration a fresh database runs the whole job (`workflow.runner.execute`, what `tnt run` does) on
the same documents, then reports: labels, coverage (LLM labels not Other), NMI / ARI / harmonic purity /
Hungarian accuracy of the LLM labels (on the labeled sample) and of the classifier's predictions (on every
document), NMI of the embedding-nearest label of the labeled sample and how often the LLM chose it, model calls \
(failed ones too) and wall time. In the same run, k-means on the same MiniLM embeddings at
the same k as each configuration's final taxonomy (and at --max-labels) gives the baseline a taxonomy should beat.

    python benchmarks/bench_taxonomy.py                                  # embedded model, 1000 docs, 4 configs
    python benchmarks/bench_taxonomy.py --configs clusters --n 300 --label-sample 60     # quick look
    python benchmarks/bench_taxonomy.py --model scripted/keywords        # the deterministic test model
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

DATA = Path(os.environ.get("TNT_BANKING77_DIR", "/work/shared/datasets/banking77"))
USE_CASE = "What do customers ask the bank's support bot for?"
CONFIGS = {  # teacher auto: the embedded model's runs learn from nearest labels, any other model's from the LLM's
    "minibatch": {"proposal": "minibatch", "shortlist": 0},
    "clusters": {"proposal": "clusters", "shortlist": 5},
    "clusters-llm-teacher": {"proposal": "clusters", "shortlist": 5, "teacher": "llm"},
    "clusters-llm-teacher-noshortlist": {"proposal": "clusters", "shortlist": 0, "teacher": "llm"},
}


def corpus(n: int, seed: int) -> list[dict]:
    rows = [json.loads(line) for line in (DATA / "train.jsonl").read_text().splitlines() if line.strip()]
    random.Random(seed).shuffle(rows)
    return [{"id": str(r["id"]), "text": r["text"], "label": r["label"]} for r in rows[:n]]


def scores(pred: dict[str, str], gold: dict[str, str]) -> dict:
    from workflow.evaluate.metrics import against_gold

    m = against_gold(pred, gold)
    return {"nmi": m.get("nmi"), "ari": m.get("ari"), "hp": m.get("harmonic_purity"),
            "hungarian": (m.get("hungarian") or {}).get("accuracy"), "n": m.get("n")}


def run_config(name: str, rows: list[dict], args: argparse.Namespace, workdir: Path) -> dict:
    from workflow.config import JobConfig
    from workflow.runner import start
    from workflow.store import OTHER_ID, Store

    path = workdir / "corpus.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    gold = {r["id"]: r["label"] for r in rows}
    config = JobConfig(use_case=USE_CASE, model=args.model, taxonomy_sample=args.taxonomy_sample,
                       label_sample=args.label_sample, batch_size=args.batch_size, max_labels=args.max_labels,
                       **CONFIGS[name])
    with Store(str(workdir / f"{name}.duckdb")) as store:
        started = time.perf_counter()
        outcome = start(store, str(path), config, show_progress=False)
        wall = time.perf_counter() - started
        run_id = outcome.run_id
        _, labels = store.taxonomy(run_id)
        llm = store.assignments(run_id)
        model = store.latest_model(run_id)
        predicted = store.predictions(model["model_id"]) if model else {}
        stats = store.call_stats(run_id)
        nearest = {r["doc_id"]: r["nearest_id"] for r in store.query(
            "SELECT doc_id, nearest_id FROM assignments WHERE run_id = ? AND source = 'llm' AND nearest_id IS NOT NULL",
            [run_id])}
        row = {
            "config": name, "status": outcome.status, "labels": len(labels),
            "names": [lb.name for lb in labels],
            "coverage": sum(v != OTHER_ID for v in llm.values()) / len(llm) if llm else None,
            "llm": scores(llm, gold), "nearest": scores(nearest, gold) if nearest else None,
            "agree": sum(llm.get(d) == v for d, v in nearest.items()) / len(nearest) if nearest else None,
            "classifier": scores(predicted, gold) if predicted else None,
            "calls": sum(r["calls"] for r in stats), "failed": sum(r["failed"] for r in stats),
            "wall_s": wall,
        }
    return row


def kmeans_baseline(rows: list[dict], ks: set[int], seed: int) -> dict[int, dict]:
    from workflow.classify.embed import get_embedder
    from workflow.clustering import kmeans

    X = get_embedder("minilm-int8").embed([r["text"] for r in rows])
    gold = {r["id"]: r["label"] for r in rows}
    out = {}
    for k in sorted(ks):
        assign, _ = kmeans(X, k, seed)
        out[k] = scores({r["id"]: str(a) for r, a in zip(rows, assign)}, gold)
    return out


def fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="local/smollm2")
    p.add_argument("--configs", default=",".join(CONFIGS))
    p.add_argument("--n", type=int, default=1000, help="documents drawn from BANKING77 train")
    p.add_argument("--taxonomy-sample", type=int, default=400)
    p.add_argument("--label-sample", type=int, default=150)
    p.add_argument("--batch-size", type=int, default=200, help="minibatch proposal's summaries per call")
    p.add_argument("--max-labels", type=int, default=10)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", type=Path)
    args = p.parse_args()

    rows = corpus(args.n, args.seed)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.configs.split(","):
            print(f"running {name} with {args.model} ...", flush=True)
            results.append(run_config(name, rows, args, Path(tmp)))
            r = results[-1]
            print(f"  {r['status']}: {r['labels']} labels in {r['wall_s']:.0f}s, {r['calls']} calls: {r['names']}",
                  flush=True)
    base = kmeans_baseline(rows, {r["labels"] for r in results if r["labels"] > 1} | {args.max_labels}, args.seed)

    print(f"\n{args.n} BANKING77 documents ({len({r['label'] for r in rows})} gold intents), model {args.model}, "
          f"taxonomy sample {args.taxonomy_sample}, label sample {args.label_sample}, max labels {args.max_labels}\n")
    print("| config | labels | coverage | LLM NMI | LLM ARI | LLM HP | LLM Hungarian | nearest NMI | LLM = nearest "
          "| clf NMI | clf ARI | clf HP | clf Hungarian | clf NMI / k-means NMI | calls (failed) | wall s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        c, km = r["classifier"] or {}, base.get(r["labels"], {})
        ratio = c["nmi"] / km["nmi"] if c.get("nmi") is not None and km.get("nmi") else None
        print(f"| {r['config']} | {r['labels']} | {fmt(r['coverage'])} | {fmt(r['llm']['nmi'])} "
              f"| {fmt(r['llm']['ari'])} "
              f"| {fmt(r['llm']['hp'])} | {fmt(r['llm']['hungarian'])} | {fmt((r['nearest'] or {}).get('nmi'))} "
              f"| {fmt(r['agree'])} | {fmt(c.get('nmi'))} | {fmt(c.get('ari'))} "
              f"| {fmt(c.get('hp'))} | {fmt(c.get('hungarian'))} | {fmt(ratio)} | {r['calls']} ({r['failed']}) "
              f"| {r['wall_s']:.0f} |")
    for k, m in sorted(base.items()):
        print(f"| k-means k={k} (no LLM) | {k} | 1.000 | - | - | - | - | - | - | {fmt(m['nmi'])} | {fmt(m['ari'])} "
              f"| {fmt(m['hp'])} | {fmt(m['hungarian'])} | 1.000 | 0 | - |")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "results": results,
                                         "kmeans": base}, indent=1))


if __name__ == "__main__":
    main()
