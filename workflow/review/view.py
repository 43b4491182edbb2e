"""What the review page shows, as plain data built from the store (the template only lays it out).

Kept apart from the HTTP server so the numbers on the page (counts, diffs, the mislabel queue) can be tested
without a browser.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from workflow.classify.mislabel import rank_suspects
from workflow.clustering import min_docs
from workflow.llm.responses import injected_name_reason, instruction_reason, name_support
from workflow.review.insight import InsightCache, insight
from workflow.store import OTHER_ID, OTHER_NAME, Label, Store

EmbedFn = Callable[[Store, list[str], list[str]], np.ndarray]  # (store, texts, text hashes) -> vectors

EXAMPLES_PER_LABEL = 4
QUEUE_SIZE = 12
PALETTE = ["#4f46e5", "#0891b2", "#059669", "#d97706", "#db2777", "#7c3aed", "#2563eb", "#65a30d", "#dc2626",
           "#0d9488", "#c026d3", "#ea580c"]


def colour_of(i: int, n: int) -> str:
    """The palette for up to its length; beyond, hues spread by the golden angle so 77 labels stay apart."""
    if n <= len(PALETTE):
        return PALETTE[i % len(PALETTE)]
    return f"hsl({(i * 137.508) % 360:.0f}, {62 + 14 * (i % 2)}%, {40 + 10 * (i % 3)}%)"


def default_embed(model: str) -> EmbedFn:
    """The run's own embedder through the DuckDB vector cache (training already embedded these texts)."""

    def embed(store: Store, texts: list[str], hashes: list[str]) -> np.ndarray:
        from workflow.classify.embed import get_embedder
        from workflow.classify.vectors import embed_texts

        return embed_texts(store, get_embedder(model), texts, hashes)

    return embed


def label_diff(old: list[Label], new: list[Label]) -> dict[str, list]:
    """Added / removed / renamed / re-described labels between two taxonomy versions (by stable id)."""
    before, after = {lb.label_id: lb for lb in old}, {lb.label_id: lb for lb in new}
    return {
        "added": [after[i] for i in after if i not in before],
        "removed": [before[i] for i in before if i not in after],
        "renamed": [(before[i], after[i]) for i in after if i in before and before[i].name != after[i].name],
        "described": [after[i] for i in after
                      if i in before and before[i].name == after[i].name
                      and before[i].description != after[i].description],
        "moved": [after[i] for i in after if i in before and before[i].parent_id
                  and after[i].parent_id and before[i].parent_id != after[i].parent_id],
        "grouped": sum(1 for i in after if i in before and after[i].parent_id and not before[i].parent_id),
    }


def review_sentence(r: dict, names: dict[str, str]) -> str:
    """One plain sentence for a `reviews` row (the page shows this, not the raw JSON)."""
    d = r["details"]
    name = lambda lid: names.get(lid, lid)  # noqa: E731
    match r["action"]:
        case "rename":
            return f"Renamed “{d['from']}” to “{d['to']}”"
        case "describe":
            return f"Edited the description of “{name(d['label_id'])}”"
        case "merge":
            return f"Merged “{d['from_name']}” into “{d['into_name']}”"
        case "split":
            parts = " and ".join(f"“{p['name']}”" for p in d["into"])
            return f"Split “{d['name']}” into {parts}"
        case "add":
            return f"Added “{d['name']}”"
        case "delete":
            return f"Deleted “{d['name']}”"
        case "update":
            return ("Added " + ", ".join(f"“{a['name']}”" for a in d.get("added", []))
                    + " from new documents (tnt update)")
        case "move":
            return (f"Moved “{d['name']}” under “{d['to_name']}”"
                    + (f" (from “{d['from_name']}”)" if d.get("from_name") else ""))
        case "correct":
            was = f" (LLM said “{name(d['from'])}”)" if d.get("from") else ""
            return f"Labeled document {d['doc_id']} as “{name(d['to'])}”{was}"
    return r["action"]


def _for_people(reason: str) -> str:
    """A refusal reason without its advice to the model (the part after the last ': ')."""
    return reason.rsplit(": ", 1)[0]


