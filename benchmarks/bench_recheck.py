"""`--recheck 0.1` on a controlled teacher: how many of the teacher's mistakes does the top 10% find, and what does
asking again gain the classifier? Baseline and recheck are measured in the same run, on the same labels.

The teacher is BANKING77 gold corrupted at a known rate (benchmarks/bench_noise.py's `corrupt`: uniform or
confusable). Everything after that is the product path: the documents, the 77 intents as the taxonomy and the
teacher's labels go into a Store as a run's 'llm' assignments; the baseline classifier is `fit_on_run` on them (what
`tnt run` trains without `--recheck`); then the graph's recheck node runs (noise estimate, the top share, the
prompt in prompts/recheck.md, the two-label schema, the gateway, answers stored as source 'recheck') and
`fit_on_run` trains again on the rechecked labels. Both classifiers are scored on the clean test split.

The rechecker is a scripted model behind the gateway. It reads the document out of the recheck prompt and knows its
gold intent: when gold is one of the two offered labels it answers gold with probability `--rechecker-accuracy`
(else the other one); when gold is neither it picks one of the two by a coin. Draws are seeded by the text, so the
run is deterministic. It stands for a model that is right `--rechecker-accuracy` of the time on a binary question
it can answer, and no better than chance when both choices are wrong.

    python benchmarks/bench_recheck.py                                    # 77 classes, 20% noise, both kinds
    python benchmarks/bench_recheck.py --kinds uniform --rechecker-accuracy 0.7
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_noise import EMBEDDER, cached_embeddings, corrupt, load_split  # noqa: E402


def _draw(text: str, salt: str) -> float:
    return int(hashlib.sha256(f"{salt}:{text}".encode()).hexdigest()[:12], 16) / 16 ** 12


def gold_rechecker(gold: dict[str, str], accuracy: float):
    """A scripted model for the recheck prompt that knows each document's gold label id (see the module doc)."""
    from workflow.testing import scripted

    def answer(prompt_name: str, messages: list[dict], schema: dict) -> str:
        if prompt_name != "recheck":
            raise ValueError(f"the gold rechecker only answers rechecks, not {prompt_name}")
        user = next(m["content"] for m in messages if m["role"] == "user")
        text = scripted._between(user, "document")
        offered = scripted.offered_choices(user)
        ids = [i for i, _ in offered]
        truth = gold[text.strip()]
        if truth in ids:
            other = next(i for i in ids if i != truth)
            pick = truth if _draw(text, "acc") < accuracy else other
        else:
            pick = ids[0] if _draw(text, "coin") < 0.5 else ids[1]
        name = dict(offered)[pick]
        return json.dumps({"label": {"name": name, "id": pick}, "rationale": "Gold rechecker.", "confidence": "high"})

    return answer


