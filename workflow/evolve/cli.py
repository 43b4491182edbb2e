"""`tnt hierarchy` (two levels on a finished run) and `tnt update` (grow a run's taxonomy on new documents)."""

from __future__ import annotations

from typing import Optional

import typer
from rich.table import Table

from workflow.cli import DB_OPT, _setup_logging, app, err, fail, open_store, out
from workflow.store import StoreError


@app.command("hierarchy")
def hierarchy_cmd(
    run_id: Optional[str] = typer.Argument(None, help="Run whose final labels get parents (default: the latest)."),
    db: str = DB_OPT,
    max_parents: Optional[int] = typer.Option(None, "--max-parents", min=2, help="Most parents (default: the run's)."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Group a run's final labels under at most N parents (a new taxonomy version; leaf ids do not change)."""
    from workflow.graph.nodes.hierarchy import HierarchyError, build_hierarchy
    from workflow.llm.gateway import BudgetExceeded
    from workflow.llm.transports import FatalModelError, close_transports
    from workflow.runner import _context

    _setup_logging(verbose)
    with open_store(db) as store:
        try:
            run_id = run_id or store.latest_run_id()
            ctx = _context(store, run_id, not quiet)
            version = build_hierarchy(store, ctx.gateway, run_id, ctx.config, max_parents=max_parents)
        except (StoreError, HierarchyError) as exc:
            fail(str(exc))
            return
        except (BudgetExceeded, FatalModelError) as exc:
            fail(str(exc), 1)
            return
        finally:
            close_transports()
        print_tree(store, run_id, version)


def print_tree(store, run_id: str, version: int) -> None:
    """Parents with their children and sizes."""
    from workflow.graph.nodes.hierarchy import label_sizes

    _, labels = store.taxonomy(run_id, version)
    sizes = label_sizes(store, run_id)
    t = Table(title=f"Hierarchy of {run_id}, taxonomy v{version}", title_justify="left")
    for col in ("parent", "label", "documents"):
        t.add_column(col, overflow="fold")
    for p in [*store.parents(run_id, version), None]:
        kids = [lb for lb in labels if lb.parent_id == (p.label_id if p else None)]
        for i, lb in enumerate(kids):
            head = (f"{p.label_id}: {p.name}" if p else "(no parent)") if i == 0 else ""
            t.add_row(head, f"{lb.label_id}: {lb.name}", str(sizes.get(lb.label_id, 0)))
    out.print(t)
    err.print(f"saved as taxonomy v{version}; review it with `tnt review {run_id}`", highlight=False)
