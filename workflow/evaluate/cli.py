"""`tnt eval`: score a run (coverage, gold-label metrics, classifier agreement, stability, optional LLM judge),
store the scores in eval_results and print them."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from workflow.cli.common import DB_OPT, app, err, fail, open_store, out, resolve_run_id

_NOTE_KEYS = ("n", "against", "docs", "calls", "prompt_tokens", "completion_tokens", "tokens_per_doc", "cost_per_doc",
              "purity", "inverse_purity", "n_labels", "n_gold_classes", "share_relevant", "distinctness",
              "specificity", "coverage", "failed", "model", "max", "median")


def _note(details: dict) -> str:
    parts = []
    for k in _NOTE_KEYS:
        v = details.get(k)
        if v is None or isinstance(v, (dict, list)):
            continue
        parts.append(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}")
    return ", ".join(parts)


@app.command("eval")
def eval_cmd(
    run_id: str | None = typer.Argument(None, help="Run to evaluate (default: the latest)."),
    db: str = DB_OPT,
    gold: str = typer.Option("label", "--gold", help="Field of the input records holding gold labels, if any."),
    against: str | None = typer.Option(None, "--against", help="Another run: report run-to-run stability."),
    gold_parent: str | None = typer.Option(None, "--gold-parent", help="Field holding gold parent classes, "
                                              "for level-2 metrics of a two-level taxonomy (default: --gold)."),
    judge_model: str | None = typer.Option(None, "--judge-model", help="Also grade the run with this LLM judge."),
    judge_pairs: int = typer.Option(50, "--judge-pairs", min=1, help="Documents in the judge's label-accuracy test."),
    api_base: str | None = typer.Option(None, help="Endpoint for the judge model (default: the run's)."),
    seed: int = typer.Option(0, help="Seed for the judge's samples and label positions."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    structured_output: str | None = typer.Option(None, "--structured-output", help="How to ask the judge for "
                                                    "JSON: auto|json_schema|json_object|tools|prompt "
                                                    "(default: the run's)."),
) -> None:
    """Evaluate a run against gold labels, its classifier and (optionally) an LLM judge."""
    from workflow.evaluate.report import classifier_gap, evaluate_and_save

    if not Path(db).exists():
        fail(f"{db} does not exist; start a run with `tnt run`")
    with open_store(db) as store:
        run_id = resolve_run_id(store, run_id)
        if against:
            resolve_run_id(store, against)
        judged: dict[str, dict] = {}
        if judge_model:
            from workflow.evaluate.judge import judge_run
            from workflow.llm.base import FatalModelError

            try:
                judged = judge_run(store, run_id, judge_model, n_pairs=judge_pairs, seed=seed, api_base=api_base,
                                   structured_output=structured_output)
            except (FatalModelError, ValueError) as exc:
                fail(f"judge model {judge_model}: {exc}", 1)
        rows = evaluate_and_save(store, run_id, gold_field=gold, against=against, gold_parent_field=gold_parent,
                                 judged=judged)
        if not rows:
            fail(f"run '{run_id}' has nothing to evaluate yet (no labels, taxonomy or model calls)")
        gap = classifier_gap(store, run_id)

    if gap:
        err.print(f"[yellow]note:[/] {gap}", highlight=False)

    if as_json:
        out.print_json(json.dumps({"run_id": run_id, "metrics": {m: {"value": v, **d} for m, v, d in rows}},
                                  default=str))
        return
    t = Table(title=f"Evaluation of {run_id}", title_justify="left")
    t.add_column("metric")
    t.add_column("value", justify="right")
    t.add_column("details", overflow="fold")
    for m, v, d in rows:
        t.add_row(m, "-" if v is None else f"{v:.4g}", _note(d))
    out.print(t)
    if not any(m.startswith("gold_") for m, _, _ in rows):
        err.print(f"no gold labels in field '{gold}' of this corpus: gold metrics skipped (see --gold)",
                  highlight=False)
