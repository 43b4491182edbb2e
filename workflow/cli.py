"""The `tnt` command line. Errors a user can fix print one line and exit non-zero; no tracebacks.

Exit codes: 0 done or paused for review, 1 run failed, 2 bad input or usage, 3 stopped by the budget,
4 database in use.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Optional

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from workflow.config import LOCAL_MODEL, JobConfig
from workflow.secrets import RedactingFilter, redact
from workflow.store import OTHER_ID, Store, StoreError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="TnT-LLM taxonomy induction and labeling.")
out = Console()
err = Console(stderr=True)
log = logging.getLogger("tnt")

DB_OPT = typer.Option("tnt.duckdb", "--db", help="DuckDB file holding documents, runs and models.")
EXIT = {"done": 0, "paused": 0, "failed": 1, "stopped": 3}


def fail(message: str, code: int = 2) -> None:
    err.print(f"[bold red]error:[/] {escape(redact(message) or '')}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _setup_logging(verbose: bool) -> None:
    from rich.logging import RichHandler

    handler = RichHandler(console=err, show_path=False, show_time=False)
    handler.addFilter(RedactingFilter())  # a provider's error may echo the key it was sent
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s",
                        handlers=[handler], force=True)
    for noisy in ("LiteLLM", "litellm", "httpx", "openai"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def open_store(db: str) -> Store:
    try:
        return Store(db)
    except StoreError as exc:
        fail(str(exc), 4 if "in use" in str(exc) else 2)
        raise  # unreachable


@app.command()
def run(
    corpus: str = typer.Argument(..., help="JSONL, CSV or Parquet file, or file.duckdb:table."),
    use_case: str = typer.Option(..., "--use-case", "-u", help="What the taxonomy is for."),
    db: str = DB_OPT,
    model: str = typer.Option(LOCAL_MODEL, "--model", "-m", help="Any litellm model string; default: the embedded model."),
    summary_model: Optional[str] = typer.Option(None, help="Model for summaries (default: --model)."),
    taxonomy_model: Optional[str] = typer.Option(None, help="Model for taxonomy steps (default: --model)."),
    label_model: Optional[str] = typer.Option(None, help="Model for pseudo-labels (default: --model)."),
    api_base: Optional[str] = typer.Option(None, help="OpenAI-compatible endpoint, e.g. http://localhost:8000/v1."),
    text_field: str = typer.Option("text", help="Field holding the document text."),
    id_field: str = typer.Option("id", help="Field holding a unique document id (default: hash of the text)."),
    corpus_name: Optional[str] = typer.Option(None, "--corpus", help="Name of the corpus in the database."),
    batch_size: int = typer.Option(200, help="Summaries per taxonomy minibatch."),
    taxonomy_sample: int = typer.Option(600, help="Documents summarised for taxonomy generation."),
    label_sample: int = typer.Option(1000, help="Documents pseudo-labeled by the LLM."),
    label_selection: str = typer.Option("random", "--label-selection", help="Which documents the LLM labels: "
                                        "random (the paper), or active (a random quarter of --label-sample, then "
                                        "rounds of the documents a fast classifier is least sure of, spread out). "
                                        "Same number of labels either way."),
    max_labels: int = typer.Option(10, help="Most labels in the taxonomy."),
    proposal: str = typer.Option("clusters", help="clusters: embed and over-cluster the taxonomy sample; the model "
                                 "names and merges clusters. minibatch: the model writes the taxonomy from minibatches "
                                 "of summaries (the TnT-LLM paper)."),
    shortlist: int = typer.Option(5, help="Labels offered per document when labeling, nearest by embedding (0: all)."),
    teacher: str = typer.Option("auto", help="Whose labels the classifier learns from: llm (the paper), nearest "
                                "(each document's nearest label by embedding, no label calls), auto (nearest for "
                                "the embedded local model, llm otherwise)."),
    recheck: float = typer.Option(0.0, "--recheck", min=0.0, max=1.0, help="Share of the teacher's labels, most "
                                  "suspect first (noise estimate), asked again once: the label or the classifier's "
                                  "alternative; training learns the answer (0: off)."),
    multi_label: bool = typer.Option(False, "--multi-label", help="Let a document have several labels (the LLM "
                                     "lists all that apply; the classifier is one-vs-rest)."),
    max_labels_per_doc: int = typer.Option(3, help="Most labels per document with --multi-label."),
    concurrency: int = typer.Option(8, help="Model calls in flight at once."),
    max_cost: Optional[float] = typer.Option(None, help="Stop cleanly before spending more than this (USD)."),
    timeout: float = typer.Option(120.0, "--timeout", help="Seconds one model call may take before it is retried."),
    max_attempts: int = typer.Option(4, "--max-attempts", help="Attempts per model call before its document fails."),
    seed: int = typer.Option(0, help="Seed for sampling and models."),
    auto_approve: bool = typer.Option(True, "--auto-approve/--review", help="Pause for human review before labeling?"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the estimated calls, tokens and cost; run nothing."),
    levels: int = typer.Option(1, "--levels", min=1, max=2, help="2: also group the final labels under parents."),
    max_parents: int = typer.Option(8, "--max-parents", help="Most parents with --levels 2."),
    structured_output: str = typer.Option("auto", "--structured-output", help="How to ask the server for JSON: "
                                          "auto|json_schema|json_object|tools|prompt (auto steps down when refused)."),
    embedder: str = typer.Option("minilm-int8", "--embedder", help="Embeddings for clusters, shortlists and the "
                                 "classifier: minilm-int8 (bundled), st:/path/to/sentence-transformers-dir, or "
                                 "litellm:<provider model> (e.g. litellm:text-embedding-3-small)."),
) -> None:
    """Ingest a corpus and run the whole job: taxonomy, pseudo-labels, classifier, predictions."""
    _setup_logging(verbose)
    from pydantic import ValidationError

    from workflow.ingest import InputError, read_corpus
    from workflow.runner import ingest

    try:
        config = JobConfig(
            use_case=use_case, model=model, summary_model=summary_model, taxonomy_model=taxonomy_model,
            label_model=label_model, api_base=api_base, batch_size=batch_size, taxonomy_sample=taxonomy_sample,
            label_sample=label_sample, max_labels=max_labels, concurrency=concurrency, max_cost=max_cost, seed=seed,
            auto_approve=auto_approve, timeout_s=timeout, max_attempts=max_attempts, multi_label=multi_label,
            max_labels_per_doc=max_labels_per_doc, proposal=proposal, shortlist=shortlist, teacher=teacher,
            label_selection=label_selection, levels=levels, max_parents=max_parents,
            structured_output=structured_output, embedding_model=embedder, recheck=recheck,
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "?"
        flag = {"embedding_model": "embedder", "timeout_s": "timeout"}.get(field, field).replace("_", "-")
        fail(f"invalid option --{flag}: {first['msg']}")
    try:
        report = read_corpus(corpus, text_field, id_field)  # validate before touching the database
    except InputError as exc:
        fail(str(exc))
    if dry_run:  # -- dry run (workflow/estimate.py): estimate before paying, touch no database --
        from workflow.estimate import estimate_run, print_estimate

        print_estimate(estimate_run(config, [t for _, t, _ in report.records]), len(report.records), out)
        raise typer.Exit(0)
    store = open_store(db)
    with store:
        try:
            name, _, added = ingest(store, corpus, corpus=corpus_name, report=report)
        except StoreError as exc:
            fail(str(exc))
        err.print(
            f"ingested {len(report.records)} documents into corpus '{name}' ({added} new)"
            + (f"; skipped {report.skipped_empty} empty" if report.skipped_empty else "")
            + (f"; {report.long_docs} very long documents will be cut in prompts" if report.long_docs else ""),
            highlight=False,
        )
        run_id = store.create_run(name, config.use_case, config.model_dump())
        err.print(f"run [bold]{run_id}[/]")
        _execute(store, run_id, quiet)


@app.command()
def resume(
    run_id: Optional[str] = typer.Argument(None, help="Run to continue (default: the latest)."),
    db: str = DB_OPT,
    max_cost: Optional[float] = typer.Option(None, help="Raise the budget of a run stopped by --max-cost."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Ask again the calls that failed or whose "
                                      "answers were rejected (kept as they are otherwise, also by a re-run)."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Continue a run that was paused for review, stopped by its budget, failed, interrupted or killed."""
    _setup_logging(verbose)
    with open_store(db) as store:
        try:
            run_id = run_id or store.latest_run_id()
            store.run(run_id)
        except StoreError as exc:
            fail(str(exc))
        overrides = {"max_cost": max_cost} if max_cost is not None else None
        _execute(store, run_id, quiet, overrides, retry_failed=retry_failed)


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: the run is marked interrupted and can be resumed."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise Terminated()


