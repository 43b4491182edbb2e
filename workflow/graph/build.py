"""The LangGraph state machine: sample -> summarize -> propose -> update* -> review -> approve (interrupt) ->
label -> recheck (with --recheck) -> train -> predict -> hierarchy (with --levels 2). Checkpointed per run id in a
SQLite file beside the database, so a run killed at any point resumes at the step it was in (and the LLM cache makes
the re-entered step free)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph

from workflow.graph.context import RunContext
from workflow.graph.nodes import clusters, given, seeded, taxonomy
from workflow.graph.nodes.approve import approve
from workflow.graph.nodes.hierarchy import hierarchy
from workflow.graph.nodes.label import label
from workflow.graph.nodes.recheck import recheck
from workflow.graph.nodes.sample import sample
from workflow.graph.nodes.summarize import summarize
from workflow.graph.nodes.taxonomy import more_batches, update
from workflow.graph.nodes.train import predict, train
from workflow.graph.state import RunState


def propose(ctx: RunContext, state: RunState) -> RunState:
    if given.is_fixed(ctx):  # --label-mode fixed: the given labels are the taxonomy
        return seeded.fixed_taxonomy(ctx, state)
    if ctx.config.proposal == "clusters":
        return (seeded.propose_clusters if given.has_seeds(ctx) else clusters.propose)(ctx, state)
    return taxonomy.propose(ctx, state)  # given labels, if any, are kept inside the minibatch steps


def review(ctx: RunContext, state: RunState) -> RunState:
    """The LLM's last pass over the taxonomy: merging cluster candidates, or the paper's data-free review."""
    if given.is_fixed(ctx):
        return seeded.fixed_review(ctx, state)
    if ctx.config.proposal == "clusters":
        return (seeded.merge if given.has_seeds(ctx) else clusters.merge)(ctx, state)
    return taxonomy.review(ctx, state)


STEPS = [("sample", sample), ("summarize", summarize), ("propose", propose), ("update", update),
         ("review", review), ("approve", approve), ("label", label), ("recheck", recheck), ("train", train),
         ("predict", predict), ("hierarchy", hierarchy)]


def checkpoint_path(db_path: str) -> Path:
    return Path(f"{db_path}.checkpoints.sqlite")


@contextmanager
def open_checkpointer(db_path: str) -> Iterator[SqliteSaver]:
    conn = sqlite3.connect(str(checkpoint_path(db_path)), check_same_thread=False)
    try:
        yield SqliteSaver(conn)
    finally:
        conn.close()


def build_graph(ctx: RunContext, checkpointer: SqliteSaver):
    g = StateGraph(RunState)
    for name, fn in STEPS:
        g.add_node(name, partial(fn, ctx))
    g.add_edge(START, "sample")
    g.add_edge("sample", "summarize")
    g.add_edge("summarize", "propose")
    g.add_conditional_edges("propose", partial(more_batches, ctx), ["update", "review"])
    g.add_conditional_edges("update", partial(more_batches, ctx), ["update", "review"])
    g.add_edge("review", "approve")
    g.add_edge("approve", "label")
    g.add_edge("label", "recheck")  # a no-op unless the run asked for --recheck
    g.add_edge("recheck", "train")
    g.add_edge("train", "predict")
    g.add_edge("predict", "hierarchy")  # a no-op unless the run asked for --levels 2
    g.add_edge("hierarchy", END)
    return g.compile(checkpointer=checkpointer)
