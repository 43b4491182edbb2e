"""Active vs random label selection: classifier accuracy against the number of labelled documents (issue 11).

BANKING77 (77 intents). The teacher is gold, or gold with 20% uniform noise (bench_noise.corrupt, fixed per document
as a cached LLM answer is). Random: the first b documents of a seeded shuffle of the pool (what `tnt run` labels).
Active: the same first documents as the seed set, then rounds chosen by the product's own function
(workflow.classify.active.round_sizes / select_batch, what `--label-selection active` runs), until b labels are spent;
the candidate pool is the first POOL_FACTOR x b documents of the shuffle, as in the product.
Accuracy is on the clean test split. Every point is scored with the fast logistic regression the active rounds use
(workflow.classify.active.fast_classifier: seconds); the points named by --product-points are also trained with the
product's own training function (workflow.classify.fit.train_single_label, default JobConfig: CV for C, calibration,
noise-aware weights, held-out and conformal splits; an active point also self-trains on its candidate pool, as
`tnt run --label-selection active` does), which takes a minute or more each on a 2-core machine.

    python benchmarks/bench_active.py                                   # gold + noisy, 250..2000, pool = train split
    python benchmarks/bench_active.py --teachers gold --budgets 250,1000 --product-points ""   # quick look
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_noise import cached_embeddings, corrupt, load_split  # noqa: E402

from workflow.classify.active import fast_classifier, round_sizes, select_batch  # noqa: E402
from workflow.graph.selection import POOL_FACTOR  # noqa: E402


def active_sample(X: np.ndarray, teacher: np.ndarray, order: np.ndarray, budget: int, seed: int,
                  texts: list[str]) -> np.ndarray:
    """Pool indices `--label-selection active` labels with this budget: seed set, then the product's rounds."""
    sizes = round_sizes(budget)
    chosen = list(order[: sizes[0]])
    for r, k in enumerate(sizes[1:], start=1):
        pool_idx = candidates(order, chosen, texts, budget)
        lab = np.array(chosen)
        rows = select_batch(X[lab], teacher[lab], X[pool_idx], k, seed=seed + r)
        chosen += pool_idx[rows].tolist()
    return np.array(chosen)


def candidates(order: np.ndarray, chosen: list[int] | np.ndarray, texts: list[str], budget: int) -> np.ndarray:
    """The product's candidate pool (graph/selection.candidate_pool): the first POOL_FACTOR x budget documents
    of the shuffle, unlabelled, one per distinct text. An active run's classifier also self-trains on it."""
    taken, seen = {int(i) for i in chosen}, {texts[i] for i in chosen}
    pool = []
    for i in order[: POOL_FACTOR * budget]:
        if int(i) not in taken and texts[i] not in seen:
            seen.add(texts[i])
            pool.append(int(i))
    return np.array(pool, dtype=np.int64)