def _execute(store: Store, run_id: str, quiet: bool, overrides: dict | None = None, retry_failed: bool = False) -> None:
    import signal

    from workflow.classify.embed import EmbeddingUnavailable
    from workflow.llm.transports import close_transports
    from workflow.runner import execute

    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        outcome = execute(store, run_id, show_progress=not quiet, overrides=overrides, retry_failed=retry_failed)
    except EmbeddingUnavailable as exc:
        store.set_run_stage(run_id, store.run(run_id)["stage"], status="failed", error=str(exc))
        fail(str(exc), 1)
        return
    except KeyboardInterrupt as exc:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second TERM while we record the state changes nothing
        store.set_run_stage(run_id, store.run(run_id)["stage"], status="interrupted")
        close_transports()
        what = "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted"
        fail(f"{what}; continue with `tnt resume {run_id}`", 143 if isinstance(exc, Terminated) else 130)
        return
    finally:
        signal.signal(signal.SIGTERM, previous)
    close_transports()
    print_summary(store, run_id, outcome.usage)
    colour = {"done": "green", "paused": "yellow"}.get(outcome.status, "red")
    err.print(f"[bold {colour}]{outcome.status}:[/] {escape(redact(outcome.message) or '')}", highlight=False,
              soft_wrap=True)
    if outcome.status in ("stopped", "failed"):
        err.print(f"continue with `tnt resume {run_id}`", highlight=False)
    raise typer.Exit(EXIT[outcome.status])


