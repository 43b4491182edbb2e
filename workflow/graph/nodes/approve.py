"""Human review as a graph interrupt: the run pauses after the final LLM review until a person approves.

Edits made meanwhile (`tnt review`) are new taxonomy versions; whatever version is latest on resume is the one
documents get labeled with.
"""

from __future__ import annotations

from langgraph.types import interrupt

from workflow.graph.context import RunContext
from workflow.graph.state import RunState


def approve(ctx: RunContext, state: RunState) -> RunState:
    if not ctx.config.auto_approve and not state.get("approved_version"):  # approved once: not asked again
        ctx.store.set_run_stage(ctx.run_id, "awaiting review", status="paused")
        interrupt({"run_id": ctx.run_id, "taxonomy_version": state.get("taxonomy_version")})
    version, _ = ctx.store.taxonomy(ctx.run_id)
    ctx.stage("approved")
    return {"approved_version": version}