def accuracy(pred: list[str] | np.ndarray, truth: list[str]) -> float:
    return float(np.mean([str(p) == t for p, t in zip(pred, truth)]))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budgets", default="250,500,1000,2000", help="labelled documents")
    ap.add_argument("--pool", type=int, default=20000, help="at most this many train documents form the pool")
    ap.add_argument("--teachers", default="gold,noisy")
    ap.add_argument("--noise", type=float, default=0.2, help="uniform noise of the noisy teacher")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--product-points", default="random:2000,active:1000",
                    help="method:budget points also trained with the product's train_single_label ('' for none)")
    ap.add_argument("--json", help="also write the rows to this JSON file")
    ap.add_argument("--plot", default=str(Path(__file__).with_name("bench_active.png")), help="PNG path ('' for none)")
    ap.add_argument("--replot", help="comma-separated --json files of earlier runs: print their table and plot them "
                    "together (e.g. the gold and noisy teachers run separately)")
    args = ap.parse_args(argv)
    if args.replot:
        merged: dict[tuple, dict] = {}  # the same point from two runs is the same selection: keep any product figure
        for r in (r for f in args.replot.split(",") for r in json.loads(Path(f).read_text())):
            key = (r["teacher"], r["method"], r["labels"])
            if key in merged and r["product_accuracy"] is None:
                continue
            merged[key] = r if key not in merged else {**merged[key], "product_accuracy": r["product_accuracy"]}
        rows = sorted(merged.values(), key=lambda r: (r["teacher"] != "gold", r["labels"], r["method"] != "random"))
        budgets = sorted({r["labels"] for r in rows})
        print("| teacher | selection | labels | teacher accuracy | fast model accuracy | product training accuracy |")
        print("|---|---|---:|---:|---:|---:|")
        for r in rows:
            prod = "-" if r["product_accuracy"] is None else f"{r['product_accuracy']:.3f}"
            print(f"| {r['teacher']} | {r['method']} | {r['labels']} | {r['teacher_accuracy']:.3f} | "
                  f"{r['fast_accuracy']:.3f} | {prod} |")
        if args.plot:
            plot(rows, budgets, args.plot)
            print(f"plot: {args.plot}")
        return

    from workflow.classify.fit import train_single_label
    from workflow.config import JobConfig

    config = JobConfig(use_case="bench_active: BANKING77 intents")  # every training setting at its default
    tr_texts, tr_labels = load_split("train")
    te_texts, te_labels = load_split("test")
    X_all, Xt = cached_embeddings(tr_texts, "train"), cached_embeddings(te_texts, "test")
    rng = np.random.default_rng(args.seed)
    keep = np.sort(rng.choice(len(tr_texts), size=min(args.pool, len(tr_texts)), replace=False))
    X, texts = X_all[keep], [tr_texts[i] for i in keep]
    gold = np.array([tr_labels[i] for i in keep])
    order = np.random.default_rng(args.seed + 7).permutation(len(keep))  # the run's seeded shuffle
    budgets = [int(b) for b in args.budgets.split(",")]
    product = {(m, int(b)) for m, b in (p.split(":") for p in args.product_points.split(",") if p)}
    print(f"BANKING77: pool {len(keep)} train documents, test {len(te_texts)} (clean); 77 classes; minilm-int8; "
          f"rounds per budget {[round_sizes(b) for b in budgets]}; fast model: workflow.classify.active."
          f"fast_classifier; product points {sorted(product)} via train_single_label(JobConfig())", flush=True)

    rows = []
    print(f"{'teacher':>7} {'method':>6} {'labels':>6} {'teacher acc':>11} {'fast acc':>8} {'product acc':>11} "
          f"{'secs':>6}", flush=True)
    for teacher_name in args.teachers.split(","):
        if teacher_name == "gold":
            teacher = gold
        else:
            codes = {c: i for i, c in enumerate(sorted(set(gold)))}
            names = np.array(sorted(codes))
            noisy, _ = corrupt(np.array([codes[g] for g in gold]), X, args.noise, "uniform",
                               np.random.default_rng(args.seed + 1))
            teacher = names[noisy]
        for b in budgets:
            for method in ("random", "active"):
                started = time.perf_counter()
                idx = order[:b] if method == "random" else active_sample(X, teacher, order, b, args.seed, texts)
                assert len(idx) == len(set(idx.tolist())) == b, "the budget is spent exactly, no document twice"
                fast = accuracy(fast_classifier(X[idx], teacher[idx], args.seed).predict(Xt), te_labels)
                prod = None
                if (method, b) in product:
                    # as `tnt run` does: with active selection, the seed round's random rows score model selection
                    # and its classifier self-trains on the candidate pool it embedded (a random run has none)
                    drawn = np.arange(b) < round_sizes(b)[0] if method == "active" else None
                    pool = X[candidates(order, idx, texts, b)] if method == "active" else None
                    clf, _ = train_single_label(X[idx], [str(v) for v in teacher[idx]], config, representative=drawn,
                                                unlabeled=pool)
                    prod = accuracy(clf.predict(Xt)[0], te_labels)
                row = {"teacher": teacher_name, "method": method, "labels": b,
                       "teacher_accuracy": float(np.mean(teacher[idx] == gold[idx])), "fast_accuracy": fast,
                       "product_accuracy": prod, "seconds": time.perf_counter() - started}
                rows.append(row)
                print(f"{teacher_name:>7} {method:>6} {b:>6} {row['teacher_accuracy']:11.3f} {fast:8.3f} "
                      f"{'-' if prod is None else f'{prod:.3f}':>11} {row['seconds']:6.1f}", flush=True)

    print("\nsummary (ratios within this run):")
    for teacher_name in args.teachers.split(","):
        mine = [r for r in rows if r["teacher"] == teacher_name]
        top = max(budgets)
        ref = next(r for r in mine if r["method"] == "random" and r["labels"] == top)
        reach = [r["labels"] for r in mine if r["method"] == "active" and r["fast_accuracy"] >= ref["fast_accuracy"]]
        print(f"  {teacher_name}: random with {top} labels {ref['fast_accuracy']:.3f} (fast model); active reaches it "
              f"with {min(reach) if reach else f'more than {top}'} labels")
        for b in budgets:
            a = next(r for r in mine if r["method"] == "active" and r["labels"] == b)["fast_accuracy"]
            ra = next(r for r in mine if r["method"] == "random" and r["labels"] == b)["fast_accuracy"]
            print(f"    {b:>5} labels: active/random {a / ra:.3f} ({a:.3f} vs {ra:.3f})")
        prod = [r for r in mine if r["product_accuracy"] is not None]
        if prod:
            print("    product training: " + ", ".join(f"{r['method']}@{r['labels']} {r['product_accuracy']:.3f}"
                                                      for r in prod))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    if args.plot:
        plot(rows, budgets, args.plot)
        print(f"plot: {args.plot}")


def plot(rows: list[dict], budgets: list[int], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for teacher, style, mark in (("gold", "-", "*"), ("noisy", "--", "D")):
        for method, colour in (("random", "tab:grey"), ("active", "tab:blue")):
            pts = sorted((r["labels"], r["fast_accuracy"]) for r in rows
                         if r["teacher"] == teacher and r["method"] == method)
            if pts:
                ax.plot(*zip(*pts), style, marker="o", color=colour, label=f"{method}, {teacher} teacher (fast model)")
            prod = [(r["labels"], r["product_accuracy"]) for r in rows if r["teacher"] == teacher
                    and r["method"] == method and r["product_accuracy"] is not None]
            if prod:
                ax.scatter(*zip(*prod), marker=mark, s=140 if mark == "*" else 60, color=colour, edgecolor="black",
                           zorder=3,
                           label=f"{method}, {teacher} teacher (product training)")
    ax.set_xscale("log")
    ax.minorticks_off()
    ax.set_xticks(budgets, [str(b) for b in budgets])
    ax.set_xlabel("documents labelled by the teacher")
    ax.set_ylabel("accuracy on the clean BANKING77 test split")
    ax.set_title("Active vs random label selection (77 intents)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
