"""Do given labels (`--labels`) catch their documents, and does proposal leave them alone?

BANKING77: 10 gold intents (drawn with --seed) are given as labels, named from their intent ids
("card_arrival" -> "Card arrival") with one example each, taken from train rows outside the corpus. Each mode runs the
whole job (`workflow.runner.start`, what `tnt run` does) on the same documents:

* seeded: the 10 given labels plus proposal up to --max-labels;
* fixed: the 10 given labels and Other only (zero-shot);
* baseline: the same job without given labels, each seed intent scored against the one label that matches it best
  (highest F1): what a user would get by finding "their" label in an unseeded taxonomy.

For each seed intent, over every document of the corpus: precision and recall against gold of the documents the
classifier puts under that label (micro over the 10 intents, and the macro mean). Whether discovered labels repeat the
given ones: the largest name-embedding cosine between a discovered and a given name (same MiniLM), and the largest
share of one seed intent among the documents of any discovered label (a discovered label that is mostly one seed
intent repeats it), beside the share of seed-intent documents that land under discovered labels.

    python benchmarks/bench_seeded.py                            # scripted names, nearest teacher, 2000 docs
    python benchmarks/bench_seeded.py --model local/smollm2      # the embedded model names the clusters
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

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

DATA = Path(os.environ.get("TNT_BANKING77_DIR", "/work/shared/datasets/banking77"))
USE_CASE = "What do customers ask the bank's support bot for?"


def corpus_and_seeds(n: int, n_seeds: int, seed: int) -> tuple[list[dict], list[str], list[dict]]:
    rows = [json.loads(line) for line in (DATA / "train.jsonl").read_text().splitlines() if line.strip()]
    random.Random(seed).shuffle(rows)
    docs = [{"id": str(r["id"]), "text": r["text"], "label": r["label"]} for r in rows[:n]]
    intents = random.Random(seed).sample(sorted({r["label"] for r in docs}), n_seeds)
    example = {}
    for r in rows[n:]:  # one example per seed intent, never a document of the corpus
        example.setdefault(r["label"], r["text"])
    seeds = [{"name": i.replace("_", " ").capitalize(), "examples": [example[i]]} for i in intents]
    return docs, intents, seeds


def seed_scores(pred: dict[str, str], gold: dict[str, str], intents: list[str], label_of: dict[str, str]) -> dict:
    """Precision/recall per seed intent of the documents predicted under its label (label_of: intent -> label id)."""
    per = {}
    tp_all = pred_all = gold_all = 0
    for intent in intents:
        lid = label_of.get(intent)
        under = {d for d, p in pred.items() if p == lid} if lid else set()
        own = {d for d, g in gold.items() if g == intent}
        tp = len(under & own)
        per[intent] = {"precision": tp / len(under) if under else 0.0, "recall": tp / len(own) if own else 0.0,
                       "n_pred": len(under), "n_gold": len(own)}
        tp_all, pred_all, gold_all = tp_all + tp, pred_all + len(under), gold_all + len(own)
    return {"per": per, "micro_p": tp_all / pred_all if pred_all else 0.0, "micro_r": tp_all / gold_all,
            "macro_p": float(np.mean([v["precision"] for v in per.values()])),
            "macro_r": float(np.mean([v["recall"] for v in per.values()]))}


def best_match(pred: dict[str, str], gold: dict[str, str], intents: list[str]) -> dict[str, str]:
    """For the baseline: each seed intent's label with the highest F1 against it."""
    out = {}
    labels = set(pred.values()) - {"other"}
    for intent in intents:
        own = {d for d, g in gold.items() if g == intent}
        f1 = {}
        for lid in labels:
            under = {d for d, p in pred.items() if p == lid}
            tp = len(under & own)
            f1[lid] = 2 * tp / (len(under) + len(own)) if tp else 0.0
        out[intent] = max(f1, key=f1.get) if f1 else None
    return out


def duplication(store, run_id: str, pred: dict[str, str], gold: dict[str, str], intents: list[str]) -> dict:
    from workflow.classify.embed import get_embedder
    from workflow.clustering import unit

    _, labels = store.taxonomy(run_id)
    origins = store.label_origins(run_id)
    given = [lb for lb in labels if origins.get(lb.label_id) == "seed"]
    found = [lb for lb in labels if origins.get(lb.label_id) == "discovered"]
    if not found:
        return {"discovered": 0}
    emb = get_embedder("minilm-int8")
    cos = unit(emb.embed([lb.name for lb in found])) @ unit(emb.embed([lb.name for lb in given])).T
    i, j = np.unravel_index(int(np.argmax(cos)), cos.shape)
    shares = []
    for lb in found:
        under = [gold[d] for d, p in pred.items() if p == lb.label_id]
        if under:
            top = max(intents, key=under.count)
            shares.append((under.count(top) / len(under), lb.name, top, len(under)))
    seed_docs = [d for d, g in gold.items() if g in intents]
    found_ids = {lb.label_id for lb in found}
    return {"discovered": len(found), "max_name_cos": float(cos[i, j]),
            "closest_names": (found[i].name, given[j].name),
            "max_seed_share": max(shares) if shares else None,
            "seed_docs_under_discovered": sum(pred.get(d) in found_ids for d in seed_docs) / len(seed_docs)}


