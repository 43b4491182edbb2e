"""The labels a user gave (`--labels FILE`) inside a run: their ids, where they sit in embedding space, and which
labels of a taxonomy were given or discovered. The steps that use them are in seeded.py (cluster proposal, fixed
mode) and taxonomy.py (minibatch proposal)."""

from __future__ import annotations

import numpy as np

from workflow import clustering
from workflow.graph.context import RunContext
from workflow.seeds import SeedLabel
from workflow.store import Label

SEED = "seed"
DISCOVERED = "discovered"


def has_seeds(ctx: RunContext) -> bool:
    return bool(ctx.config.seed_labels)


def is_fixed(ctx: RunContext) -> bool:
    return has_seeds(ctx) and ctx.config.label_mode == "fixed"


def slots(ctx: RunContext) -> int:
    """Labels proposal may add beside the given ones."""
    return ctx.config.max_labels - len(ctx.config.seed_labels)


def seed_id(i: int) -> str:
    return f"L{i + 1}"


def given_labels(ctx: RunContext) -> list[Label]:
    """The user's labels as taxonomy labels, ids L1..Ln in file order (a label without a description is described by
    its examples, or its name)."""
    out = []
    for i, s in enumerate(ctx.config.seed_labels):
        desc = s.description or (f"Like: {s.examples[0]}" if s.examples else s.name)
        out.append(Label(seed_id(i), s.name, desc))
    return out


def seeds_by_id(ctx: RunContext) -> dict[str, SeedLabel]:
    return {seed_id(i): s for i, s in enumerate(ctx.config.seed_labels)}


def embed_label_texts(ctx: RunContext, texts: list[str]) -> np.ndarray:
    return clustering.unit(ctx.embed_texts(texts))


def described_vectors(ctx: RunContext, labels: list[Label]) -> np.ndarray:
    """Each label's vector from what it says: 'name: description', and for a given label also its examples (the
    mean of the two parts, so one example weighs as much as the description)."""
    seeds = seeds_by_id(ctx)
    text = embed_label_texts(ctx, [f"{lb.name}: {lb.description}" for lb in labels])
    rows = []
    for lb, vec in zip(labels, text):
        examples = seeds[lb.label_id].examples if lb.label_id in seeds else []
        rows.append(vec + embed_label_texts(ctx, examples).mean(axis=0) if examples else vec)
    return clustering.unit(np.stack(rows)) if rows else np.zeros((0, 0))


def save_origins(ctx: RunContext, labels: list[Label]) -> None:
    """Record each label id's origin once ('seed' for the given ids, 'discovered' for the others)."""
    seeds = seeds_by_id(ctx)
    ctx.store.save_label_origins(ctx.run_id, {lb.label_id: SEED if lb.label_id in seeds else DISCOVERED
                                              for lb in labels})


def keep_given(ctx: RunContext, labels: list[Label]) -> list[Label]:
    """A model-written taxonomy with the given labels restored as given (first, same ids, names, descriptions):
    labels the model renamed, dropped or repeated come back, and only --max-labels minus n others stay."""
    seeds = given_labels(ctx)
    names = {lb.name.casefold() for lb in seeds}
    ids = {lb.label_id for lb in seeds}
    others = [lb for lb in labels if lb.label_id not in ids and lb.name.casefold() not in names]
    return seeds + others[: slots(ctx)]
