"""`tnt hierarchy` (two levels on a finished run) and `tnt update` (grow a run's taxonomy on new documents)."""

from __future__ import annotations

import typer
from rich.table import Table

from workflow.cli.common import DB_OPT, app, err, fail, on_interrupt, open_store, out, setup_logging
from workflow.store import StoreError


@app.command("hierarchy")
def hierarchy_cmd(
    run_id: str | None = typer.Argument(None, help="Run whose final labels get parents (default: the latest)."),
    db: str = DB_OPT,
    max_parents: int | None = typer.Option(None, "--max-parents", min=2, help="Most parents (default: the run's)."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Group a run's final labels under at most N parents (a new taxonomy version; leaf ids do not change)."""
    from workflow.graph.nodes.hierarchy import HierarchyError, build_hierarchy
    from workflow.llm.base import FatalModelError
    from workflow.llm.gateway import BudgetExceeded
    from workflow.llm.registry import close_transports
    from workflow.runner import run_context

    setup_logging(verbose)
    with open_store(db) as store:
        try:
            run_id = run_id or store.latest_run_id()
            ctx = run_context(store, run_id, not quiet)
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


@app.command("update")
def update_cmd(
    run_id: str = typer.Argument(..., help="A finished run whose taxonomy and classifier to grow."),
    corpus: str = typer.Argument(..., help="New documents: JSONL, CSV or Parquet file, or file.duckdb:table."),
    db: str = DB_OPT,
    text_field: str = typer.Option("text", help="Field holding the document text."),
    id_field: str = typer.Option("id", help="Field holding a unique document id."),
    label_budget: int | None = typer.Option(None, "--label-budget", min=1,
                                               help="Most new documents pseudo-labeled: the refresh "
                                                    "(at most a quarter), the new labels' seed "
                                                    "documents, then those an interim classifier puts under new labels "
                                                    "(default: label_sample/4)."),
    proposal_sample: int | None = typer.Option(None, "--proposal-sample", min=1,
                                                  help="Unexplained documents the new labels are proposed from "
                                                       "(default: taxonomy_sample/2)."),
    refresh_per_label: int = typer.Option(3, "--refresh-per-label", min=0,
                                          help="Explained documents per label re-labeled as a refresh."),
    max_new_labels: int | None = typer.Option(None, "--max-new-labels", min=1, help="Most labels added."),
    new_labels: str = typer.Option("auto", "--new-labels",
                                   help="When to add labels: auto (only when the new documents drift from the run's "
                                        "own), always (propose whatever the drift), never."),
    auto_approve: bool = typer.Option(True, "--auto-approve/--review", help="Pause for review of the new labels?"),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Classify new documents, measure drift, add labels for what the taxonomy misses (only when the new documents
    drift, unless --new-labels says otherwise), retrain and report."""
    import json

    from workflow.classify.embed import EmbeddingUnavailable
    from workflow.classify.train import TrainingError
    from workflow.evolve.update import UpdateError, update_run
    from workflow.ingest import InputError
    from workflow.llm.base import FatalModelError
    from workflow.llm.gateway import BudgetExceeded
    from workflow.llm.registry import close_transports

    setup_logging(verbose)
    if new_labels not in ("auto", "always", "never"):
        fail(f"--new-labels must be auto, always or never, not {new_labels!r}")
        return
    with open_store(db) as store, on_interrupt("run the same `tnt update` again to continue"):
        try:
            report = update_run(store, run_id, corpus, text_field=text_field, id_field=id_field or None,
                                review=not auto_approve, show_progress=not quiet, label_budget=label_budget,
                                proposal_sample=proposal_sample, refresh_per_label=refresh_per_label,
                                max_new_labels=max_new_labels, new_labels=new_labels)
        except (StoreError, UpdateError, InputError) as exc:
            fail(str(exc))
            return
        except (BudgetExceeded, FatalModelError, EmbeddingUnavailable, TrainingError) as exc:
            fail(f"{exc}; run the same `tnt update` again to continue", 1)
            return
        finally:
            close_transports()
    if as_json:
        out.print_json(json.dumps(report, default=str))
        return
    print_update(report)


def print_update(r: dict) -> None:
    if r.get("status") == "review":
        err.print(f"[bold yellow]paused:[/] {r['message']}", highlight=False)
        return
    if r.get("already_done"):
        err.print("this update was already applied; its report:", highlight=False)
    b = r["baseline"]
    t = Table(title=f"Drift of {r['n_new']} new documents vs the run's own unseen documents (n={b['n']})",
              title_justify="left")
    for col in ("batch", "n", "Other", "uncertain", "distance"):
        t.add_column(col, justify="right")
    t.add_row("baseline", str(b["n"]), f"{b['other_share']:.1%}", f"{b['uncertain_share']:.1%}",
              f"{b['distance_mean']:.3f}")
    for f in r["figures"]:
        mark = " *" if f["batch"] in r["drift_batches"] else ""
        t.add_row(f"{f['batch']}{mark}", str(f["n"]), f"{f['other_share']:.1%}", f"{f['uncertain_share']:.1%}",
                  f"{f['centroid_distance']:.3f}")
    out.print(t)
    why = r.get("drift_why") or {}
    first = str(r["drift_batches"][0]) if r["drift_batches"] else None
    out.print(f"drift: {'yes, from batch ' + first if first is not None else 'no'}"
              + (f" ({'; '.join(why.get(first, []))})" if why.get(first) else "") + "; "
              f"{r['n_unexplained']} unexplained documents; pseudo-labeled {r['n_labeled']} "
              f"({r['n_refresh']} as a refresh)", highlight=False)
    a = Table(title="Labels added", title_justify="left")
    for col in ("id", "label", "LLM labels", "classifier"):
        a.add_column(col)
    for x in r["added"]:
        a.add_row(x["label_id"], x["name"], str(x["llm_docs"]), str(x["predicted"]))
    if r["added"]:
        out.print(a)
    note = r.get("labels_note") or ("" if r["added"] else "no labels added")  # a report of an older tnt: no note
    if note:
        out.print(note, highlight=False)
    for m in r.get("merged", []):
        out.print(f"merged: proposed {m['name']!r} into {m['into']} {m['into_name']!r} ({m['rule']}: similarity "
                  f"{m['similarity']:.3f} >= {m['threshold']:.3f}; {m['n_docs']} documents)", highlight=False)
    for x in r.get("refused", []):
        detail = (f"duplicates {x['into']} {x['into_name']!r} ({x['rule']}: similarity {x['similarity']:.3f} >= "
                  f"{x['threshold']:.3f})") if "into" in x else x["reason"]
        out.print(f"refused: proposed {x['name']!r}: {detail}", highlight=False)
    old, new = r["held_out"]["old"], r["held_out"]["new"]
    fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    out.print(f"old held-out set (n={old['n']}): accuracy {fmt(old['accuracy'])} -> {fmt(new['accuracy'])}, "
              f"macro-F1 {fmt(old['macro_f1'])} -> {fmt(new['macro_f1'])}", highlight=False)
    out.print(f"documents moved: {r['moved']}"
              + "".join(f"; {m['from']} -> {m['to']}: {m['n']}" for m in r["top_moves"][:3]),
              highlight=False)
    out.print(f"model calls: {r['calls']}; classifier {r['model_before']} -> {r['model_after']}", highlight=False)


def print_drift(store, run_id: str, passes: int = 3) -> None:
    """The latest drift passes of the run's models (from `tnt predict` and `tnt update`), batch by batch."""
    from workflow.evolve.drift import Baseline, Figures

    rows = store.drift(run_id)
    if not rows:
        return
    seen: list[tuple[str, str]] = []
    for r in rows:
        if (r["model_id"], r["source"]) not in seen:
            seen.append((r["model_id"], r["source"]))
    for model_id, source in seen[:passes]:
        mine = [r for r in rows if (r["model_id"], r["source"]) == (model_id, source)]
        b = mine[0]["baseline"]
        base = Baseline(**b)
        t = Table(title=f"Drift of {source} under {model_id} ({str(mine[0]['created_at'])[:19]})", title_justify="left")
        for col in ("batch", "n", "Other", "uncertain", "distance", "drift"):
            t.add_column(col, justify="right")
        t.add_row("reference", str(b["n"]), f"{b['other_share']:.1%}", f"{b['uncertain_share']:.1%}",
                  f"{b['distance_mean']:.3f}", "")
        for r in mine:
            f = Figures(r["batch"], r["n"], r["other_share"], r["uncertain_share"], r["centroid_distance"] or 0.0)
            t.add_row(str(r["batch"]), str(r["n"]), f"{f.other_share:.1%}", f"{f.uncertain_share:.1%}",
                      f"{f.centroid_distance:.3f}", "; ".join(f.drifted(base)) or "no")
        out.print(t)