def run_mode(mode: str, docs: list[dict], seeds: list[dict], intents: list[str], args, workdir: Path) -> dict:
    from workflow.config import JobConfig
    from workflow.runner import start
    from workflow.store import Store

    path = workdir / "corpus.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in docs))
    gold = {r["id"]: r["label"] for r in docs}
    options = dict(use_case=USE_CASE, model=args.model, taxonomy_sample=args.taxonomy_sample,
                   label_sample=args.label_sample, seed=args.seed, teacher=args.teacher)
    if mode == "seeded":
        options |= dict(seed_labels=seeds, max_labels=args.max_labels)
    elif mode == "fixed":
        options |= dict(seed_labels=seeds, label_mode="fixed", max_labels=len(seeds))
    else:
        options |= dict(max_labels=args.max_labels)
    with Store(str(workdir / f"{mode}.duckdb")) as store:
        started = time.perf_counter()
        outcome = start(store, str(path), JobConfig(**options), show_progress=False)
        wall = time.perf_counter() - started
        run_id = outcome.run_id
        model = store.latest_model(run_id)
        pred = store.predictions(model["model_id"]) if model else {}
        label_of = (best_match(pred, gold, intents) if mode == "baseline"
                    else {i: f"L{k + 1}" for k, i in enumerate(intents)})
        row = {"mode": mode, "status": outcome.status, "wall_s": wall, "labels": len(store.taxonomy(run_id)[1]),
               "other_share": sum(p == "other" for p in pred.values()) / len(pred) if pred else None,
               "calls": sum(r["calls"] for r in store.call_stats(run_id)),
               **seed_scores(pred, gold, intents, label_of)}
        if mode == "seeded":
            row["dup"] = duplication(store, run_id, pred, gold, intents)
            row["notes"] = [v["notes"] for v in store.taxonomy_versions(run_id)]
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="scripted/keywords")
    p.add_argument("--teacher", default="nearest", help="nearest: the embedded model's default teacher")
    p.add_argument("--modes", default="seeded,fixed,baseline")
    p.add_argument("--n", type=int, default=2000, help="documents drawn from BANKING77 train")
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--taxonomy-sample", type=int, default=600)
    p.add_argument("--label-sample", type=int, default=1000)
    p.add_argument("--max-labels", type=int, default=30, help="seeded and baseline runs")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", type=Path)
    p.add_argument("--combine", type=Path, nargs="+", help="print the tables of earlier --json files (modes run as "
                   "separate processes) instead of running")
    args = p.parse_args()

    docs, intents, seeds = corpus_and_seeds(args.n, args.seeds, args.seed)
    print(f"{args.n} BANKING77 documents, {len({r['label'] for r in docs})} intents; given: "
          + ", ".join(s["name"] for s in seeds), flush=True)
    results = []
    if args.combine:
        results = [r for path in args.combine for r in json.loads(path.read_text())]
    with tempfile.TemporaryDirectory() as tmp:
        for mode in [] if args.combine else args.modes.split(","):
            print(f"running {mode} ...", flush=True)
            results.append(run_mode(mode, docs, seeds, intents, args, Path(tmp)))
            r = results[-1]
            print(f"  {r['status']} in {r['wall_s']:.0f}s: {r['labels']} labels, micro P {r['micro_p']:.3f} "
                  f"R {r['micro_r']:.3f}", flush=True)
            if args.json:  # after each mode: a long run that is cut short keeps what it measured
                args.json.write_text(json.dumps(results, indent=1, default=str))

    print(f"\nmodel {args.model}, teacher {args.teacher}, taxonomy sample {args.taxonomy_sample}, label sample "
          f"{args.label_sample}, max labels {args.max_labels} (fixed: {args.seeds}); scored on all {args.n} documents "
          f"by the classifier's predictions\n")
    print("| mode | labels | precision (micro) | recall (micro) | precision (macro) | recall (macro) | Other share "
          "| calls | wall s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        other = "-" if r["other_share"] is None else f"{r['other_share']:.1%}"
        print(f"| {r['mode']} | {r['labels']} | {r['micro_p']:.3f} | {r['micro_r']:.3f} | {r['macro_p']:.3f} | "
              f"{r['macro_r']:.3f} | {other} | {r['calls']} | {r['wall_s']:.0f} |")
    print("\n| intent | docs | " + " | ".join(f"{r['mode']} P / R" for r in results) + " |")
    print("|---|---:|" + "---:|" * len(results))
    for intent in intents:
        cells = [f"{r['per'][intent]['precision']:.2f} / {r['per'][intent]['recall']:.2f}" for r in results]
        print(f"| {intent} | {results[0]['per'][intent]['n_gold']} | " + " | ".join(cells) + " |")
    for r in results:
        if "dup" in r:
            d = r["dup"]
            print(f"\nseeded: {d['discovered']} discovered labels; largest name cosine to a given label "
                  f"{d.get('max_name_cos', 0):.3f} {d.get('closest_names')}; largest share of one seed intent in a "
                  f"discovered label {d.get('max_seed_share')}; seed-intent documents under discovered labels "
                  f"{d.get('seed_docs_under_discovered', 0):.1%}")
            print("notes: " + " | ".join(n or "" for n in r["notes"]))


if __name__ == "__main__":
    main()
