"""`tnt report`: one self-contained HTML file about a run, to read offline or send to someone without tnt.

The taxonomy (with each label's typical documents and nearest label), the map and the charts of the review page,
coverage, the evaluation figures and the model card. Everything is inline (CSS, SVG): no script, no CDN, no
external request; the file carries a Content-Security-Policy that forbids scripts, and every value is escaped by
the template engine, so a document's text cannot become markup when the file is opened.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape

from workflow.review.insight import insight
from workflow.review.mapview import MAP_POINTS
from workflow.review.view import colour_of, default_embed
from workflow.store import OTHER_ID, OTHER_NAME, Store, StoreError

HERE = Path(__file__).parent
REPORT_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"


def _eval_rows(store: Store, run_id: str) -> tuple[list[dict], str]:
    """The run's latest stored evaluation, else the automatic metrics computed now (nothing is stored)."""
    rows = store.eval_results(run_id)
    if rows:
        return rows, f"from `tnt eval` ({rows[-1]['created_at']:%Y-%m-%d %H:%M})"
    from workflow.evaluate.report import evaluate_run

    try:
        return [{"metric": m, "value": v, "details": d} for m, v, d in evaluate_run(store, run_id)], \
            "computed for this report (run `tnt eval` to store them, and for the judge's figures)"
    except (StoreError, ValueError) as exc:
        return [], f"not available: {exc}"


def report_context(store: Store, run_id: str, *, embed=None, map_points: int = MAP_POINTS,
                   time_field: str | None = None) -> dict:
    """What report.html lays out (kept apart from writing so a test can check the numbers)."""
    run = store.run(run_id)
    version, labels = store.taxonomy(run_id)
    if not labels:
        raise StoreError(f"run '{run_id}' has no taxonomy yet; wait until it pauses for review or finishes")
    embed = embed or default_embed(run.config.embedding_model)
    names = {lb.label_id: lb.name for lb in labels} | {OTHER_ID: OTHER_NAME}
    colours = {lb.label_id: colour_of(i, len(labels)) for i, lb in enumerate(labels)} | {OTHER_ID: "#64748b"}
    pictures = insight(store, run_id, labels, colours, names, embed, map_points=map_points, time_field=time_field)
    llm = store.label_counts(run_id, "llm")
    model = store.latest_model(run_id)
    predicted = store.prediction_counts(model["model_id"]) if model else {}
    labeled, n_pred = sum(llm.values()), sum(predicted.values())
    evals, eval_note = _eval_rows(store, run_id)
    return {
        "run": run, "version": version, "labels": labels, "names": names, "colours": colours, "insight": pictures,
        "parents": store.parents(run_id, version), "llm": llm, "predicted": predicted, "model": model,
        "corpus_size": store.corpus_size(run["corpus"]), "labeled": labeled, "n_pred": n_pred,
        "coverage": (labeled - llm.get(OTHER_ID, 0)) / labeled if labeled else None,
        "clf_coverage": (n_pred - predicted.get(OTHER_ID, 0)) / n_pred if n_pred else None,
        "evals": [r for r in evals if not r["metric"].startswith("calls_per_doc")],
        "usage": [r for r in evals if r["metric"].startswith("calls_per_doc")], "eval_note": eval_note,
        "reviews": store.reviews(run_id),
        "generated": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "csp": REPORT_CSP,
    }


def render_report(store: Store, run_id: str, **kwargs) -> str:
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True))
    css = (HERE / "static" / "review.css").read_text()
    return env.get_template("report.html").render(**report_context(store, run_id, **kwargs), css=css)


def write_report(store: Store, run_id: str, path: str | os.PathLike[str], *, embed=None,
                 map_points: int = MAP_POINTS, time_field: str | None = None) -> Path:
    """Write the run's report to ``path`` (atomically: a reader never sees half a file); returns the path.
    ``time_field``: a document metadata field holding dates (default: the run's `--time-field`, if any)."""
    path = Path(path)
    html = render_report(store, run_id, embed=embed, map_points=map_points, time_field=time_field)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(html)
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)  # mkstemp makes it private; a report is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