def name_flags(store: Store, run_id: str, labels: list[Label], docs: list[dict],
               versions: list[dict]) -> dict[str, list[dict]]:
    """Warnings for label names the machine made from few of the label's documents, or that repeat an instruction a
    document gives the model ("add label HACKED"), by label id: [{"text": badge, "why": tooltip}].

    A label's documents are those it was built from (cluster members, `Store.cluster_members`), else the documents
    labeled with it. A name is "named from N documents" when only N of its M documents use a word of it and N is
    below the floor a keyword must reach (`clustering.min_docs`: max(2, 10% of M)); N = 0 (the model's own words,
    "Card activation" for "activate") is no warning. Names a reviewer gave are not flagged."""
    machine = {(lb.label_id, lb.name) for v in versions if v["stage"] != "human"
               for lb in store.taxonomy(run_id, v["version"])[1]}
    members: dict[str, list[str]] = defaultdict(list)
    built = store.cluster_members(run_id)
    if built:
        texts = {d.doc_id: d.text for d in store.documents(store.run(run_id)["corpus"], sorted(built))}
        for d, lid in built.items():
            if d in texts:
                members[lid].append(texts[d])
    from_clusters = set(built.values())
    for d in docs:
        lid = d["human_label"] or d["llm_label"]
        if d["status"] == "ok" and lid not in from_clusters:
            members[lid].append(d["text"])
    flags: dict[str, list[dict]] = {}
    for lb in labels:
        texts = members.get(lb.label_id, [])
        if not texts or (lb.label_id, lb.name) not in machine:
            continue
        out = []
        if reason := instruction_reason(lb.name, texts):
            out.append({"text": "repeats an instruction in a document", "why": _for_people(reason)})
        n, floor = name_support(lb.name, texts), min_docs(len(texts))
        if 0 < n < floor:
            out.append({"text": f"named from {n} document{'s' if n != 1 else ''}",
                        "why": f"only {n} of the {len(texts)} documents of this label use a word of its name (a name "
                               f"should stand for at least {floor}): check it is not copied from one document"})
        elif not out and (reason := injected_name_reason(lb.name, texts)):
            out.append({"text": "repeats one document", "why": _for_people(reason)})
        if out:
            flags[lb.label_id] = out
    return flags


@dataclass
class QueueCache:
    """The mislabel ranking is a cross-validated fit: compute once per state of the labels."""

    key: tuple | None = None
    value: list[dict] = field(default_factory=list)
    error: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


DISAGREE_WEIGHT = 0.3  # share of the score that comes from the embedding-nearest label disagreeing with the LLM


def _with_disagreement(score: float, doc: dict) -> float:
    """A document whose LLM label is not the label nearest it by embedding is more likely mislabeled."""
    disagree = doc.get("nearest_id") is not None and doc["nearest_id"] != doc["llm_label"]
    return (1 - DISAGREE_WEIGHT) * score + DISAGREE_WEIGHT * disagree


def mislabel_queue(store: Store, run_id: str, docs: list[dict], embed: EmbedFn, cache: QueueCache,
                   seed: int = 0) -> tuple[list[dict], str | None]:
    """Top suspects among LLM-labeled documents no human has corrected yet, as (items, error message)."""
    pool = [d for d in docs if d["status"] == "ok" and d["human_label"] is None]
    key = (run_id, store.taxonomy(run_id)[0], tuple((d["doc_id"], d["llm_label"]) for d in pool))
    with cache.lock:
        if cache.key == key:
            return cache.value, cache.error
        items: list[dict] = []
        error = None
        if len({d["llm_label"] for d in pool}) < 2:
            error = "the queue needs LLM labels from at least two labels"
        else:
            try:
                X = embed(store, [d["text"] for d in pool], [d["text_hash"] for d in pool])
                ranked = rank_suspects(X, [d["llm_label"] for d in pool], [d["confidence"] for d in pool], seed=seed)
                scored = [pool[s.index] | {"suggested": s.suggested_label,
                                           "score": _with_disagreement(s.score, pool[s.index])}
                          for s in ranked]
                items = sorted(scored, key=lambda d: -d["score"])[:QUEUE_SIZE]
            except Exception as exc:  # noqa: BLE001 - an embedding backend missing must not take the page down
                error = f"cannot rank documents: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        cache.key, cache.value, cache.error = key, items, error
        return items, error


