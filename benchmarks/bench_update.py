"""`tnt update` on BANKING77: does a run grow to cover intents it never saw, at a fraction of a re-run's cost?

Gold-as-teacher: the "LLM" is a scripted model that knows BANKING77's gold intents. Summaries are the documents'
first words; a cluster is named after its most frequent intent, in a form tnt's naming rules accept (checked with
tnt's own validator, as a competent model would read the rules); a merge groups candidates of the same intent; a
document gets the label that stands for its gold intent, or Other when the labels offered lack it. So the taxonomy
machinery, the gateway, the classifier and `tnt update` all run as in production, and only the model's judgement
is perfect. The last lines say how many of its answers tnt refused anyway.

1. A run on documents of 60 of the 77 intents (train split).
2. A stream of new train-split documents in batches: the first batches hold only the 60 old intents, later ones
   add the other 17. `tnt update` classifies it, measures drift per batch, proposes, labels, retrains.
3. On the test split: old-label accuracy of the old and new classifier (documents of the 60 old intents), and the
   share of the 17 new intents' documents the new classifier puts under new labels, matched one-to-one to the new
   intents by the Hungarian algorithm (and how many intents that mapping covers).
4. Model calls of the update against a full re-run from scratch on the initial corpus plus the stream.

Usage: .venv/bin/python benchmarks/bench_update.py [--initial 3000] [--batch 500] [--proposal clusters|minibatch]
       [--json out.json] [--initial-db DIR] [--no-rerun]
(--initial-db DIR keeps the initial run there, or starts from it when present: only the update is run again;
 --no-rerun skips the full re-run, so no call ratio is printed.)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workflow.classify.embed import get_embedder  # noqa: E402
from workflow.classify.loader import from_store  # noqa: E402
from workflow.classify.vectors import embed_texts  # noqa: E402
from workflow.config import JobConfig  # noqa: E402
from workflow.evolve.update import update_run  # noqa: E402
from workflow.ingest import read_corpus  # noqa: E402
from workflow.runner import execute  # noqa: E402
from workflow.store import Store  # noqa: E402
from workflow.testing import scripted  # noqa: E402

DATA = Path("/work/shared/datasets/banking77")


def pretty(intent: str) -> str:
    return intent.replace("_", " ").capitalize()


def gold_teacher(intent_of: dict[str, str], use_case: str, min_count: int = 2):
    """A scripted model answering from gold intents (looked up by the document's or summary's first words).

    It plays a competent model under tnt's naming rules: a cluster's name is its most frequent intent, adjusted
    (question mark dropped, a use-case word dropped, one of the cluster's shown keywords added) until the product's
    own check accepts it; it remembers which intent each name stands for, so merging groups candidates by intent
    and labeling picks the label that stands for the document's intent. Candidates it cannot place (keyword names
    from refused answers) are left out of the merge, and tnt attaches them to the nearest group."""
    from workflow.llm.responses import _content_words, bad_name_reason, cluster_name_model

    def key(text: str) -> str:
        return " ".join(text.split()[:20])

    by_key = {key(t): i for t, i in intent_of.items()}
    use_words = {w[:4] for w in _content_words(use_case)}

    def plain(intent: str) -> str:
        """The intent's name without a question mark or a word of the use case."""
        words = pretty(intent).rstrip("?").split()
        return " ".join(w for w in words if not any(c[:4] in use_words for c in _content_words(w))).capitalize()

    stands_for: dict[str, str] = {pretty(i).lower(): i for i in set(intent_of.values())}
    for i in sorted(set(intent_of.values())):
        stands_for.setdefault(pretty(i).rstrip("?").lower(), i)
        stands_for.setdefault(plain(i).lower(), i)

    def intent_of_name(name: str) -> str | None:
        name = name.lower()
        while name not in stands_for and name.endswith(")") and " (" in name:  # tnt's "(keyword)" for twins
            name = name.rsplit(" (", 1)[0]
        return stands_for.get(name)

    def valid_name(intent: str, user: str, shown: list[str]) -> tuple[str, str]:
        line = next((ln for ln in user.splitlines() if ln.startswith("Words typical of the group:")), "")
        shown_kws = [k.strip() for k in line.split(":", 1)[1].split(",")] if line else []
        kws = [k for k in shown_kws if _content_words(k) and not re.search(r"\b(i|i'm|i've|i'd|my|me)\b", k, re.I)]
        topic = intent.replace("_", " ")
        base, short = pretty(intent).rstrip("?"), plain(intent)
        candidates = [base, short] + [f"{short} ({k})" for k in kws[:3] if k.lower() not in short.lower()]
        description = f"Questions about {topic}" + (f", mentioning {', '.join(kws[:3])}." if kws else ".")
        response = cluster_name_model(10, 30)
        ctx = {"name_max_words": 10, "description_max_words": 30, "documents": shown, "keywords": shown_kws,
               "use_case": use_case}
        for name in candidates:
            if not name.strip():
                continue
            try:
                response.model_validate({"name": name, "description": description}, context=ctx)
            except ValueError:
                continue
            return name, description
        return base, description  # refused by tnt: it falls back to a keyword name

    def answer(prompt_name: str, messages: list[dict], schema: dict) -> str:
        user = next(m["content"] for m in messages if m["role"] == "user")
        if prompt_name == "summarize":
            return json.dumps({"summary": key(scripted._between(user, "document")) or "empty"})
        if prompt_name in ("propose", "update", "review"):
            cap = scripted._int_after(user, r"at most (\d+) labels", 10)
            existing = [json.loads(line) for line in user.splitlines() if line.startswith('{"id": "L')]
            labels = [{"id": e["id"], "name": e["name"], "description": e["description"]} for e in existing]
            have = {lb["name"].lower() for lb in labels}
            counts = Counter(by_key.get(key(line[2:])) for line in scripted._between(user, "summaries").splitlines())
            for intent, n in counts.most_common():
                if intent and n >= min_count and pretty(intent).lower() not in have and len(labels) < cap:
                    labels.append({"id": None, "name": pretty(intent), "description": f"Customers asking about "
                                   f"{intent.replace('_', ' ')}."})
                    have.add(pretty(intent).lower())
            out: dict = {"labels": labels or [{"id": None, "name": "Card arrival", "description": "Card arrival."}]}
            if prompt_name == "update":
                out |= {"rating": 8, "suggestions": "none"}
            if prompt_name == "review":
                out |= {"notes": "kept"}
            return json.dumps(out)
        if prompt_name == "name_cluster":  # cluster-seeded proposal: the group's most frequent intent
            shown = [line[2:] for line in scripted._between(user, "documents").splitlines() if line.startswith("- ")]
            top = Counter(by_key.get(key(t)) for t in shown if by_key.get(key(t))).most_common(1)
            if not top:
                return json.dumps({"name": "Unknown", "description": "Unknown."})
            name, description = valid_name(top[0][0], user, shown)
            stands_for.setdefault(name.lower(), top[0][0])
            return json.dumps({"name": name, "description": description})
        if prompt_name == "merge_labels":  # candidates standing for the same intent become one label
            cap = scripted._int_after(user, r"at most (\d+) final labels", 10)
            groups: dict[str, list[str]] = {}
            first_name: dict[str, str] = {}
            size: Counter = Counter()
            for line in user.splitlines():
                if line.startswith('{"id": '):
                    cand = json.loads(line)
                    intent = intent_of_name(cand["name"])
                    if intent is None or bad_name_reason(cand["name"]):
                        continue  # a keyword name: left out, tnt puts it with the nearest group
                    groups.setdefault(intent, []).append(cand["id"])
                    first_name.setdefault(intent, cand["name"].split(" (")[0] if intent_of_name(
                        cand["name"].split(" (")[0]) == intent else cand["name"])
                    size[intent] += cand["size"]
            order = sorted(groups, key=lambda i: -size[i])[:cap]  # the rest join their nearest group
            return json.dumps({"labels": [{"name": first_name[i], "description": f"Questions about "
                                           f"{i.replace('_', ' ')}.", "members": groups[i]} for i in order]},
                              separators=(",", ":"))
        if prompt_name == "label":
            intent = by_key.get(key(scripted._between(user, "document")))
            for lid, name in scripted._taxonomy_lines(user):
                if intent and intent_of_name(name) == intent:
                    return json.dumps({"label_id": lid, "label_name": name, "rationale": "gold", "confidence": "high"})
            return json.dumps({"label_id": "other", "label_name": "Other", "rationale": "gold", "confidence": "low"})
        return json.dumps({})

    scripted.register_script("gold77", answer)
    return "scripted/gold77", intent_of_name