def run_one(kind: str, args: argparse.Namespace, data: dict) -> dict:
    from workflow.classify.embed import get_embedder
    from workflow.classify.fit import fit_on_run
    from workflow.config import JobConfig
    from workflow.graph.context import RunContext
    from workflow.graph.nodes.recheck import recheck
    from workflow.llm.gateway import Gateway
    from workflow.store import Label, Store, text_hash
    from workflow.testing import scripted

    texts, y, intents, X = data["texts"], data["y"], data["intents"], data["X"]
    noisy, flipped = corrupt(y, X, args.noise, kind, np.random.default_rng(args.seed + 1))
    ids = [f"L{i + 1}" for i in range(len(intents))]
    gold_by_text = {t.strip(): ids[c] for t, c in zip(texts, y)}
    scripted.register_script("gold_rechecker", gold_rechecker(gold_by_text, args.rechecker_accuracy))
    config = JobConfig(use_case="What do customers ask the bank's support bot for?", model="scripted/gold_rechecker",
                       teacher="llm", recheck=args.recheck, seed=args.seed, concurrency=4)
    with tempfile.TemporaryDirectory() as tmp, Store(str(Path(tmp) / "bench.duckdb")) as store:
        doc_ids = [f"d{i:05d}" for i in range(len(texts))]
        store.insert_documents("b77", [(d, t, {}) for d, t in zip(doc_ids, texts)])
        store.save_embeddings(get_embedder(EMBEDDER).name, [text_hash(t) for t in texts], X)
        run_id = store.create_run("b77", config.use_case, config.model_dump())
        names = [n.replace("_", " ") for n in intents]
        version = store.save_taxonomy(run_id, [Label(i, n, f"Customers asking about {n}.") for i, n in zip(ids, names)],
                                      "review")
        with store.transaction() as con:
            con.executemany(
                "INSERT INTO assignments BY NAME SELECT ? AS run_id, ? AS doc_id, 'llm' AS source, ? AS label_id, "
                "? AS taxonomy_version, 'corrupted gold' AS rationale, 'ok' AS status",
                [(run_id, d, ids[c], version) for d, c in zip(doc_ids, noisy)])

        def score(fitted) -> float:
            pred, _ = fitted.clf.predict(data["Xt"])
            return float(np.mean([p == ids[c] for p, c in zip(pred, data["yt"])]))

        started = time.perf_counter()
        base = score(fit_on_run(store, run_id, "b77", config, progress=False))
        t_base = time.perf_counter() - started
        gateway = Gateway(store, run_id, concurrency=4, show_progress=False, seed=args.seed)
        ctx = RunContext(run_id, "b77", config, store, gateway, show_progress=False)
        started = time.perf_counter()
        recheck(ctx, {"approved_version": version})
        t_recheck = time.perf_counter() - started
        calls = gateway.usage.calls
        rows = store.rechecks(run_id)
        after = store.training_labels(run_id)
        rechecked = score(fit_on_run(store, run_id, "b77", config, progress=False))
        again = Gateway(store, run_id, concurrency=4, show_progress=False, seed=args.seed)  # a re-entered step
        store._exec("DELETE FROM assignments WHERE run_id = ? AND source = 'recheck'", [run_id])
        recheck(RunContext(run_id, "b77", config, store, again, show_progress=False), {"approved_version": version})

    index = {d: i for i, d in enumerate(doc_ids)}
    picked = np.array([index[d] for d in rows], dtype=int)
    wrong = flipped[picked]
    flips = [(index[d], r["label_id"]) for d, r in rows.items()
             if r["status"] == "ok" and r["label_id"] == r["offered_ids"][1]]
    good_flips = sum(ids[y[i]] == lab for i, lab in flips)
    teacher_after = float(np.mean([after[d] == ids[c] for d, c in zip(doc_ids, y)]))
    return {
        "kind": kind, "noise": args.noise, "n_train": len(texts), "n_test": len(data["yt"]),
        "rechecker_accuracy": args.rechecker_accuracy, "recheck": args.recheck, "rechecked": len(rows),
        "model_calls": calls, "calls_when_reentered": again.usage.calls, "cached_when_reentered": again.usage.cached,
        "wrong_labels_in_rechecked": float(wrong.mean()) if len(wrong) else None,
        "wrong_labels_found": float(wrong.sum() / max(flipped.sum(), 1)),
        "found_max": float(min(1.0, len(rows) / max(flipped.sum(), 1))),
        "flipped": len(flips), "flipped_to_gold": int(good_flips), "kept": len(rows) - len(flips),
        "teacher_accuracy_before": float(np.mean(noisy == y)), "teacher_accuracy_after": teacher_after,
        "accuracy_baseline": base, "accuracy_recheck": rechecked, "gain_points": 100 * (rechecked - base),
        "ratio": rechecked / base, "seconds_baseline_fit": t_base, "seconds_recheck_step": t_recheck,
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kinds", default="uniform,confusable")
    ap.add_argument("--noise", type=float, default=0.2)
    ap.add_argument("--recheck", type=float, default=0.1, help="the --recheck share")
    ap.add_argument("--rechecker-accuracy", type=float, default=0.9)
    ap.add_argument("--train-n", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="also write the rows to this JSON file")
    args = ap.parse_args(argv)
    from threadpoolctl import threadpool_limits

    tr_texts, tr_labels = load_split("train")
    te_texts, te_labels = load_split("test")
    X_all, Xt = cached_embeddings(tr_texts, "train"), cached_embeddings(te_texts, "test")
    intents = sorted(set(tr_labels))
    code = {c: i for i, c in enumerate(intents)}
    rng = np.random.default_rng(args.seed)
    idx = np.sort(rng.choice(len(tr_texts), size=min(args.train_n, len(tr_texts)), replace=False))
    seen: set[str] = set()
    idx = np.array([i for i in idx if not (tr_texts[i] in seen or seen.add(tr_texts[i]))])  # one row per text
    data = {"texts": [tr_texts[i] for i in idx], "y": np.array([code[tr_labels[i]] for i in idx]),
            "intents": intents, "X": X_all[idx], "Xt": Xt, "yt": [code[v] for v in te_labels]}
    print(f"BANKING77 {len(intents)} intents: train {len(idx)} (teacher: gold with {args.noise:.0%} corrupted), "
          f"clean test {len(te_texts)}; --recheck {args.recheck}; rechecker right {args.rechecker_accuracy:.0%} of "
          f"the time when gold is offered, a coin otherwise", flush=True)
    rows = []
    with threadpool_limits(1):
        for kind in args.kinds.split(","):
            row = run_one(kind, args, data)
            rows.append(row)
            print(json.dumps(row), flush=True)
            print(f"{kind}: rechecked {row['rechecked']} ({row['model_calls']} calls; re-entered: "
                  f"{row['calls_when_reentered']} calls, {row['cached_when_reentered']} cached); "
                  f"{row['wrong_labels_in_rechecked']:.1%} of them wrong (teacher: {args.noise:.0%}); found "
                  f"{row['wrong_labels_found']:.1%} of the wrong labels (max {row['found_max']:.1%}); flipped "
                  f"{row['flipped']} ({row['flipped_to_gold']} to gold), kept {row['kept']}; teacher accuracy "
                  f"{row['teacher_accuracy_before']:.3f} -> {row['teacher_accuracy_after']:.3f}; classifier on clean "
                  f"test {row['accuracy_baseline']:.3f} -> {row['accuracy_recheck']:.3f} "
                  f"({row['gain_points']:+.1f} points, {row['ratio']:.3f}x)", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
