"""tnt run / resume / status: start a job, continue it, see where runs stand."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from workflow.api import Project, Run
from workflow.cli.common import (
    DB_OPT,
    EXIT,
    app,
    config_option,
    err,
    fail,
    on_interrupt,
    open_store,
    out,
    resolve_run_id,
    setup_logging,
)
from workflow.cli.summary import print_summary
from workflow.config import JobConfig
from workflow.secrets import redact
from workflow.store import Store, StoreError


@app.command()
def run(
    corpus: str = typer.Argument(..., help="JSONL, CSV or Parquet file, or file.duckdb:table."),
    use_case: str = config_option("use_case", "--use-case", "-u"),
    db: str = DB_OPT,
    model: str = config_option("model", "--model", "-m"),
    summary_model: str | None = config_option("summary_model"),
    taxonomy_model: str | None = config_option("taxonomy_model"),
    label_model: str | None = config_option("label_model"),
    api_base: str | None = config_option("api_base"),
    text_field: str = typer.Option("text", help="Field holding the document text."),
    id_field: str = typer.Option("id", help="Field holding a unique document id (default: hash of the text)."),
    time_field: str | None = config_option("time_field", "--time-field"),
    corpus_name: str | None = typer.Option(None, "--corpus", help="Name of the corpus in the database."),
    batch_size: int = config_option("batch_size"),
    taxonomy_sample: int = config_option("taxonomy_sample"),
    label_sample: int = config_option("label_sample"),
    label_selection: str = config_option("label_selection", "--label-selection"),
    max_labels: int = config_option("max_labels"),
    proposal: str = config_option("proposal"),
    shortlist: int = config_option("shortlist"),
    teacher: str = config_option("teacher"),
    recheck: float = config_option("recheck", "--recheck", min=0.0, max=1.0),
    multi_label: bool = config_option("multi_label", "--multi-label"),
    max_labels_per_doc: int = config_option("max_labels_per_doc"),
    concurrency: int = config_option("concurrency"),
    max_cost: float | None = config_option("max_cost"),
    timeout: float = config_option("timeout_s", "--timeout"),
    max_attempts: int = config_option("max_attempts", "--max-attempts"),
    seed: int = config_option("seed"),
    auto_approve: bool = config_option("auto_approve", "--auto-approve/--review"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the estimated calls, tokens and cost; run nothing."),
    levels: int = config_option("levels", "--levels", min=1, max=2),
    max_parents: int = config_option("max_parents", "--max-parents"),
    structured_output: str = config_option("structured_output", "--structured-output"),
    embedder: str = config_option("embedding_model", "--embedder"),
    labels_file: Path | None = typer.Option(None, "--labels", help="Labels you already have: YAML, JSON or CSV "
                                               "with name, optional description and examples "
                                               "(docs: workflow/seeds.py)."),
    label_mode: str = config_option("label_mode", "--label-mode"),
    summaries: str = config_option("summaries", "--summaries"),
    redact_pii: bool = config_option("redact_pii", "--redact-pii"),
) -> None:
    """Ingest a corpus and run the whole job: taxonomy, pseudo-labels, classifier, predictions."""
    setup_logging(verbose)
    from pydantic import ValidationError

    from workflow.ingest import InputError
    from workflow.ingest_stage import stage_corpus
    from workflow.review.figures import doc_times
    from workflow.runner import ingest
    from workflow.seeds import SeedFileError, read_labels_file

    try:
        seed_labels = read_labels_file(labels_file) if labels_file else []
    except SeedFileError as exc:
        fail(str(exc))
    try:
        config = JobConfig(
            use_case=use_case, model=model, summary_model=summary_model, taxonomy_model=taxonomy_model,
            label_model=label_model, api_base=api_base, batch_size=batch_size, taxonomy_sample=taxonomy_sample,
            label_sample=label_sample, max_labels=max_labels, concurrency=concurrency, max_cost=max_cost, seed=seed,
            auto_approve=auto_approve, timeout_s=timeout, max_attempts=max_attempts, multi_label=multi_label,
            max_labels_per_doc=max_labels_per_doc, proposal=proposal, shortlist=shortlist, teacher=teacher,
            label_selection=label_selection, levels=levels, max_parents=max_parents,
            structured_output=structured_output, embedding_model=embedder, recheck=recheck, time_field=time_field,
            seed_labels=seed_labels, labels_file=str(labels_file) if labels_file else None, label_mode=label_mode,
            redact_pii=redact_pii, summaries=summaries,
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        if not first["loc"]:  # a check across options (JobConfig's model validators) names its options itself
            fail(str(first["msg"]).removeprefix("Value error, "))
        field = str(first["loc"][0])
        flag = {"embedding_model": "embedder", "timeout_s": "timeout", "seed_labels": "labels"}.get(field, field)
        fail(f"invalid option --{flag.replace('_', '-')}: {first['msg']}")
    # validate before touching the database: streamed in batches into a scratch DuckDB beside it (flat memory)
    # (beside the database, not in /tmp, which is often RAM; removed afterwards, also by --dry-run)
    stage_dir = Path(db).resolve().parent if Path(db).resolve().parent.is_dir() else None
    with on_interrupt("nothing was stored; run the same command again"):
        try:
            staged = stage_corpus(corpus, text_field, id_field, tmp_dir=stage_dir)
        except InputError as exc:
            fail(str(exc))
    report = staged.report
    if dry_run:  # -- dry run (workflow/estimate.py): estimate before paying, touch no database --
        from workflow.estimate import estimate_run, print_estimate

        with staged:
            print_estimate(estimate_run(config, staged.texts()), report.n_docs, out)
        raise typer.Exit(0)
    with staged, open_store(db) as store:
        project = Project(store=store)
        with on_interrupt("no document was added; run the same command again"):
            try:
                name, _, added = ingest(store, corpus, corpus=corpus_name, staged=staged)
            except StoreError as exc:
                fail(str(exc))
        err.print(
            f"ingested {report.n_docs} documents into corpus '{name}' ({added} new)"
            + (f"; skipped {report.skipped_empty} empty" if report.skipped_empty else "")
            + (f"; {report.long_docs} very long documents will be cut in prompts" if report.long_docs else ""),
            highlight=False,
        )
        if time_field and not doc_times(store, name, time_field):
            fail(f"no document of corpus '{name}' has a date in field '{time_field}' (ISO date or Unix seconds)")
        job = project.new_run(name, config)
        err.print(f"run [bold]{job.run_id}[/]")
        _execute(job, quiet)


@app.command()
def resume(
    run_id: str | None = typer.Argument(None, help="Run to continue (default: the latest)."),
    db: str = DB_OPT,
    max_cost: float | None = typer.Option(None, help="Raise the budget of a run stopped by --max-cost."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Ask again the calls that failed or whose "
                                      "answers were rejected (kept as they are otherwise, also by a re-run)."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Continue a run that was paused for review, stopped by its budget, failed, interrupted or killed."""
    setup_logging(verbose)
    with open_store(db) as store:
        run_id = resolve_run_id(store, run_id)
        _execute(Project(store=store).get_run(run_id), quiet, max_cost, retry_failed=retry_failed)


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: the run is marked interrupted and can be resumed."""


_SIGTERM_SEEN = threading.Event()  # DuckDB drops the handler's Terminated when the signal lands mid-query


def _on_sigterm(signum: int, frame: object) -> None:
    _SIGTERM_SEEN.set()
    raise Terminated()


def _execute(job: Run, quiet: bool, max_cost: float | None = None, retry_failed: bool = False) -> None:
    """Run.resume with what a terminal adds: SIGTERM handled like Ctrl-C, the summary, the exit code."""
    import signal

    from workflow.classify.embed import EmbeddingUnavailable

    _SIGTERM_SEEN.clear()
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        job.resume(progress=not quiet, max_cost=max_cost, retry_failed=retry_failed)
    except EmbeddingUnavailable as exc:
        fail(str(exc), 1)
        return
    except KeyboardInterrupt as exc:  # Run.resume has marked the run interrupted
        term = isinstance(exc, Terminated) or _SIGTERM_SEEN.is_set()
        what = "terminated (SIGTERM)" if term else "interrupted"
        fail(f"{what}; continue with `tnt resume {job.run_id}`", 143 if term else 130)
        return
    finally:
        signal.signal(signal.SIGTERM, previous)
    print_summary(job.store, job.run_id, job.usage)
    status = job.status
    colour = {"done": "green", "paused": "yellow"}.get(status, "red")
    err.print(f"[bold {colour}]{status}:[/] {escape(redact(job.message) or '')}", highlight=False, soft_wrap=True)
    if status in ("stopped", "failed"):
        err.print(f"continue with `tnt resume {job.run_id}`", highlight=False)
    raise typer.Exit(EXIT.get(status, 1))


@app.command()
def status(run_id: str | None = typer.Argument(None), db: str = DB_OPT,
           as_json: bool = typer.Option(False, "--json")) -> None:
    """Show each run's stage, counts, calls and cost (or one run in detail)."""
    if not Path(db).exists():
        fail(f"{db} does not exist; start a run with `tnt run`")
    with open_store(db) as store:
        if run_id:
            try:
                store.run(run_id)
            except StoreError as exc:
                fail(str(exc))
            if as_json:
                out.print_json(json.dumps(_run_row(store, store.run(run_id)), default=str))
                return
            print_summary(store, run_id)
            return
        rows = [_run_row(store, r) for r in store.runs()]
        if as_json:
            out.print_json(json.dumps(rows, default=str))
            return
        print_runs(rows, db)