def rows(split: str) -> list[dict]:
    return [json.loads(line) for line in (DATA / f"{split}.jsonl").read_text().splitlines()]


def write(path: Path, docs: list[dict]) -> Path:
    path.write_text("".join(json.dumps({"id": d["id"], "text": d["text"], "label": d["label"]}) + "\n" for d in docs))
    return path


def calls(store: Store, prefix: str) -> int:
    return store.query("SELECT count(*) AS n FROM llm_calls WHERE run_id LIKE ?", [prefix + "%"])[0]["n"]


def refused(store: Store, prefix: str) -> dict[str, str]:
    """Teacher answers tnt refused, per prompt: 'failed/all' (a refused name falls back to keywords, a refused
    merge to nearest centroids)."""
    rows = store.query("SELECT prompt_name, count(*) FILTER (WHERE status = 'failed') AS bad, count(*) AS n "
                       "FROM llm_calls WHERE run_id LIKE ? AND prompt_name IN ('name_cluster', 'merge_labels') "
                       "GROUP BY prompt_name ORDER BY prompt_name", [prefix + "%"])
    return {r["prompt_name"]: f"{r['bad']}/{r['n']}" for r in rows}


def predict_names(store: Store, model_id: str, texts: list[str]) -> list[str]:
    model = from_store(store, model_id)
    X = embed_texts(store, get_embedder(model.embedding_model), texts)
    idx = model.classify(X)[0]
    return [model.label_names[i] for i in idx.tolist()]


