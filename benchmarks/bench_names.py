"""Keyword names of clusters against BANKING77's gold intent names (issue 24): today's names vs the old ones.

BANKING77 intents have readable names (`card_arrival`, `exchange_rate`). A sample of documents is embedded
(minilm-int8, the product's default) and clustered the way the proposal does (`clustering.kmeans`); each cluster is
named twice on the same clusters, by the old keyword names (c-TF-IDF over sklearn stop words, three keywords joined
by " / ", "Documents mentioning ..."; copied below as it was) and by today's (`workflow.keywords.represent`). Each
cluster is matched to one gold intent by the Hungarian method on membership counts, and we report:

* name~gold: mean cosine between the name's embedding and the matched gold name's ("card arrival");
* junk: share of names with a word of the published junk list (`workflow.names.name_junk`);
* copied: share of names sharing 6+ words with one of their cluster's documents, or one's first 4+ words;
* glued: share of clusters where two gold intents each hold > 30% of the documents (the clustering's, the same for
  both), and of those, the share whose name is nearer the larger intent's name than the second's.

    python benchmarks/bench_names.py                 # 600 train documents, k = 25 and 60
    python benchmarks/bench_names.py --n 1000 --k 25
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DATA = Path(os.environ.get("TNT_BANKING77_DIR", "/work/shared/datasets/banking77"))


# -- the old keyword names, as they were before issue 24 (workflow/clustering.py at e28ff04) ----------------------

OLD_TOPIC_WORDS = frozenset({"top", "bill", "call", "interest", "amount", "move", "name", "system", "full"})
OLD_TOKEN = r"(?u)\b[a-zA-Z][a-zA-Z']+\b"


def old_keywords(texts: list[str], assign: np.ndarray, top: int = 8) -> list[list[str]]:
    from scipy import sparse
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, CountVectorizer

    from workflow.clustering import min_docs

    k = int(assign.max()) + 1
    joined = [" ".join(t for t, a in zip(texts, assign) if a == c) for c in range(k)]
    vec = CountVectorizer(stop_words=sorted(ENGLISH_STOP_WORDS - OLD_TOPIC_WORDS), token_pattern=OLD_TOKEN,
                          ngram_range=(1, 2), min_df=1)
    counts = vec.fit_transform(joined).toarray().astype(np.float64)
    terms = vec.get_feature_names_out()
    tf = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    idf = np.log(1 + counts.sum(axis=1).mean() / np.maximum(counts.sum(axis=0), 1))
    scores = tf * idf
    present = (vec.transform(texts) > 0).astype(np.float64)
    member = sparse.csr_matrix((np.ones(len(assign)), (assign, np.arange(len(assign)))), shape=(k, len(texts)))
    df = np.asarray((member @ present).todense())
    sizes = np.bincount(assign, minlength=k)
    out = []
    for c in range(k):
        floor = min_docs(int(sizes[c]))
        best = [terms[i] for i in np.argsort(-scores[c], kind="stable") if scores[c, i] > 0 and df[c, i] >= floor]
        chosen: list[str] = []
        for term in best:
            if any(term in t.split() or t in term.split() for t in chosen):
                continue
            chosen.append(term)
            if len(chosen) == top:
                break
        out.append(chosen)
    return out


def old_name(words: list[str], max_words: int = 10) -> str:
    if not words:
        return ""
    name = " / ".join(words[:3])
    capped = " ".join(name.split()[:max_words]).strip(" /")
    return capped[:1].upper() + capped[1:]


# -- measures ---------------------------------------------------------------------------------------------------


def load(n: int, seed: int) -> tuple[list[str], list[str]]:
    rows = [json.loads(line) for line in (DATA / "train.jsonl").open() if line.strip()]
    pick = np.random.default_rng(seed).choice(len(rows), size=min(n, len(rows)), replace=False)
    return [rows[i]["text"] for i in pick], [rows[i]["label"] for i in pick]


def match(assign: np.ndarray, gold: list[str]) -> tuple[dict[int, str], np.ndarray, list[str]]:
    """Each cluster's gold intent by the Hungarian method on the cluster x intent membership counts."""
    from scipy.optimize import linear_sum_assignment

    intents = sorted(set(gold))
    col = {g: i for i, g in enumerate(intents)}
    M = np.zeros((int(assign.max()) + 1, len(intents)))
    for a, g in zip(assign, gold):
        M[a, col[g]] += 1
    rows, cols = linear_sum_assignment(-M)
    return {int(r): intents[c] for r, c in zip(rows, cols)}, M, intents