def print_runs(rows: list[dict], db: str) -> None:
    """One line per run that fits 80 columns (details: `tnt status RUN`); each run's error on its own lines below."""
    t = Table(title=f"Runs in {db}", title_justify="left", box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False)
    t.add_column("run", no_wrap=True)
    t.add_column("status", no_wrap=True)
    for col in ("labels", "calls", "cost $"):
        t.add_column(col, justify="right", no_wrap=True)
    t.add_column("updated", no_wrap=True)
    for r in rows:
        calls = str(r["calls"]) + (f" ({r['rejected'] + r['failed']}!)" if r["rejected"] + r["failed"] else "")
        t.add_row(r["run_id"], r["status"], str(r["labels"]), calls, f"{r['cost $']:.2f}", r["updated"][5:16])
    out.print(t)
    if any(r["rejected"] + r["failed"] for r in rows):
        out.print("calls (n!): n calls were rejected by validation or failed; `tnt status RUN` shows which steps",
                  highlight=False)
    for r in rows:
        if r["status"] != "done":
            error = f": {escape(redact(r['error']) or '')}" if r["error"] else ""
            out.print(f"{r['run_id']}: {r['status']} at {r['stage']}{error}", highlight=False)


def _run_row(store: Store, run: dict) -> dict:
    stats = store.call_stats(run["run_id"])
    return {
        "run_id": run["run_id"], "corpus": run["corpus"], "stage": run["stage"], "status": run["status"],
        "summaries": len(store.summarized_ids(run["run_id"])),
        "labels": sum(store.label_counts(run["run_id"]).values()),
        "calls": sum(s["calls"] for s in stats), "rejected": sum(s["rejected"] for s in stats),
        "failed": sum(s["failed"] for s in stats),
        "cost $": round(sum(s["cost"] for s in stats), 4), "updated": str(run["updated_at"])[:19],
        "error": run["error"] or "",
        "redacted_spans": sum(n for k, n in store.redaction_counts(run["run_id"]).items() if k != "prompts"),
    }
