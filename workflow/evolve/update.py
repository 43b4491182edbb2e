"""`tnt update RUN NEW_CORPUS`: grow a finished run's taxonomy on new documents without starting over.

1. The new documents join the run's corpus and are classified by the run's classifier; drift figures per batch
   are compared with the run's own documents its classifier never trained on (workflow/evolve/drift.py: the
   held-out split and the unlabeled documents; a rise counts when it passes a threshold and sampling noise) and
   stored in `drift`.
2. Only when some batch drifts (or `new_labels="always"`; "never" skips it), the documents the taxonomy does not
   explain (workflow/evolve/novelty.py: predicted Other, or less typical than most of the run's held-out documents
   by the classifier's confidence or by the distance to the nearest training document) feed a proposal made by the
   run's own taxonomy machinery (the summarize/propose/update graph nodes, called on a child run `<run>-update<k>`
   whose sample is those documents alone). Without drift the unexplained documents are the run's usual share of
   Other and of atypical documents: labels proposed from them duplicated existing ones ("Refund / money / bought"
   beside "Money / refund / cash") and took documents from them. The report says "no drift: no labels added".
3. Proposed labels that the taxonomy lacks are added as a new taxonomy version through `Store.apply_review`
   (action "update"): existing ids never change and the edit is in the review log like a human one. A proposed
   label that duplicates an existing one (workflow/evolve/duplicates.py: same content words; its documents closer
   to an existing label's than any two existing labels are; shared words and documents closer to that label than
   its nearest neighbour; near-identical name and description) is merged into it (its documents are placed under it) or,
   without documents, refused; the report and the review log list both, with the rule and the similarity.
4. Only what is needed is pseudo-labeled, in rounds on one budget: first the documents each new label was built
   from (its seeds), then, LABEL_ROUNDS times, the new documents on a new label's border by an interim classifier
   (retrained on what is labeled so far, no model call): a new label among their two most probable, the least sure
   first, spread out; the most novel unexplained documents fill what is left; a small stratified refresh of the
   explained ones (at most a quarter of the budget) comes out of the same budget, so the update costs at most
   budget label calls. The classifier is retrained with the old model's held-out documents kept out (the new
   documents left unlabeled join its fit where it is sure of them: self-training), and the report compares old
   and new classifier on that held-out set, so a regression cannot pass silently.

The steps are a LangGraph graph with its own state (`UpdateState`), checkpointed like a run's graph in the same
file under the thread "<run>:update<k>": an interrupted update resumes at the step it was in (each step is
idempotent and the gateway cache answers repeated calls), and `--review` is a graph interrupt after step 3 that the
same command resumes. An update already done on the same documents is reported, not redone. The `updates` table
keeps each update's key, status, a copy of its state and its report.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypedDict

import numpy as np
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, interrupt

from workflow.classify.export import classifier_to_bytes
from workflow.classify.fit import fit_on_run, held_out_ids
from workflow.classify.loader import from_store
from workflow.classify.predict import predict_corpus
from workflow.classify.train import agreement
from workflow.classify.vectors import embed_documents
from workflow.config import JobConfig
from workflow.evolve import drift, novelty
from workflow.evolve.duplicates import CENTROID_FLOOR, name_tokens, screen, screen_proposal
from workflow.graph.context import RunContext, RunFailed, log
from workflow.graph.state import RunState
from workflow.ingest import read_corpus
from workflow.llm.gateway import Usage
from workflow.store import OTHER_ID, Label, Store, StoreError, text_hash


class UpdateError(ValueError):
    """The update cannot run as asked; the message says what to do."""


NEW_LABELS = ("auto", "always", "never")  # when an update may add labels: on drift only (default), always, never
FORCED_KEY = "+new-labels"  # suffix of the key of an update forced to propose after one that did not
_CHOSEN_SKIPS = ("skipped: no drift", "skipped: --new-labels never")  # proposals not made by choice
SEED_SHARE = 1 / 3  # of the label budget, for the documents the new labels were built from
LABEL_ROUNDS = 4  # interim classifiers that point the rest of the budget at the new labels' documents


def _key(records: list[tuple[str, str, dict]]) -> str:
    h = hashlib.sha256()
    for d, t, _ in sorted(records, key=lambda r: r[0]):
        h.update(f"{d}\x1f{text_hash(t)}\x1e".encode())
    return h.hexdigest()[:32]


def _add_usage(total: dict, usage: Usage) -> None:
    total["calls"] += usage.calls
    total["cached"] += usage.cached
    total["failed"] += usage.failed


def _child_cap(config: JobConfig, n_docs: int, max_new_labels: int) -> int:
    """Most labels the proposal on n_docs unexplained documents may keep. Cluster-seeded proposal over-clusters to
    cluster_factor x max_labels but never below MIN_CLUSTER_DOCS documents a cluster, and its merge must keep a
    share of max_labels: a cap sized for the whole corpus (e.g. 77) on a few hundred documents would forbid any
    real merge and leave every candidate a label. So the cap is what the documents can support."""
    if config.proposal != "clusters":
        return max_new_labels
    from workflow.clustering import MIN_CLUSTER_DOCS

    supported = math.ceil(n_docs / (MIN_CLUSTER_DOCS * config.cluster_factor))
    return max(2, min(max_new_labels, supported))


def _proposal_graph(ctx: RunContext):
    """The run graph's proposal steps on their own: summarize -> propose -> update* (-> review, the merge of
    over-clustered candidates, for a cluster-seeded proposal). Not checkpointed: each step finds its finished work
    in the store (summaries, taxonomy versions) and the gateway cache answers its calls again."""
    from workflow.graph.build import propose, review
    from workflow.graph.nodes.summarize import summarize
    from workflow.graph.nodes.taxonomy import more_batches, update

    clusters = ctx.config.proposal == "clusters"
    g = StateGraph(RunState)
    for name, fn in (("summarize", summarize), ("propose", propose), ("update", update)) + (
            (("review", review),) if clusters else ()):
        g.add_node(name, partial(fn, ctx))
    g.add_edge(START, "summarize")
    g.add_edge("summarize", "propose")
    route = {"update": "update", "review": "review" if clusters else END}
    g.add_conditional_edges("propose", partial(more_batches, ctx), route)
    g.add_conditional_edges("update", partial(more_batches, ctx), route)
    if clusters:
        g.add_edge("review", END)
    return g.compile(checkpointer=False)


def _propose(store: Store, run_id: str, update_id: int, doc_ids: list[str], config: JobConfig,
             show_progress: bool, usage: dict, max_new_labels: int) -> tuple[list[Label], dict[str, str]]:
    """The run's own proposal machinery (config.proposal: cluster-seeded or minibatch, the graph's proposal steps,
    `_proposal_graph`) on a child run whose phase-1 sample is the unexplained documents alone. Returns the child's
    labels and, for cluster-seeded proposals, the documents each label was built from."""
    from workflow.runner import run_context

    run = store.run(run_id)
    child = f"{run_id}-update{update_id}"
    try:
        store.run(child)
    except StoreError:
        cfg = config.model_copy(update={"max_labels": _child_cap(config, len(doc_ids), max_new_labels), "levels": 1})
        store.create_run(run["corpus"], cfg.use_case, cfg.model_dump() | {"update_of": run_id}, run_id=child)
    if not store.sample(child, 1):
        store.save_sample(child, 1, doc_ids, config.batch_size)
    ctx = run_context(store, child, show_progress)
    try:
        _proposal_graph(ctx).invoke({}, {"recursion_limit": store.n_batches(child, 1) + 10})
        store.set_run_stage(child, "done", status="done")
    except RunFailed as exc:
        store.set_run_stage(child, "propose", status="failed", error=str(exc))
        log.warning("update: no labels proposed (%s)", exc)
        return [], {}
    finally:
        _add_usage(usage, ctx.gateway.usage)
    return store.taxonomy(child)[1], store.cluster_members(child)


def _refresh(ids: list[str], predicted: list[str], per_label: int, seed: int) -> list[str]:
    """Up to per_label explained documents of each predicted label: keeps every old label in the new training."""
    rng = random.Random(seed)
    by_label: dict[str, list[str]] = {}
    for d, lab in zip(ids, predicted):
        by_label.setdefault(lab, []).append(d)
    out: list[str] = []
    for lab in sorted(by_label):
        docs = by_label[lab]
        out += rng.sample(docs, min(per_label, len(docs)))
    return out


def _accuracy(pred: dict[str, str], truth: dict[str, str]) -> dict:
    ids = sorted(set(pred) & set(truth))
    if not ids:
        return {"n": 0, "accuracy": None, "macro_f1": None}
    a = agreement([truth[d] for d in ids], [pred[d] for d in ids])
    return {"n": len(ids), "accuracy": a["accuracy"], "macro_f1": a["macro_f1"]}


class UpdateState(TypedDict, total=False):
    """What an update has decided so far: ids, counts and figures (documents, labels and models live in DuckDB).
    Checkpointed by LangGraph like a run's state, and mirrored into `updates.state` for reports and audits."""

    # set when the update starts
    model_before: str  # the classifier that judged the new documents
    held_out: list[str]  # its test split: kept out of every fit, so old and new are compared on it
    version_before: int
    source: str
    n_new: int
    # propose (steps 1-3)
    added: list[str]  # label ids added to the taxonomy
    proposal: str  # "done", or "skipped: why"
    new_labels: str
    to_label: list[str]  # the new labels' seed documents (or the most novel ones), then the refresh
    budget: int
    reserve: list[str]  # the most novel documents, for rounds the interim classifier cannot fill
    merged: list[dict]
    refused: list[dict]
    n_unexplained: int
    n_seeds: int
    n_refresh: int
    baseline: dict
    drift_batches: list[int]
    drift_why: dict[str, list[str]]
    figures: list[dict]
    # step 4
    rounds: list[list[str]]  # documents of each labeling round, stored before they are labeled
    model_after: str
    report: dict  # what update_run returns; the update is done once it is stored