def hungarian_coverage(pred: list[str], gold: list[str], new_names: set[str]) -> tuple[float, int, dict]:
    """Share of documents whose predicted label is the one matched to their intent, matching only new labels
    to intents one-to-one (Hungarian); and how many intents get a match."""
    from scipy.optimize import linear_sum_assignment

    labs, ints = sorted(new_names), sorted(set(gold))
    table = np.zeros((len(labs), len(ints)), dtype=np.int64)
    li, ii = {x: i for i, x in enumerate(labs)}, {x: i for i, x in enumerate(ints)}
    for p, g in zip(pred, gold):
        if p in li:
            table[li[p], ii[g]] += 1
    if not labs:
        return 0.0, 0, {}
    r, c = linear_sum_assignment(table, maximize=True)
    mapping = {labs[a]: ints[b] for a, b in zip(r, c) if table[a, b] > 0}
    return float(table[r, c].sum()) / len(gold), len(mapping), mapping


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--initial", type=int, default=3000, help="documents of the 60 old intents in the first run")
    ap.add_argument("--batch", type=int, default=500, help="documents per stream batch")
    ap.add_argument("--old-batches", type=int, default=2, help="stream batches holding only old intents")
    ap.add_argument("--new-batches", type=int, default=4, help="stream batches that add the 17 new intents")
    ap.add_argument("--taxonomy-sample", type=int, default=1000)
    ap.add_argument("--label-sample", type=int, default=2000)
    ap.add_argument("--refresh-per-label", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--proposal", choices=["clusters", "minibatch"], default="clusters",
                    help="taxonomy proposal of the run, the update and the re-run (tnt's default: clusters)")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--initial-db", type=Path, help="keep the initial run's database here, or start from it if "
                    "present (same arguments: only the update is measured again)")
    ap.add_argument("--no-rerun", action="store_true", help="skip the full re-run (no call ratio)")
    args = ap.parse_args()

    train, test = rows("train"), rows("test")
    intents = sorted({r["label"] for r in train})
    rng = random.Random(args.seed)
    new_intents = set(rng.sample(intents, 17))
    old_docs = [r for r in train if r["label"] not in new_intents]
    new_docs = [r for r in train if r["label"] in new_intents]
    rng.shuffle(old_docs)
    rng.shuffle(new_docs)
    initial = old_docs[: args.initial]
    rest_old = old_docs[args.initial:]
    stream: list[dict] = rest_old[: args.old_batches * args.batch]
    rest_old = rest_old[args.old_batches * args.batch:]
    half = args.batch // 2
    for b in range(args.new_batches):  # later batches: half old intents, half new ones
        mix = rest_old[b * half:(b + 1) * half] + new_docs[b * (args.batch - half):(b + 1) * (args.batch - half)]
        rng.shuffle(mix)
        stream += mix
    use_case = "What do customers ask the bank's support bot for?"
    model, intent_of_name = gold_teacher({r["text"]: r["label"] for r in train + test}, use_case)
    config = JobConfig(use_case=use_case, model=model,
                       taxonomy_sample=args.taxonomy_sample, label_sample=args.label_sample, batch_size=200,
                       max_labels=77, concurrency=4, seed=args.seed, proposal=args.proposal)

    tmp = Path(tempfile.mkdtemp(prefix="bench_update_"))
    t0 = time.perf_counter()
    saved = args.initial_db
    if saved and saved.exists():  # the same initial run, made before by the same arguments: update only
        for f in saved.iterdir():
            shutil.copy(f, tmp / f.name)
    else:
        with Store(tmp / "tnt.duckdb") as store:
            store.insert_documents("b77", read_corpus(str(write(tmp / "initial.jsonl", initial))).records)
            out = execute(store, store.create_run("b77", config.use_case, config.model_dump()), show_progress=False)
            assert out.status == "done", out.message
        if saved:
            saved.mkdir(parents=True)
            for f in tmp.glob("tnt.*"):
                shutil.copy(f, saved / f.name)
    with Store(tmp / "tnt.duckdb") as store:
        run_id = store.query("SELECT run_id FROM runs ORDER BY created_at LIMIT 1")[0]["run_id"]
        run_calls = calls(store, run_id)
        refused_run = refused(store, run_id)
        t_run = time.perf_counter() - t0
        old_model = store.latest_model(run_id)["model_id"]
        n_old_labels = len(store.taxonomy(run_id)[1])

        t1 = time.perf_counter()
        report = update_run(store, run_id, str(write(tmp / "stream.jsonl", stream)), show_progress=False,
                            refresh_per_label=args.refresh_per_label)
        t_update = time.perf_counter() - t1
        new_model = report["model_after"]

        test_old = [r for r in test if r["label"] not in new_intents]
        test_new = [r for r in test if r["label"] in new_intents]
        before = predict_names(store, old_model, [r["text"] for r in test_old])
        after = predict_names(store, new_model, [r["text"] for r in test_old])
        acc_before = np.mean([intent_of_name(p) == r["label"] for p, r in zip(before, test_old)])
        acc_after = np.mean([intent_of_name(p) == r["label"] for p, r in zip(after, test_old)])
        pred_new = predict_names(store, new_model, [r["text"] for r in test_new])
        added = {a["name"] for a in report["added"]}
        share, n_mapped, mapping = hungarian_coverage(pred_new, [r["label"] for r in test_new], added)
        correct_names = sum(intent_of_name(lab) == i for lab, i in mapping.items())
        refused_update = refused(store, f"{run_id}-update")
        # where the budget went: stream documents pseudo-labeled, and how many of them are of a new intent
        gold = {str(r["id"]): r["label"] for r in stream}
        taught = {d: lab for d, lab in store.training_labels(run_id).items() if d in gold}
        per_intent = Counter(gold[d] for d in taught if gold[d] in new_intents)
        budget = {"stream_labeled": len(taught), "of_new_intents": sum(per_intent.values()),
                  "per_new_intent": sorted(per_intent.get(i, 0) for i in new_intents)}

    # the cost of starting over: a fresh run on the initial corpus plus the stream (own database: no cache)
    t2 = time.perf_counter()
    rerun_calls = 0
    if not args.no_rerun:
        with Store(tmp / "rerun.duckdb") as store:
            store.insert_documents("all", read_corpus(str(write(tmp / "all.jsonl", initial + stream))).records)
            rerun = store.create_run("all", config.use_case, config.model_dump())
            assert execute(store, rerun, show_progress=False).status == "done"
            rerun_calls = calls(store, rerun)
    t_rerun = time.perf_counter() - t2

    drift_at = report["drift_batches"][0] if report["drift_batches"] else None
    result = {
        "initial_docs": len(initial), "stream_docs": len(stream), "stream_batches": len(stream) // args.batch,
        "first_batch_with_new_intents": args.old_batches, "old_labels": n_old_labels,
        "drift_detected": bool(report["drift_batches"]), "drift_batches": report["drift_batches"],
        "first_drift_batch": drift_at, "figures": report["figures"], "baseline": report["baseline"],
        "unexplained": report["n_unexplained"], "pseudo_labeled": report["n_labeled"],
        "labels_added": len(report["added"]), "new_intents_mapped": n_mapped, "mapped_names_equal": correct_names,
        "new_intent_docs_under_new_labels": share, "n_test_new": len(test_new),
        "old_label_accuracy_before": float(acc_before), "old_label_accuracy_after": float(acc_after),
        "n_test_old": len(test_old), "held_out_report": report["held_out"],
        "budget": budget, "refused_initial": refused_run, "refused_update": refused_update,
        "update_calls": report["calls"], "initial_run_calls": run_calls, "rerun_calls": rerun_calls,
        "update_vs_rerun_calls": report["calls"] / rerun_calls if rerun_calls else None,
        "seconds": {"initial_run": round(t_run, 1), "update": round(t_update, 1), "rerun": round(t_rerun, 1)},
    }
    print(f"stream: {len(stream)} docs in {len(stream) // args.batch} batches of {args.batch}; new intents from "
          f"batch {args.old_batches}")
    for f in report["figures"]:
        print(f"  batch {f['batch']}: Other {f['other_share']:.1%}, uncertain {f['uncertain_share']:.1%}, distance "
              f"{f['centroid_distance']:.3f}{'  <- drift' if f['batch'] in report['drift_batches'] else ''}")
    b = report["baseline"]
    print(f"  held-out baseline (n={b['n']}): Other {b['other_share']:.1%}, uncertain {b['uncertain_share']:.1%}, "
          f"distance {b['distance_mean']:.3f}")
    print(f"drift detected: {'yes, first at batch ' + str(drift_at) if drift_at is not None else 'no'}")
    print(f"labels: {n_old_labels} -> +{len(report['added'])}; new intents matched (Hungarian): {n_mapped}/17 "
          f"({correct_names} with the intent's own name)")
    print(f"new intents' test documents under their matched new label: {share:.1%} (n={len(test_new)}; target >= 80%)")
    print(f"old-label accuracy on the test split: {acc_before:.3f} -> {acc_after:.3f} "
          f"({100 * (acc_after - acc_before):+.1f} points; target >= -1.0) (n={len(test_old)})")
    if rerun_calls:
        print(f"model calls: update {report['calls']} vs full re-run {rerun_calls} = "
              f"{result['update_vs_rerun_calls']:.1%} (target <= 30%); initial run {run_calls}")
    else:
        print(f"model calls: update {report['calls']}; initial run {run_calls} (no re-run: --no-rerun)")
    print(f"stream documents pseudo-labeled: {budget['stream_labeled']}, of new intents "
          f"{budget['of_new_intents']} (per new intent: {budget['per_new_intent']})")
    print(f"teacher answers refused by tnt (failed/all): initial run {refused_run}, update {refused_update}")
    print(f"seconds: {result['seconds']}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, default=str))


if __name__ == "__main__":
    main()
