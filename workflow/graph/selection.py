"""Which documents a run labels: the seeded random order both selections draw from, and for
`--label-selection active` the rounds in which the phase-2 sample grows while the label step runs (a library for
the sample and label steps and for training, not a step itself).

The sample step stores only the random seed set (round 0, the first documents of what a random run would label);
after each round is labelled, the next is chosen by workflow/classify/active.py from a candidate pool and appended
to `samples` with its round number before any model call, so a killed run resumes with the same rounds and
documents (a round not yet stored is chosen again from the same stored labels, pool and seed: the same documents).
"""

from __future__ import annotations

import random

from workflow.classify import active
from workflow.config import JobConfig
from workflow.graph.context import RunContext, log
from workflow.store import Store, text_hash

POOL_FACTOR = 10  # candidates per label of the budget: bounds the embedding work on a huge corpus


def shuffled_split(store: Store, corpus: str, config: JobConfig) -> tuple[list[str], list[str]]:
    """(phase-1 documents, the rest in the run's seeded random order): the order both selections draw from."""
    ids = store.corpus_doc_ids(corpus)
    random.Random(config.seed).shuffle(ids)
    return ids[: config.taxonomy_sample], ids[config.taxonomy_sample :]


def label_budget(ctx: RunContext) -> int:
    """Labels the run spends, random or active: --label-sample, or the whole corpus when it is smaller."""
    return min(ctx.config.label_sample, ctx.store.corpus_size(ctx.corpus))


def candidate_pool(store: Store, corpus: str, config: JobConfig, sampled: set[str]) -> list[str]:
    """Unlabelled candidates: a seeded random slice of the corpus (POOL_FACTOR x --label-sample) outside the taxonomy
    sample, as the random selection draws (phase-1 documents join only when the rest is smaller than the budget);
    one document per distinct text, none whose text is already in the sample. The classifier of an active run
    also learns from the ones it is sure of (workflow/classify/fit.py): they are embedded already."""
    phase1, rest = shuffled_split(store, corpus, config)
    order = rest if len(rest) >= config.label_sample else rest + phase1
    order = order[: POOL_FACTOR * config.label_sample]
    docs = store.documents(corpus, [d for d in order if d not in sampled])
    seen = {text_hash(d.text) for d in store.documents(corpus, sorted(sampled))}
    pool = []
    for d in docs:
        h = text_hash(d.text)
        if h not in seen:
            seen.add(h)
            pool.append(d.doc_id)
    return pool


def next_round(ctx: RunContext, version: int) -> tuple[int, list[str]] | None:
    """Choose and store the next round's documents; (round, documents), or None when the budget is spent (or no
    candidate is left)."""
    store, cfg = ctx.store, ctx.config
    rounds = store.sample_rounds(ctx.run_id, 2)
    budget = label_budget(ctx)
    plan = active.round_sizes(budget)
    r = max((v for v in rounds.values() if v is not None), default=-1) + 1
    if len(rounds) >= budget or r >= len(plan):
        return None
    k = min(plan[r], budget - len(rounds))
    labels = store.assignments(ctx.run_id, "llm", taxonomy_version=version) | store.assignments(ctx.run_id, "human")
    labelled = [d for d in rounds if d in labels]
    pool = candidate_pool(store, ctx.corpus, cfg, set(rounds))
    if not pool:
        log.info("active selection: no unlabelled documents left after %d labels", len(rounds))
        return None
    X_lab = ctx.embed(labelled, progress=False)
    X_pool = ctx.embed(pool)
    rows = active.select_batch(X_lab, [labels[d] for d in labelled], X_pool, k, seed=cfg.seed + r)
    picked = [pool[i] for i in rows]
    store.extend_sample(ctx.run_id, 2, picked, cfg.batch_size, round=r)
    log.info("active selection round %d/%d: %d documents the classifier (%d labels) is least sure of, spread over "
             "%d candidates", r, len(plan) - 1, len(picked), len(labelled), len(pool))
    return r, picked


def seed_size(n_phase2: int) -> int:
    """How many of a random phase-2 sample of this size the active selection labels first (round 0)."""
    sizes = active.round_sizes(n_phase2)
    return sizes[0] if sizes else 0