@dataclass
class UpdateContext:
    """What every update step needs besides the state: the run's context (settings, store, gateway) and the
    options of this invocation (a resumed update takes the options it is resumed with)."""

    ctx: RunContext
    update_id: int
    key: str
    new_ids: list[str]
    review: bool = False
    label_budget: int | None = None
    proposal_sample: int | None = None
    refresh_per_label: int = 3
    max_new_labels: int | None = None
    drift_batch: int = 500
    new_labels: str = "auto"
    usage: dict = field(default_factory=lambda: {"calls": 0, "cached": 0, "failed": 0})

    @property
    def store(self) -> Store:
        return self.ctx.store

    @property
    def run_id(self) -> str:
        return self.ctx.run_id

    def save(self, state: UpdateState, status: str, report: dict | None = None) -> None:
        self.store.save_update(self.run_id, self.update_id, self.key, status, _plain(dict(state)), report)


def _plain(value: Any) -> Any:
    """Numpy scalars as Python numbers, so the state checkpoints and stores as plain JSON."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value.item() if isinstance(value, np.generic) else value


# -- steps (the update graph's nodes) ----------------------------------------------------------------------------

def propose_labels(u: UpdateContext, state: UpdateState) -> UpdateState:
    """Steps 1-3: drift figures, the unexplained documents, a proposal when the data drifted, the new taxonomy
    version, and what to label first."""
    store, ctx, run_id, update_id = u.store, u.ctx, u.run_id, u.update_id
    config, corpus, new_ids = ctx.config, ctx.corpus, u.new_ids
    old = from_store(store, state["model_before"])
    base = drift.baseline(store, old, run_id, corpus, state["held_out"], exclude=new_ids)
    X = embed_documents(store, corpus, new_ids, old.embedding_model)
    figs, _ = drift.batched_figures(old, X, base, u.drift_batch)
    store.save_drift(state["model_before"], f"update {update_id}",
                     [(f.batch, f.n, f.other_share, f.uncertain_share, f.centroid_distance) for f in figs],
                     base.as_dict())
    why = {f.batch: f.drifted(base) for f in figs}
    drifted = [b for b, w in why.items() if w]
    unexplained_ids = novelty.ranked(new_ids, _novelty(store, old, run_id, corpus, state["held_out"], X))
    pool = list(unexplained_ids)  # the proposal sees a random sample: rarer kinds stay in view
    random.Random(config.seed).shuffle(pool)
    budget = u.label_budget if u.label_budget is not None else max(20, config.label_sample // 4)
    # proposing costs naming calls only (no labels), so it sees more documents than are labeled: a kind of
    # document too rare in a small sample gets no cluster of its own and no label
    n_sample = u.proposal_sample if u.proposal_sample is not None else max(20, config.taxonomy_sample // 2)
    idx = old.classify(X)[0]
    unexplained = set(unexplained_ids)
    explained = [(d, old.labels[i]) for d, i in zip(new_ids, idx.tolist()) if d not in unexplained]
    refresh = _refresh([d for d, _ in explained], [lab for _, lab in explained], u.refresh_per_label, config.seed)
    if len(refresh) > budget // 4:  # the refresh is part of the budget, and the smaller part
        refresh = sorted(random.Random(config.seed).sample(refresh, budget // 4))
    spend = max(1, round((budget - len(refresh)) * SEED_SHARE))
    added: list[Label] = []
    seeds: list[str] = []
    merged: list[dict] = []
    refused: list[dict] = []
    into: dict[str, str] = {}
    if u.new_labels == "never":
        proposal = "skipped: --new-labels never"
    elif u.new_labels == "auto" and not drifted:
        proposal = "skipped: no drift"
    elif len(pool) < 5:
        proposal = f"skipped: {len(pool)} unexplained documents, too few to propose from"
    else:
        proposal = "done"
        cap = u.max_new_labels or config.max_labels
        proposed, members = _propose(store, run_id, update_id, pool[:n_sample], config, ctx.show_progress,
                                     u.usage, cap)
        _, current = store.taxonomy(run_id)
        novel, merged, refused = screen_proposal(config, proposed, members, current, base, new_ids, X, cap)
        new_id = dict(zip([lb.label_id for lb in novel], store.fresh_label_ids(run_id, len(novel))))
        added = [Label(new_id[lb.label_id], lb.name, lb.description) for lb in novel]
        if added:
            store.apply_review(run_id, action="update", reviewer="tnt update", labels=[*current, *added],
                               details={"update_id": update_id, "source": state["source"],
                                        "added": [{"label_id": a.label_id, "name": a.name} for a in added],
                                        "merged": [{k: v for k, v in m.items() if k != "docs"} for m in merged],
                                        "refused": refused})
        # a new label sits where the documents it was built from are (labeling shortlists use this); the
        # documents of a duplicate count as the existing label's
        placed = {d: new_id[lid] for d, lid in members.items() if lid in new_id}
        into = {d: m["into"] for m in merged for d in m["docs"]}
        store.add_cluster_members(run_id, placed | into)
        seeds = _seeds([d for d in pool[:n_sample] if d in placed], placed, spend)
        if not seeds and into:  # no new label: the merged documents, to teach the labels they joined
            seeds = _seeds([d for d in pool[:n_sample] if d in into], into, spend)
    if proposal != "done":
        log.info("update: no labels proposed (%s)", proposal)
    # nothing added: the most novel documents are labeled instead (old labels or Other may still fit them)
    work = seeds or unexplained_ids[:spend]
    taken = set(work)
    decided: UpdateState = _plain({
        "added": [a.label_id for a in added], "to_label": work + refresh, "budget": budget,
        "proposal": proposal, "new_labels": u.new_labels, "drift_why": {str(b): w for b, w in why.items() if w},
        "merged": [{k: v for k, v in m.items() if k != "docs"} | {"n_docs": len(m["docs"])} for m in merged],
        "refused": refused,
        "reserve": [d for d in dict.fromkeys([*sorted(into), *unexplained_ids]) if d not in taken][:budget],
        "n_unexplained": len(unexplained_ids), "n_seeds": len(seeds), "n_refresh": len(refresh),
        "baseline": base.as_dict(), "drift_batches": drifted, "figures": [vars(f) for f in figs]})
    u.save(state | decided, "proposed")
    return decided


def await_review(u: UpdateContext, state: UpdateState) -> UpdateState:
    """With --review, the update pauses here (a graph interrupt, like a run's approval) once labels were added;
    the same `tnt update` run again goes on from here."""
    if u.review and state["added"]:
        u.store.set_run_stage(u.run_id, f"update {u.update_id}: awaiting review", status="paused")
        interrupt({"run_id": u.run_id, "update_id": u.update_id, "added": state["added"]})
    return {}


def label_first(u: UpdateContext, state: UpdateState) -> UpdateState:
    """Step 4a: pseudo-label the seeds and the refresh (the first part of the budget)."""
    u.store.set_run_stage(u.run_id, f"update {u.update_id}")
    rounds = state.get("rounds", [])  # an update begun by a tnt without this graph may have rounds already
    _label_docs(u, [*state["to_label"], *(d for r in rounds for d in r)])
    u.save(state | {"rounds": rounds}, "labeling")
    return {"rounds": rounds}


def pick_round(u: UpdateContext, state: UpdateState) -> UpdateState:
    """Step 4b: the next round's documents, chosen by an interim classifier (no model call) and stored before
    they are labeled, so a resumed update labels the same ones."""
    left = LABEL_ROUNDS - len(state["rounds"])
    picked = _next_round(u.store, u.run_id, u.ctx.corpus, u.ctx.config, state, u.new_ids, left)
    rounds = [*state["rounds"], picked]
    u.save(state | {"rounds": rounds}, "labeling")
    return {"rounds": rounds}


def label_round(u: UpdateContext, state: UpdateState) -> UpdateState:
    _label_docs(u, state["rounds"][-1])
    return {}


def retrain(u: UpdateContext, state: UpdateState) -> UpdateState:
    """Step 4c: retrain with the old held-out documents kept out (the unlabeled new ones self-train), predict the
    corpus, and place new labels in the hierarchy if the run has one."""
    store, run_id, config, corpus = u.store, u.run_id, u.ctx.config, u.ctx.corpus
    version = store.taxonomy(run_id)[0]
    fitted = fit_on_run(store, run_id, corpus, config, progress=u.ctx.show_progress, held_out=state["held_out"],
                        unlabeled=u.new_ids)
    if fitted is None:
        raise UpdateError("no labeled documents to train on")
    model_id = store.save_model(run_id, algorithm=fitted.clf.algorithm, embedding_model=fitted.embedding_model,
                                taxonomy_version=version, metrics=fitted.metrics | {"update_id": u.update_id},
                                artifact=classifier_to_bytes(fitted.clf))
    predict_corpus(store, model_id, corpus, run_id, show_progress=u.ctx.show_progress)
    if state["added"] and store.parents(run_id):
        from workflow.graph.nodes.hierarchy import build_hierarchy

        build_hierarchy(store, u.ctx.gateway, run_id, config, only=state["added"])
    return {"model_after": model_id}


def report(u: UpdateContext, state: UpdateState) -> UpdateState:
    """Step 4d: the report: old and new classifier on the same held-out documents, what moved, what it cost."""
    _add_usage(u.usage, u.ctx.gateway.usage)
    return {"report": _report(u.store, u.run_id, u.update_id, state, state["model_after"], u.usage,
                              u.store.find_update(u.run_id, u.key)["created_at"])}


def _first_step(state: UpdateState) -> str:
    return "label_first" if "added" in state else "propose_labels"  # "added": begun by a tnt without this graph


def _after_labeling(state: UpdateState) -> str:
    return "pick_round" if len(state["rounds"]) < LABEL_ROUNDS else "retrain"


def build_update_graph(u: UpdateContext, saver: Any):
    """propose_labels -> await_review (interrupt with --review) -> label_first -> (pick_round -> label_round) x
    LABEL_ROUNDS -> retrain -> report, checkpointed beside the run's own graph under its own thread."""
    g = StateGraph(UpdateState)
    for fn in (propose_labels, await_review, label_first, pick_round, label_round, retrain, report):
        g.add_node(fn.__name__, partial(fn, u))
    g.add_conditional_edges(START, _first_step, ["propose_labels", "label_first"])
    g.add_edge("propose_labels", "await_review")
    g.add_edge("await_review", "label_first")
    g.add_conditional_edges("label_first", _after_labeling, ["pick_round", "retrain"])
    g.add_edge("pick_round", "label_round")
    g.add_conditional_edges("label_round", _after_labeling, ["pick_round", "retrain"])
    g.add_edge("retrain", "report")
    g.add_edge("report", END)
    return g.compile(checkpointer=saver)


def update_run(store: Store, run_id: str, source: str, *, text_field: str = "text", id_field: str | None = "id",
               review: bool = False, show_progress: bool = True, label_budget: int | None = None,
               proposal_sample: int | None = None, refresh_per_label: int = 3, max_new_labels: int | None = None,
               drift_batch: int = 500, new_labels: str = "auto") -> dict:
    """Run (or continue) an update of ``run_id`` with the documents of ``source``; returns its report.

    ``new_labels``: "auto" proposes labels only when some batch of the new documents drifts from the run's own
    documents (drift.py), "always" proposes whatever the drift, "never" adds no labels (label, retrain, report)."""
    from workflow.graph.build import open_checkpointer
    from workflow.runner import run_context

    if new_labels not in NEW_LABELS:
        raise UpdateError(f"new_labels must be one of {', '.join(NEW_LABELS)}, not {new_labels!r}")
    run = store.run(run_id)
    config = run.config
    if config.multi_label:
        raise UpdateError("`tnt update` supports single-label runs only")
    records = read_corpus(source, text_field, id_field).records
    key = _key(records)
    existing = store.find_update(run_id, key)
    forced = store.find_update(run_id, key + FORCED_KEY)
    if new_labels == "always" and existing and existing["state"].get("proposal") in _CHOSEN_SKIPS:
        # the update of these documents chose not to propose (no drift, or --new-labels never): this one does
        if existing["status"] != "done":
            raise UpdateError(f"update {existing['update_id']} of these documents, without new labels, is not "
                              "finished: run it again as before, then with --new-labels always")
        key, existing = key + FORCED_KEY, forced
    elif forced and (existing is None or existing["status"] == "done"):
        key, existing = key + FORCED_KEY, forced  # the latest update of these documents is the forced one
    if existing and existing["status"] == "done":
        return existing["report"] | {"already_done": True}
    if not existing and run["status"] != "done":
        raise UpdateError(f"run '{run_id}' is {run['status']}; finish it first (`tnt resume {run_id}`)")
    store.insert_documents(run.corpus, records)  # StoreError on an id clash: nothing is lost
    new_ids = list(dict.fromkeys(d for d, _, _ in records))

    if existing:
        update_id, started = existing["update_id"], existing["state"]
    else:
        model_row = store.latest_model(run_id)
        if model_row is None:
            raise UpdateError(f"run '{run_id}' has no classifier to classify new documents with")
        started = {"model_before": model_row["model_id"],
                   "held_out": held_out_ids(store, run_id, config, model_row["model_id"]),
                   "version_before": store.taxonomy(run_id)[0], "source": source, "n_new": len(new_ids)}
        update_id = store.save_update(run_id, None, key, "started", started)
    store.set_run_stage(run_id, f"update {update_id}")
    thread = {"configurable": {"thread_id": f"{run_id}:update{update_id}"}, "recursion_limit": 4 * LABEL_ROUNDS + 20}
    ctx = run_context(store, run_id, show_progress)
    u = UpdateContext(ctx, update_id, key, new_ids, review=review, label_budget=label_budget,
                      proposal_sample=proposal_sample, refresh_per_label=refresh_per_label,
                      max_new_labels=max_new_labels, drift_batch=drift_batch, new_labels=new_labels)
    with open_checkpointer(store.path) as saver:
        graph = build_update_graph(u, saver)
        snapshot = graph.get_state(thread)
        if any(t.interrupts for t in snapshot.tasks):
            graph.invoke(Command(resume={"approved": True}), thread)
        elif snapshot.next:
            graph.invoke(None, thread)  # interrupted mid-way: the checkpoint knows where
        elif "report" not in snapshot.values:
            graph.invoke(started, thread)  # a new update, or one begun by a tnt without this graph (its stored state)
        snapshot = graph.get_state(thread)
        if any(t.interrupts for t in snapshot.tasks):
            return {"status": "review", "update_id": update_id, "added": snapshot.values["added"],
                    "message": f"new labels proposed: review them with `tnt review {run_id}`, then run the same "
                               "`tnt update` again to label, retrain and report"}
        state = snapshot.values
        _sync_graph(ctx, saver, state["model_after"])
    u.save(state, "done", state["report"])
    store.set_run_stage(run_id, "done", status="done")
    return state["report"]


def _label_docs(u: UpdateContext, doc_ids: list[str]) -> None:
    """Pseudo-label documents with the latest taxonomy through the graph's label node (phase-2 sample grows)."""
    from workflow.graph.nodes.label import label

    u.store.extend_sample(u.run_id, 2, doc_ids, u.ctx.config.batch_size, round=None)  # earlier rows keep rounds
    label(u.ctx, {"approved_version": u.store.taxonomy(u.run_id)[0]})


def _novelty(store: Store, model: Any, run_id: str, corpus: str, held_out: list[str], X: Any) -> novelty.Novelty:
    """Novelty of the new documents' vectors X, against the run's training documents and calibrated on its
    held-out ones (the split the old classifier never trained on)."""
    labels = store.training_labels(run_id)
    held = [d for d in held_out if d in labels]
    train = sorted(set(labels) - set(held))
    return novelty.score(model, X, embed_documents(store, corpus, train, model.embedding_model),
                         embed_documents(store, corpus, held, model.embedding_model))


def _seeds(doc_ids: list[str], label_of: dict[str, str], n: int) -> list[str]:
    """Up to n of the documents the new labels were built from, taking turns between labels (in doc_ids' order
    within a label), so that every new label gets examples before any gets many."""
    queues: dict[str, list[str]] = {}
    for d in doc_ids:
        queues.setdefault(label_of[d], []).append(d)
    out: list[str] = []
    while len(out) < n and any(queues.values()):
        for lab in sorted(queues):
            if queues[lab] and len(out) < n:
                out.append(queues[lab].pop(0))
    return out


def _next_round(store: Store, run_id: str, corpus: str, config: JobConfig, state: dict, new_ids: list[str],
                rounds_left: int) -> list[str]:
    """Documents for the next labeling round: a share of what is left of the budget (all of it in the last
    round). First the unlabeled new documents on a new label's border, by an interim classifier trained now on
    what is labeled (no model call; `_border_rows`); then the most novel of the unexplained ones."""
    from workflow.classify.loader import ServingModel
    from workflow.classify.train import TrainingError

    labeled = set(store.training_labels(run_id))
    used = len(state["to_label"]) + sum(len(r) for r in state["rounds"])  # the refresh included
    n = math.ceil(max(0, state["budget"] - used) / max(1, rounds_left))
    picked: list[str] = []
    if state["added"] and n:
        try:
            fitted = fit_on_run(store, run_id, corpus, config, progress=False, held_out=state["held_out"],
                                unlabeled=())  # interim: fast, no self-training
        except TrainingError:
            fitted = None
        if fitted is not None:
            interim = ServingModel(fitted.clf, list(fitted.clf.labels), fitted.embedding_model, "interim", [])
            pool = [d for d in new_ids if d not in labeled]
            X = embed_documents(store, corpus, pool, interim.embedding_model)
            rows = _border_rows(interim.proba(X), interim.labels, set(state["added"]), X, n,
                                seed=config.seed + rounds_left)
            picked = [pool[i] for i in rows]
    taken = set(picked) | labeled
    picked += [d for d in state["reserve"] if d not in taken][: n - len(picked)]
    return picked


def _border_rows(P: np.ndarray, labels: Sequence[str], added: set[str], X: np.ndarray, n: int, *,
                 seed: int = 0) -> np.ndarray:
    """Rows of up to n documents to label next, from an interim classifier's probabilities P: among the documents
    whose two most probable labels include a new one, the least sure (top-1 minus top-2), spread over the
    embedding space (workflow.classify.active.diverse_uncertain, as `--label-selection active` picks).

    Why the border and not the core: the documents a new label was built from already show its core, and
    where the interim model is sure, a label teaches it little. Where a new label meets an old one, a label
    moves the boundary, and that is where the new intents' documents are lost to old labels. On
    benchmarks/bench_update.py (17 new intents, 500 labels) new-intent coverage went from 67.9% with the most
    confident documents first to 78.2% / 79.6% / 79.7% with two / three / four border rounds, and old-label accuracy
    from -0.5 to -0.7 / -0.6 / -0.1 points."""
    from workflow.classify.active import diverse_uncertain

    if not len(P) or n <= 0 or P.shape[1] < 2:
        return np.zeros(0, dtype=np.int64)
    is_new = np.array([lab in added for lab in labels])
    top2 = np.argsort(-P, axis=1, kind="stable")[:, :2]
    cand = np.flatnonzero(is_new[top2].any(axis=1))
    if not len(cand):
        return np.zeros(0, dtype=np.int64)
    two = np.take_along_axis(P[cand], top2[cand], axis=1)
    return cand[diverse_uncertain(X[cand], two[:, 0] - two[:, 1], min(n, len(cand)), seed=seed)]


def _report(store: Store, run_id: str, update_id: int, state: dict, model_id: str, usage: dict, started: Any) -> dict:
    before, after = store.predictions(state["model_before"]), store.predictions(model_id)
    truth = store.training_labels(run_id)
    held = {d: truth[d] for d in state["held_out"] if d in truth}
    moved = Counter((before[d], after[d]) for d in before if d in after and before[d] != after[d])
    names = {lb.label_id: lb.name for lb in store.taxonomy(run_id)[1]} | {OTHER_ID: "Other"}
    llm = store.label_counts(run_id, "llm")
    pred = store.prediction_counts(model_id)
    return {
        "status": "done", "update_id": update_id, "model_before": state["model_before"], "model_after": model_id,
        "n_new": state["n_new"], "n_unexplained": state["n_unexplained"],
        "n_labeled": len(state["to_label"]) + sum(len(r) for r in state["rounds"]),
        "n_seeds": state.get("n_seeds", 0), "n_rounds": [len(r) for r in state["rounds"]],
        "n_refresh": state["n_refresh"], "drift_batches": state["drift_batches"], "baseline": state["baseline"],
        "figures": state["figures"], "drift": bool(state["drift_batches"]), "drift_why": state.get("drift_why", {}),
        "new_labels": state.get("new_labels", "always"), "proposal": state.get("proposal", "done"),
        "labels_note": _labels_note(state), "merged": state.get("merged", []), "refused": state.get("refused", []),
        "added": [{"label_id": a, "name": names.get(a, a), "llm_docs": llm.get(a, 0), "predicted": pred.get(a, 0)}
                  for a in state["added"]],
        "moved": sum(moved.values()),
        "top_moves": [{"from": names.get(a, a), "to": names.get(b, b), "n": n} for (a, b), n in moved.most_common(5)],
        "held_out": {"old": _accuracy({d: before[d] for d in held if d in before}, held),
                     "new": _accuracy({d: after[d] for d in held if d in after}, held)},
        "calls": store.calls_since([run_id, f"{run_id}-update{update_id}"], started),
        "cached_this_time": usage["cached"],
    }


def _labels_note(state: dict) -> str:
    """One line on why labels were or were not added."""
    proposal, n = state.get("proposal"), len(state["added"])
    if proposal is None:  # an update begun by an older tnt, which always proposed
        return f"{n} labels added"
    if proposal == "skipped: no drift":
        return ("no drift: no labels added (no batch of new documents differs from the run's own documents; "
                "`--new-labels always` proposes labels anyway)")
    if proposal.startswith("skipped: "):
        return f"no labels added ({proposal[len('skipped: '):]})"
    merged, refused = len(state.get("merged", [])), len(state.get("refused", []))
    dupes = f"; {merged} proposed labels merged into existing ones, {refused} refused" if merged + refused else ""
    why = "drift" if state.get("drift_batches") else "no drift, --new-labels always"
    return f"{why}: {n} labels added{dupes}"


def _sync_graph(ctx: RunContext, saver: Any, model_id: str) -> None:
    """Tell the run's checkpoint about the new version and model, so `tnt resume` does not redo the update."""
    from workflow.graph.build import build_graph

    cfg: dict[str, Any] = {"configurable": {"thread_id": ctx.run_id}}
    graph = build_graph(ctx, saver)
    if graph.get_state(cfg).values:
        graph.update_state(cfg, {"approved_version": ctx.store.taxonomy(ctx.run_id)[0], "model_id": model_id},
                           as_node="hierarchy")


__all__ = ["CENTROID_FLOOR", "NEW_LABELS", "UpdateError", "UpdateState", "build_update_graph", "name_tokens",
           "screen", "update_run"]
