"""Start, resume and report runs: glue between the CLI, the store, the gateway and the graph."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from langgraph.types import Command

from workflow.config import JobConfig
from workflow.graph.build import build_graph, open_checkpointer
from workflow.graph.context import RunContext, RunFailed
from workflow.ingest import IngestReport, default_corpus_name
from workflow.ingest_stage import StagedCorpus, ingest_stream, insert_staged
from workflow.llm.base import FatalModelError
from workflow.llm.gateway import BudgetExceeded, Gateway, Usage
from workflow.store import Store


@dataclass
class Outcome:
    run_id: str
    status: str  # done | paused | stopped | failed
    message: str
    usage: Usage


def ingest(store: Store, source: Any, *, text_field: str = "text", id_field: str | None = "id",
           corpus: str | None = None, report: IngestReport | None = None,
           staged: StagedCorpus | None = None) -> tuple[str, IngestReport, int]:
    """Read a corpus into the store under a name; returns (name, report, new docs).

    ``source``: a file path (.jsonl/.csv/.parquet) or ``file.duckdb:table``, a pandas DataFrame, or an iterable of
    texts or dicts. It streams into DuckDB in batches (memory stays flat with the corpus size); the name defaults
    to the file's stem, or "records" for in-memory data. Pass ``report`` (read_corpus's records) or ``staged``
    (stage_corpus's result, e.g. validated before the database was opened) to avoid reading the corpus twice."""
    name = corpus or default_corpus_name(source)
    if report is not None and report.records:
        added, _ = store.insert_documents(name, report.records)
        return name, report, added
    if staged is not None:
        added, _ = insert_staged(store, name, staged)
        return name, staged.report, added
    report, added = ingest_stream(store, source, name, text_field, id_field)
    return name, report, added


def start(store: Store, source: str, config: JobConfig, *, show_progress: bool = True, **ingest_options) -> Outcome:
    """Ingest a corpus and run the whole job on it: the Python equivalent of `tnt run`."""
    name, _, _ = ingest(store, source, **ingest_options)
    run_id = store.create_run(name, config.use_case, config.model_dump())
    return execute(store, run_id, show_progress=show_progress)


def run_context(store: Store, run_id: str, show_progress: bool, overrides: dict | None = None,
                retry_failed: bool = False) -> RunContext:
    """What a run's steps need (config, store, gateway), for the graph and for `tnt hierarchy` / `tnt update`."""
    run = store.run(run_id)
    config = run.config_with(overrides)
    gateway = Gateway(
        store, run_id, api_base=config.api_base, concurrency=config.concurrency, max_attempts=config.max_attempts,
        timeout_s=config.timeout_s, max_cost=config.max_cost, temperature=config.temperature, seed=config.seed,
        show_progress=show_progress, structured_output=config.structured_output, retry_failed=retry_failed,
        redact_pii=config.redact_pii,
    )
    return RunContext(run_id, run["corpus"], config, store, gateway, show_progress)


def execute(store: Store, run_id: str, *, show_progress: bool = True, overrides: dict | None = None,
            retry_failed: bool = False) -> Outcome:
    """Run a run's graph from wherever its checkpoint left it until it ends, pauses for review or stops.

    A run that has not finished re-enters its steps, which ask again the calls that got no answer (the provider was
    down); answers rejected by validation are answers and come from the cache. A finished run is left as it is:
    ``retry_failed`` asks both kinds again, also for a run that has finished."""
    ctx = run_context(store, run_id, show_progress, overrides, retry_failed)
    if overrides:
        store.update_run_config(run_id, ctx.config.model_dump())
    batches = max(store.n_batches(run_id, 1), ctx.config.taxonomy_sample // ctx.config.batch_size + 1)
    cfg = {"configurable": {"thread_id": run_id}, "recursion_limit": batches + 30}
    failed = store.count_failed(run_id)
    retry = retry_failed and any(failed.values())
    with open_checkpointer(store.path) as saver:
        graph = build_graph(ctx, saver)
        snapshot = graph.get_state(cfg)
        if any(t.interrupts for t in snapshot.tasks):
            payload: object = Command(resume={"approved": True})
        elif snapshot.next:
            payload = None
        elif snapshot.values:
            # -- review re-entry (tnt review) ---------------------------------------------------------------
            reason = _review_changes(store, run_id, snapshot.values)
            if not reason and not retry:
                note = (f" ({failed['summaries']} summaries and {failed['labels']} labels failed: ask them again with "
                        f"`tnt resume {run_id} --retry-failed`)" if any(failed.values()) else "")
                return Outcome(run_id, "done", "the run had already finished" + note, ctx.gateway.usage)
            # Re-enter after `approve`: label re-labels only documents without an ok LLM assignment for the
            # latest version (edits re-pointed the rest), train retrains (model_id cleared), predict re-predicts.
            if reason:
                graph.update_state(
                    cfg, {"approved_version": store.taxonomy(run_id)[0], "model_id": None}, as_node="approve"
                )
            payload = None
            # -- end review re-entry -------------------------------------------------------------------------
        else:
            payload = {"run_id": run_id}
        store.set_run_stage(run_id, store.run(run_id)["stage"], status="running")
        try:
            if retry:
                _retry_failed_summaries(ctx)  # the cluster proposal summarises inside its own step
            if payload is None and (failed["labels"] or failed["summaries"]) and (retry or snapshot.next):
                # Re-enter after sample: every node skips the work it has done (ok summaries, saved taxonomy
                # versions, the approval, ok labels), so only the failed calls are made again; a run that failed for
                # want of summaries can then go on. New labels mean a new classifier.
                graph.update_state(cfg, {"model_id": None} if failed["labels"] else {}, as_node="sample")
            graph.invoke(payload, cfg)
        except BudgetExceeded as exc:
            line = exc.line(store.total_cost(run_id))  # the calls in flight have finished and are logged
            store.set_run_stage(run_id, store.run(run_id)["stage"], status="stopped", error=line)
            return Outcome(run_id, "stopped", line, ctx.gateway.usage)
        except (RunFailed, FatalModelError) as exc:
            store.set_run_stage(run_id, store.run(run_id)["stage"], status="failed", error=str(exc))
            return Outcome(run_id, "failed", str(exc), ctx.gateway.usage)
        snapshot = graph.get_state(cfg)
    if any(t.interrupts for t in snapshot.tasks):
        store.set_run_stage(run_id, "awaiting review", status="paused")
        return Outcome(
            run_id, "paused",
            f"taxonomy ready for review: inspect with `tnt review {run_id}`, then `tnt resume {run_id}`",
            ctx.gateway.usage,
        )
    store.set_run_stage(run_id, "done", status="done")
    return Outcome(run_id, "done", "finished", ctx.gateway.usage)


def _retry_failed_summaries(ctx: RunContext) -> None:
    """Ask again the summaries that failed: the minibatch proposal reads them; the cluster proposal shows them."""
    from workflow.graph.nodes.summarize import summarize_docs

    failed = ctx.store.failed_summary_ids(ctx.run_id)
    if failed:
        summarize_docs(ctx, failed)


def _review_changes(store: Store, run_id: str, values: dict) -> str | None:
    """Why a finished run must re-label/retrain after human review edits, or None if nothing changed since."""
    latest = store.taxonomy(run_id)[0]
    if latest > (values.get("approved_version") or 0):
        return f"taxonomy v{latest} is newer than the approved v{values.get('approved_version')}"
    since = None
    if values.get("model_id"):
        since = store.model(values["model_id"])["created_at"]
    if store.reviews_since(run_id, since):
        return "human corrections since the classifier was trained"
    return None
