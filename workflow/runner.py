"""Start, resume and report runs: glue between the CLI, the store, the gateway and the graph."""

from __future__ import annotations

from dataclasses import dataclass

from langgraph.types import Command

from workflow.config import JobConfig
from workflow.graph.build import build_graph, open_checkpointer
from workflow.graph.context import RunContext, RunFailed
from workflow.llm.gateway import BudgetExceeded, Gateway, Usage
from workflow.llm.transports import FatalModelError
from workflow.store import Store


@dataclass
class Outcome:
    run_id: str
    status: str  # done | paused | stopped | failed
    message: str
    usage: Usage


def _context(store: Store, run_id: str, show_progress: bool, overrides: dict | None = None) -> RunContext:
    run = store.run(run_id)
    config = JobConfig.model_validate({**run["config"], **(overrides or {})})
    gateway = Gateway(
        store, run_id, api_base=config.api_base, concurrency=config.concurrency, max_attempts=config.max_attempts,
        timeout_s=config.timeout_s, max_cost=config.max_cost, temperature=config.temperature, seed=config.seed,
        show_progress=show_progress,
    )
    return RunContext(run_id, run["corpus"], config, store, gateway, show_progress)


def execute(store: Store, run_id: str, *, show_progress: bool = True, overrides: dict | None = None) -> Outcome:
    """Run a run's graph from wherever its checkpoint left it until it ends, pauses for review or stops."""
    ctx = _context(store, run_id, show_progress, overrides)
    if overrides:
        store.update_run_config(run_id, ctx.config.model_dump())
    batches = max(store.n_batches(run_id, 1), ctx.config.taxonomy_sample // ctx.config.batch_size + 1)
    cfg = {"configurable": {"thread_id": run_id}, "recursion_limit": batches + 30}
    with open_checkpointer(store.path) as saver:
        graph = build_graph(ctx, saver)
        snapshot = graph.get_state(cfg)
        if any(t.interrupts for t in snapshot.tasks):
            payload: object = Command(resume={"approved": True})
        elif snapshot.next:
            payload = None
        elif snapshot.values:
            return Outcome(run_id, "done", "the run had already finished", ctx.gateway.usage)
        else:
            payload = {"run_id": run_id}
        store.set_run_stage(run_id, store.run(run_id)["stage"], status="running")
        try:
            graph.invoke(payload, cfg)
        except BudgetExceeded as exc:
            store.set_run_stage(run_id, store.run(run_id)["stage"], status="stopped", error=str(exc))
            return Outcome(run_id, "stopped", str(exc), ctx.gateway.usage)
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
