"""The end-of-run report `tnt run`, `tnt resume` and `tnt status RUN` print."""

from __future__ import annotations

from rich import box
from rich.markup import escape
from rich.table import Table

from workflow.cli.common import out
from workflow.config import JobConfig
from workflow.store import OTHER_ID, Store


def _metric(metrics: dict, name: str) -> str:
    """A metric to 3 decimals; 'n/a' when it was not computed (None: e.g. kappa on a one-class test split)."""
    value = metrics.get(name)
    return "n/a" if value is None else f"{value:.3f}"


def print_summary(store: Store, run_id: str, usage: object | None = None) -> None:
    """The end-of-run report: labels with counts, model calls and cost, classifier metrics, where data is."""
    run = store.run(run_id)
    config = run.config if run["config"] else None
    teacher = "LLM" if config is None or config.label_teacher() == "llm" else "nearest"  # who labeled the sample
    model = store.latest_model(run_id)
    llm_counts = store.label_counts(run_id, "llm")
    print_taxonomy(store, run_id, config, teacher, llm_counts, model)
    print_calls(store, run_id, config, usage)
    print_labeling(store, run_id, config, teacher, sum(llm_counts.values()), llm_counts.get(OTHER_ID, 0), model)
    if model:
        print_classifier(model, teacher)
    from workflow.evolve.cli import print_drift

    print_drift(store, run_id)
    out.print(
        f"stored in {store.path}: tables documents, summaries, taxonomies/labels, assignments, llm_calls, models, "
        f"predictions (run_id = '{run_id}', status {run['status']})",
        highlight=False,
    )


def print_taxonomy(store: Store, run_id: str, config: JobConfig | None, teacher: str, llm_counts: dict[str, int],
                   model: dict | None) -> None:
    """The labels with teacher and classifier counts, and which were given with --labels."""
    version, labels = store.taxonomy(run_id)
    pred_counts = store.prediction_counts(model["model_id"]) if model else {}
    # Narrow terminals and pipes get 80 columns: the description goes under its label (dim) instead of a column of
    # its own, so no column is squeezed to one word a line.
    wide = out.width >= 120
    t = Table(title=f"Taxonomy v{version} of {run_id}", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    t.add_column("id", no_wrap=True)
    t.add_column("label" if wide else "label and description", overflow="fold", ratio=2)
    if wide:
        t.add_column("description", overflow="fold", ratio=3)
    t.add_column(f"{teacher} labels", justify="right", no_wrap=True)
    t.add_column("classifier", justify="right", no_wrap=True)
    rows = [(lb.label_id, lb.name, lb.description) for lb in labels] + [(OTHER_ID, "Other", "fits no label")]
    for lid, name, desc in rows:
        text = [escape(name), escape(desc)] if wide else [f"[bold]{escape(name)}[/]\n[dim]{escape(desc)}[/]"]
        t.add_row(lid, *text, str(llm_counts.get(lid, 0)), str(pred_counts.get(lid, 0)))
    out.print(t)
    if config is not None and config.seed_labels:  # --labels: which labels were given, which discovered
        from workflow.seeds import origins_line

        out.print(origins_line(store.label_origins(run_id), config.label_mode), highlight=False)


def print_calls(store: Store, run_id: str, config: JobConfig | None, usage: object | None) -> None:
    """Model calls per step (valid, rejected, failed, tokens, cost, seconds), redactions, cache and summaries."""
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
    if config is not None and config.redact_pii:
        from workflow.pii import redaction_line

        out.print(redaction_line(store.redaction_counts(run_id), sum(r["calls"] for r in stats)), highlight=False)
    if usage is not None and getattr(usage, "cached", 0):
        out.print(f"answered from the cache: {usage.cached} calls (no model call made)")
    if config is not None and not (config.label_mode == "fixed" and config.seed_labels):
        from workflow.graph.nodes.summarize import summaries_line

        out.print(summaries_line(config, len(store.summarized_ids(run_id))), highlight=False)


def print_labeling(store: Store, run_id: str, config: JobConfig | None, teacher: str, labeled: int, other: int,
                   model: dict | None) -> None:
    """Coverage (or the nearest-label teacher), calls without an answer, active selection rounds, rechecks."""
    coverage = (labeled - other) / labeled if labeled else 0.0
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


def print_classifier(model: dict, teacher: str) -> None:
    """The classifier's held-out agreement with its teacher, label noise and self-training."""
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


def recheck_line(counts: dict[str, int], fraction: float, labeled: int, teacher: str) -> str:
    """The run summary's line on `--recheck`: how many labels went back to the model and what came of it."""
    head = f"recheck (--recheck {fraction:g}): "
    if not counts["rechecked"]:
        return head + f"no {teacher} label rechecked (see the log: skipped, or nothing to recheck yet)"
    return (head + f"{counts['rechecked']} of {labeled} {teacher} labels asked again: {counts['flipped']} flipped to "
            f"the classifier's alternative, {counts['kept']} kept"
            + (f", {counts['failed']} failed (their label stays)" if counts["failed"] else "")
            + "; the classifier learns the answers (human corrections still win)")