def _metric(metrics: dict, name: str) -> str:
    """A metric to 3 decimals; 'n/a' when it was not computed (None: e.g. kappa on a one-class test split)."""
    value = metrics.get(name)
    return "n/a" if value is None else f"{value:.3f}"


def print_summary(store: Store, run_id: str, usage: object | None = None) -> None:
    """The end-of-run report: labels with counts, model calls and cost, classifier metrics, where data is."""
    run = store.run(run_id)
    version, labels = store.taxonomy(run_id)
    llm_counts = store.label_counts(run_id, "llm")
    model = store.latest_model(run_id)
    pred_counts = store.prediction_counts(model["model_id"]) if model else {}

    # Narrow terminals and pipes get 80 columns: the description goes under its label (dim) instead of a column of
    # its own, so no column is squeezed to one word a line.
    wide = out.width >= 120
    t = Table(title=f"Taxonomy v{version} of {run_id}", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    t.add_column("id", no_wrap=True)
    t.add_column("label" if wide else "label and description", overflow="fold", ratio=2)
    if wide:
        t.add_column("description", overflow="fold", ratio=3)
    config = JobConfig.model_validate(run["config"]) if run.get("config") else None
    teacher = "LLM" if config is None or config.label_teacher() == "llm" else "nearest"  # who labeled the sample
    t.add_column(f"{teacher} labels", justify="right", no_wrap=True)
    t.add_column("classifier", justify="right", no_wrap=True)
    rows = [(lb.label_id, lb.name, lb.description) for lb in labels] + [(OTHER_ID, "Other", "fits no label")]
    for lid, name, desc in rows:
        text = [escape(name), escape(desc)] if wide else [f"[bold]{escape(name)}[/]\n[dim]{escape(desc)}[/]"]
        t.add_row(lid, *text, str(llm_counts.get(lid, 0)), str(pred_counts.get(lid, 0)))
    out.print(t)

    labeled = sum(llm_counts.values())
    coverage = (labeled - llm_counts.get(OTHER_ID, 0)) / labeled if labeled else 0.0
    stats = store.call_stats(run_id)
    models = sorted({r["model"] for r in stats})
    one_model = len(models) == 1  # then it goes in the title, and the numbers keep 80 columns
    calls = Table(title=f"Model calls{' to ' + models[0] if one_model else ''} (valid: answer used; rejected: "
                  "answered but failed validation, a fallback was used; failed: no answer)", title_justify="left",
                  box=box.SIMPLE_HEAD, pad_edge=False)
    for col in ("step", *(() if one_model else ("model",)), "valid", "rejected", "failed", "tokens", "cost $", "sec"):
        text = col in ("step", "model")
        calls.add_column(col, justify="left" if text else "right", no_wrap=col != "model", overflow="fold",
                         min_width=None if text else len(col))
    for r in stats:
        calls.add_row(r["step"], *(() if one_model else (r["model"],)), str(r["ok"]), str(r["rejected"]),
                      str(r["failed"]), f"{r['prompt_tokens'] + r['completion_tokens']:,}", f"{r['cost']:.4f}",
                      f"{r['latency_s']:.0f}")
    out.print(calls)
    if usage is not None and getattr(usage, "cached", 0):
        out.print(f"answered from the cache: {usage.cached} calls (no model call made)")

    failed = store.count_failed(run_id)
    out.print(
        (f"coverage (LLM labels not Other): {coverage:.1%} of {labeled} labeled documents" if teacher == "LLM" else
         f"{labeled} documents labeled by their nearest label (--teacher nearest: no label calls)")
        + (f"; without an answer: {failed['summaries']} summaries, {failed['labels']} labels (ask again with "
           f"`tnt resume {run_id} --retry-failed`)" if any(failed.values()) else "")
    )
    rounds = [r for r in store.sample_rounds(run_id, 2).values() if r is not None]
    if any(rounds):  # --label-selection active
        sizes = [rounds.count(r) for r in range(max(rounds) + 1)]
        m = model["metrics"] if model else {}
        held = ("on randomly drawn documents only; they also chose the classifier's regularisation"
                if m.get("random_rows") and m["random_rows"]["n"] == m.get("n_test") else
                "mostly on these harder documents; the randomly drawn ones chose the classifier's regularisation")
        out.print(f"label selection: active, {sizes[0]} documents at random then {len(sizes) - 1} rounds of the most "
                  f"uncertain ({', '.join(map(str, sizes[1:]))}); per document in samples.round. The held-out figures "
                  f"below are {held}")
    if config is not None and config.recheck > 0:
        out.print(recheck_line(store.recheck_counts(run_id), config.recheck, labeled, teacher), highlight=False)
    if model:
        m = model["metrics"]
        head = (f"classifier {model['model_id']} ({model['algorithm']} on {model['embedding_model']}): held-out vs "
                f"{teacher} ")
        if m.get("multi_label"):
            out.print(
                head + f"label sets micro-F1 {_metric(m, 'micro_f1')}, macro-F1 {_metric(m, 'macro_f1')}, exact sets "
                f"{_metric(m, 'subset_accuracy')}, top label in LLM set {_metric(m, 'accuracy')} (n_test={m.get('n_test')})"
            )
        else:
            out.print(
                head + f"labels accuracy {_metric(m, 'accuracy')}, macro-F1 {_metric(m, 'macro_f1')}, "
                f"Cohen's kappa {_metric(m, 'cohen_kappa')} (n_test={m.get('n_test')})"
                + (f"; on the {m['random_rows']['n']} of them drawn at random: accuracy "
                   f"{_metric(m['random_rows'], 'accuracy')}"
                   if m.get("random_rows") and m["random_rows"]["n"] != m.get("n_test") else "")
            )
        from workflow.classify.noise import label_noise_line

        noise_line = label_noise_line(m.get("label_noise"), teacher)
        if noise_line:
            out.print(noise_line)
        if m.get("self_training"):
            st = m["self_training"]
            out.print(f"self-training: {st['added']} of {st['unlabeled']} unlabeled documents joined the fit under the "
                      f"classifier's own label (probability >= {st['min_probability']:g}; no model calls)")
    from workflow.evolve.cli import print_drift

    print_drift(store, run_id)
    out.print(
        f"stored in {store.path}: tables documents, summaries, taxonomies/labels, assignments, llm_calls, models, "
        f"predictions (run_id = '{run_id}', status {run['status']})",
        highlight=False,
    )


def recheck_line(counts: dict[str, int], fraction: float, labeled: int, teacher: str) -> str:
    """The run summary's line on `--recheck`: how many labels went back to the model and what came of it."""
    head = f"recheck (--recheck {fraction:g}): "
    if not counts["rechecked"]:
        return head + f"no {teacher} label rechecked (see the log: skipped, or nothing to recheck yet)"
    return (head + f"{counts['rechecked']} of {labeled} {teacher} labels asked again: {counts['flipped']} flipped to "
            f"the classifier's alternative, {counts['kept']} kept"
            + (f", {counts['failed']} failed (their label stays)" if counts["failed"] else "")
            + "; the classifier learns the answers (human corrections still win)")


@app.command()
def status(run_id: Optional[str] = typer.Argument(None), db: str = DB_OPT,
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
    }


# Commands that live beside the code they drive register themselves on `app`.
from workflow.classify import cli as _classify_cli  # noqa: E402,F401
from workflow.evaluate import cli as _evaluate_cli  # noqa: E402,F401
from workflow.evolve import cli as _evolve_cli  # noqa: E402,F401
from workflow.review import cli as _review_cli  # noqa: E402,F401


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    # `python -m workflow.cli` runs this file as __main__, but the command modules above register on the importable
    # `workflow.cli`, a second copy of this module: its app has every command.
    from workflow.cli import main as _main

    sys.exit(_main())