def readable(intent: str) -> str:
    return intent.replace("_", " ")


def measure(names: dict[int, str], assign: np.ndarray, texts: list[str], gold: list[str], embed) -> dict:
    from workflow.names import copy_reason, name_junk

    matched, M, intents = match(assign, gold)
    clusters = sorted(names)
    N = embed([names[c] or "nothing" for c in clusters])
    G = embed([readable(matched[c]) for c in clusters])
    cos = float(np.mean(np.sum(N * G, axis=1)))
    junk = [c for c in clusters if name_junk(names[c])]
    copied = [c for c in clusters if copy_reason(names[c], [t for t, a in zip(texts, assign) if a == c])]
    glued, larger = [], 0
    for i, c in enumerate(clusters):
        share = M[c] / max(M[c].sum(), 1)
        top2 = np.argsort(-share)[:2]
        if share[top2[1]] > 0.3:
            glued.append(c)
            E = embed([readable(intents[top2[0]]), readable(intents[top2[1]])])
            larger += int(E[0] @ N[i] >= E[1] @ N[i])
    return {"name_gold_cos": round(cos, 3), "junk_share": round(len(junk) / len(clusters), 3),
            "copied_share": round(len(copied) / len(clusters), 3), "glued_share": round(len(glued) / len(clusters), 3),
            "glued_named_for_larger": f"{larger}/{len(glued)}", "examples": [names[c] for c in clusters[:8]]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=600)
    ap.add_argument("--k", default="25,60")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--show", action="store_true", help="print every cluster's gold intent, old name and new name")
    args = ap.parse_args()

    from workflow import clustering
    from workflow.classify.embed import get_embedder
    from workflow.keywords import represent
    from workflow.llm.responses import without_instructions

    embedder = get_embedder("minilm-int8")
    cache: dict[str, np.ndarray] = {}

    def embed(texts: list[str]) -> np.ndarray:
        todo = [t for t in dict.fromkeys(texts) if t not in cache]
        if todo:
            cache.update(zip(todo, embedder.embed(todo)))
        return np.stack([cache[t] for t in texts]) if texts else np.zeros((0, embedder.dim))

    texts, gold = load(args.n, args.seed)
    X = clustering.unit(embedder.embed(texts))
    clean = [without_instructions(t) for t in texts]
    results = []
    for k in (int(x) for x in args.k.split(",")):
        assign, _ = clustering.kmeans(X, k, args.seed)
        t0 = time.perf_counter()
        old = {c: old_name(w) for c, w in enumerate(old_keywords(clean, assign))}
        t_old = time.perf_counter() - t0
        t0 = time.perf_counter()
        new = {c: r.name for c, r in represent(clean, X, assign, embed, seed=args.seed).items()}
        t_new = time.perf_counter() - t0
        row = {"n": len(texts), "k": k, "old": measure(old, assign, texts, gold, embed),
               "new": measure(new, assign, texts, gold, embed), "old_s": round(t_old, 2), "new_s": round(t_new, 2)}
        row["cos_ratio_new_vs_old"] = round(row["new"]["name_gold_cos"] / max(row["old"]["name_gold_cos"], 1e-9), 2)
        results.append(row)
        print(json.dumps(row, indent=1), flush=True)
        if args.show:
            matched = match(assign, gold)[0]
            for c in sorted(new, key=lambda c: matched.get(c, "")):
                print(f"  {matched.get(c, '-'):<40} {old[c]:<40} {new[c]}")
    assert all(not math.isnan(r["new"]["name_gold_cos"]) for r in results)


if __name__ == "__main__":
    main()