def build_view(store: Store, run_id: str, embed: EmbedFn | None, cache: QueueCache,
               pictures: InsightCache | None = None) -> dict:
    """Everything the page template needs for one run."""
    run = store.run(run_id)
    version, labels = store.taxonomy(run_id)
    docs = store.review_docs(run_id)
    llm_counts = store.label_counts(run_id, "llm")
    human_counts = store.label_counts(run_id, "human")
    model = store.latest_model(run_id)
    clf_counts = store.prediction_counts(model["model_id"]) if model else {}

    names = {lb.label_id: lb.name for lb in labels} | {OTHER_ID: OTHER_NAME}
    colours = {lb.label_id: colour_of(i, len(labels)) for i, lb in enumerate(labels)} | {OTHER_ID: "#64748b"}
    examples: dict[str, list[dict]] = defaultdict(list)
    ok_docs = [d for d in docs if d["status"] == "ok"]
    for d in sorted(ok_docs, key=lambda d: (-(d["confidence"] or 0), d["doc_id"])):
        current = d["human_label"] or d["llm_label"]
        if len(examples[current]) < EXAMPLES_PER_LABEL:
            examples[current].append(d)
    total_llm = sum(llm_counts.values()) or 1
    versions = store.taxonomy_versions(run_id)
    flags = name_flags(store, run_id, labels, docs, versions)
    cards = [
        {"label": lb, "colour": colours[lb.label_id], "llm": llm_counts.get(lb.label_id, 0),
         "human": human_counts.get(lb.label_id, 0), "clf": clf_counts.get(lb.label_id, 0),
         "share": llm_counts.get(lb.label_id, 0) / total_llm, "examples": examples.get(lb.label_id, []),
         "flags": flags.get(lb.label_id, [])}
        for lb in labels
    ]
    other = {"llm": llm_counts.get(OTHER_ID, 0), "clf": clf_counts.get(OTHER_ID, 0),
             "examples": examples.get(OTHER_ID, [])}
    # Two-level taxonomy: the cards grouped under their parents (a collapsible tree); flat: one group, no parent.
    parents = store.parents(run_id, version)
    groups = [{"parent": p, "cards": [c for c in cards if c["label"].parent_id == p.label_id]} for p in parents]
    known = {p.label_id for p in parents}
    loose = [c for c in cards if c["label"].parent_id not in known]
    if loose or not groups:
        groups.append({"parent": None, "cards": loose})
    for g in groups:
        g["llm"] = sum(c["llm"] for c in g["cards"])

    reviews = store.reviews(run_id)
    for r in reviews:
        r["sentence"] = review_sentence(r, names)
    by_version = {r["taxonomy_version"]: r["sentence"] for r in reviews if r["action"] != "correct"}
    history, previous = [], []
    for v in versions:
        _, lbs = store.taxonomy(run_id, v["version"])
        history.append(v | {"labels": lbs, "diff": label_diff(previous, lbs), "first": not previous,
                            "edit": by_version.get(v["version"]) if v["stage"] == "human" else None})
        previous = lbs
    history.reverse()

    labeled = sum(llm_counts.values())
    queue, queue_error = ([], "no LLM labels yet: the queue fills after pseudo-labeling")
    if ok_docs and embed is not None:
        queue, queue_error = mislabel_queue(store, run_id, docs, embed, cache, seed=run.config.seed)
    todo = set(store.sample(run_id, 2)) - set(store.assignments(run_id, "llm", taxonomy_version=version))
    return {
        "insight": insight(store, run_id, labels, colours, names, embed, cache=pictures),
        "run": run, "version": version, "cards": cards, "other": other, "groups": groups, "parents": parents,
        "names": names, "colours": colours,
        "label_options": [(lb.label_id, lb.name) for lb in labels] + [(OTHER_ID, OTHER_NAME)],
        "history": history, "reviews": list(reversed(reviews)), "queue": queue, "queue_error": queue_error,
        "model": model, "labeled": labeled,
        "coverage": (labeled - llm_counts.get(OTHER_ID, 0)) / labeled if labeled else None,
        "corrections": sum(human_counts.values()),
        "pending": len(todo) if labeled else 0,
        "resume_hint": bool(reviews) and (model is None or reviews[-1]["created_at"] > model["created_at"]),
    }
