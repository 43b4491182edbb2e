"""The public Python API: a project (one DuckDB file), its runs, and their classifiers.

The ``tnt`` CLI is a thin layer over these objects; a notebook needs nothing else (no SQL, no internal module)::

    import workflow as tnt

    project = tnt.Project("tnt.duckdb")                       # or tnt.Project() for a throwaway temp file
    run = project.run(texts, use_case="What do customers ask the support bot for?")
    run.taxonomy()                                            # labels: ids, names, descriptions, parents
    run.classifier().predict(["where is my new card?"])       # scikit-learn style, on texts
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from workflow.classifier import TextClassifier
from workflow.config import JobConfig
from workflow.ingest import InputError, default_corpus_name
from workflow.store import OTHER_ID, OTHER_NAME, Store, StoreError


class RunError(RuntimeError):
    """A run cannot do what was asked (no classifier yet, nothing to review); the message says what to do."""


# --------------------------------------------------------------------------------------------- corpus input


def _is_path(corpus: Any) -> bool:
    return isinstance(corpus, (str, os.PathLike))


def corpus_input(corpus: Any, text_field: str = "text") -> tuple[Any, str]:
    """What ingest reads (a path, a DataFrame, or a list of texts or dicts) and a default corpus name: a file's
    stem, or a name from a hash of in-memory data, so the same texts land in the same corpus and different ones
    never collide."""
    if _is_path(corpus):
        return str(corpus), default_corpus_name(str(corpus))
    if not isinstance(corpus, pd.DataFrame):
        to_pandas = getattr(corpus, "to_pandas", None)  # a pyarrow Table or polars DataFrame
        corpus = to_pandas() if callable(to_pandas) else list(corpus)
    if isinstance(corpus, pd.DataFrame):
        if text_field not in corpus.columns:
            raise InputError(f"the DataFrame has no '{text_field}' column (columns: "
                             f"{', '.join(map(str, corpus.columns))}); pass text_field=")
        digest = hashlib.sha256(pd.util.hash_pandas_object(corpus.astype(str), index=False).values.tobytes())
    else:
        digest = hashlib.sha256(repr(corpus).encode("utf-8", "surrogatepass"))
    return corpus, f"corpus-{digest.hexdigest()[:8]}"


@contextmanager
def corpus_source(corpus: Any, text_field: str = "text") -> Iterator[tuple[str, str]]:
    """A file for steps that read a path (``tnt update``): a path as it is, in-memory data as a temporary Parquet
    file that passes the same validation. Yields (path, default corpus name)."""
    source, name = corpus_input(corpus, text_field)
    if isinstance(source, str):
        yield source, name
        return
    frame = source if isinstance(source, pd.DataFrame) else pd.DataFrame(
        [{text_field: t} if isinstance(t, str) else t for t in source])
    with tempfile.TemporaryDirectory(prefix="tnt-corpus-") as tmp:
        path = Path(tmp) / "corpus.parquet"
        frame.to_parquet(path, index=False)
        yield str(path), name


# --------------------------------------------------------------------------------------------- project


class Project:
    """One DuckDB file holding corpora, runs, model calls, taxonomies, labels and classifiers.

    ``Project()`` works in a temporary directory (gone with the process); ``Project("tnt.duckdb")`` is the file the
    CLI uses, so a run started in a notebook can be continued with ``tnt resume`` and the other way round.
    Close it (or use ``with``) to release the file for other processes.
    """

    def __init__(self, path: str | os.PathLike[str] | None = "tnt.duckdb", *, store: Store | None = None):
        if store is not None:
            self.store = store
        else:
            if path is None:
                self._tmp = tempfile.TemporaryDirectory(prefix="tnt-")
                path = Path(self._tmp.name) / "tnt.duckdb"
            self.store = Store(path)
        self.path = self.store.path

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Project:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Project({self.path!r})"

    # -- runs ------------------------------------------------------------------------------------------------

    def run(self, corpus: Any, use_case: str | None = None, *, config: JobConfig | None = None,
            text_field: str = "text", id_field: str | None = "id", corpus_name: str | None = None,
            progress: bool = True, **options: Any) -> Run:
        """Ingest ``corpus`` and run the whole job on it (``tnt run``): taxonomy, labels, classifier, predictions.

        ``corpus``: a JSONL/CSV/Parquet path or ``file.duckdb:table``, a list of texts, or a pandas DataFrame /
        Arrow table with a ``text_field`` column (and optionally ``id_field``; other columns are kept as metadata,
        e.g. gold labels for ``Run.evaluate``). Options are :class:`workflow.config.JobConfig` fields
        (``model="gpt-4o-mini"``, ``max_labels=12``, ``taxonomy_sample=400`` ...), or pass ``config=`` whole.

        Returns the run when it has finished, paused for review (``auto_approve=False``), stopped at its budget or
        failed: check ``run.status`` and ``run.message``. Interrupting (Ctrl-C / kernel interrupt) marks the run
        interrupted; ``run.resume()`` continues it.
        """
        config = make_config(config, use_case, options)
        name = self.ingest(corpus, text_field=text_field, id_field=id_field, corpus_name=corpus_name)
        return self.new_run(name, config).resume(progress=progress)

    def ingest(self, corpus: Any, *, text_field: str = "text", id_field: str | None = "id",
               corpus_name: str | None = None) -> str:
        """Validate and store a corpus without running anything; returns its name in the project (default: the
        file's stem, or ``corpus-<hash>`` of in-memory data, so the same texts land in the same corpus).
        Streams in batches, as ``tnt run`` does: memory stays flat however large the file."""
        from workflow.runner import ingest

        source, default_name = corpus_input(corpus, text_field)
        name, _, _ = ingest(self.store, source, text_field=text_field, id_field=id_field,
                            corpus=corpus_name or default_name)
        return name

    def new_run(self, corpus_name: str, config: JobConfig) -> Run:
        """A run of ``config`` on a stored corpus, created but not started (``Run.resume`` starts it)."""
        return Run(self, self.store.create_run(corpus_name, config.use_case, config.model_dump()))

    def get_run(self, run_id: str | None = None) -> Run:
        """A run by id, or the latest one."""
        run_id = run_id or self.store.latest_run_id()
        self.store.run(run_id)  # StoreError with the known ids when it does not exist
        return Run(self, run_id)

    def runs(self) -> pd.DataFrame:
        """Every run: id, corpus, use case, status, stage, error, created and updated times."""
        rows = self.store.runs()
        cols = ["run_id", "corpus", "use_case", "status", "stage", "error", "created_at", "updated_at"]
        return pd.DataFrame([{c: r[c] for c in cols} for r in rows], columns=cols)


def make_config(config: JobConfig | None, use_case: str | None, options: dict[str, Any]) -> JobConfig:
    """One validated config from either a JobConfig or keyword options (never both)."""
    if config is not None:
        if options or use_case:
            raise TypeError("pass either config= or use_case= and options, not both")
        return config
    if not use_case:
        raise TypeError("use_case is required: what is the taxonomy for?")
    return JobConfig(use_case=use_case, **options)


# --------------------------------------------------------------------------------------------- run


@dataclass
class ReviewSession:
    """A review page served from a background thread (``Run.review``); ``stop()`` ends it."""

    url: str
    _server: Any
    _thread: threading.Thread

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _repr_html_(self) -> str:
        return f'<a href="{self.url}" target="_blank">review page: {self.url}</a>'


class Run:
    """One taxonomy job: its status, taxonomy, labels, classifier and predictions, all read from the project."""

    def __init__(self, project: Project, run_id: str):
        self.project = project
        self.run_id = run_id
        self.usage: Any = None  # of the last resume() in this process: calls, tokens, cost, cached
        self._message: str | None = None

    @property
    def store(self) -> Store:
        return self.project.store

    def __repr__(self) -> str:
        return f"Run({self.run_id!r}, status={self.status!r}, stage={self._row['stage']!r})"

    @property
    def _row(self) -> Any:
        return self.store.run(self.run_id)

    @property
    def status(self) -> str:
        """running | paused | done | stopped | failed | interrupted."""
        return self._row["status"]

    @property
    def message(self) -> str:
        """What the last step said: why the run paused, stopped or failed, or 'finished'."""
        return self._message or self._row["error"] or self._row["status"]

    @property
    def config(self) -> JobConfig:
        return self._row.config

    # -- running --------------------------------------------------------------------------------------------

    def resume(self, *, progress: bool = True, max_cost: float | None = None, retry_failed: bool = False) -> Run:
        """Run (or continue) the job until it finishes, pauses for review, stops at its budget or fails
        (``tnt resume``). ``max_cost`` raises the budget; ``retry_failed`` asks failed and rejected calls again."""
        from workflow.runner import execute

        overrides = {"max_cost": max_cost} if max_cost is not None else None
        try:
            outcome = execute(self.store, self.run_id, show_progress=progress, overrides=overrides,
                              retry_failed=retry_failed)
        except BaseException as exc:  # the run must not stay 'running'
            from workflow.classify.embed import EmbeddingUnavailable
            from workflow.store.connection import is_interrupt

            if is_interrupt(exc):
                self.store.set_run_stage(self.run_id, self._row["stage"], status="interrupted")
                if isinstance(exc, KeyboardInterrupt):
                    raise
                raise KeyboardInterrupt("interrupted during a database query") from exc
            if isinstance(exc, EmbeddingUnavailable):
                self.store.set_run_stage(self.run_id, self._row["stage"], status="failed", error=str(exc))
            raise
        finally:
            from workflow.llm.registry import close_transports

            close_transports()
        self.usage, self._message = outcome.usage, outcome.message
        return self

    # -- results --------------------------------------------------------------------------------------------

    def taxonomy(self, version: int | None = None) -> pd.DataFrame:
        """The labels (latest version by default): label_id, name, description, parent_id, plus the parents of a
        two-level taxonomy as rows with level 2. Label ids are stable across versions and edits."""
        from workflow.classify.loader import taxonomy_records

        latest = self.store.taxonomy(self.run_id)[0]
        if not latest:
            return pd.DataFrame(columns=["label_id", "name", "description", "parent_id", "level"])
        frame = pd.DataFrame(taxonomy_records(self.store, self.run_id, version or latest))
        for col in ("parent_id", "level"):
            if col not in frame:
                frame[col] = None
        frame["level"] = frame["level"].fillna(1).astype(int)
        return frame[["label_id", "name", "description", "parent_id", "level"]]

    def taxonomy_versions(self) -> pd.DataFrame:
        """Every saved version: version, stage (propose, update, review, human edits...), batch, rating, notes."""
        return pd.DataFrame(self.store.taxonomy_versions(self.run_id),
                            columns=["version", "stage", "batch", "rating", "notes"])

    def _names(self) -> dict[str, str]:
        names = {lb.label_id: lb.name for lb in self.store.taxonomy(self.run_id)[1]}
        names[OTHER_ID] = OTHER_NAME
        return names

    def labels(self) -> pd.DataFrame:
        """The labels the classifier learns from, one row per labeled document: doc_id, text, label_id, label,
        source (llm: the model's label; nearest: the nearest label by embedding, the embedded model's teacher;
        recheck: the model's second answer; human: a correction on the review page), confidence."""
        frame = self.store.teacher_labels(self.run_id)
        if self.config.label_teacher() == "nearest":
            frame.loc[frame["source"] == "llm", "source"] = "nearest"
        return self._named(frame)

    def predictions(self) -> pd.DataFrame:
        """The classifier's label for every document of the run's corpus (a human correction wins): doc_id, text,
        label_id, label, source (classifier | human), confidence (the probability; 1 for a human label), uncertain.
        Empty until the run has a classifier."""
        model = self.store.latest_model(self.run_id)
        if model is None:
            return self._named(pd.DataFrame(columns=["doc_id", "text", "label_id", "source", "confidence",
                                                     "uncertain"]))
        return self._named(self.store.final_labels(self.run_id, model["model_id"]))

    def _named(self, frame: pd.DataFrame) -> pd.DataFrame:
        names = self._names()
        frame.insert(frame.columns.get_loc("label_id") + 1, "label",
                     [names.get(x, x) for x in frame["label_id"]])
        return frame.reset_index(drop=True)

    def label_counts(self) -> pd.DataFrame:
        """Per label: teacher labels on the labeled sample and classifier predictions on the corpus, with Other."""
        tax = self.taxonomy()
        leaves = tax[tax["level"] == 1]
        teacher = self.labels()["label_id"].value_counts()
        predicted = self.predictions()["label_id"].value_counts()
        rows = [(lid, name, int(teacher.get(lid, 0)), int(predicted.get(lid, 0)))
                for lid, name in [*zip(leaves["label_id"], leaves["name"]), (OTHER_ID, OTHER_NAME)]]
        return pd.DataFrame(rows, columns=["label_id", "label", "teacher", "classifier"])

    def coverage(self) -> float:
        """Share of the labeled sample the teacher put under a real label (not Other)."""
        labels = self.labels()
        return float((labels["label_id"] != OTHER_ID).mean()) if len(labels) else 0.0

    def metrics(self) -> dict:
        """The latest classifier's held-out figures against the teacher labels (accuracy, macro_f1, cohen_kappa,
        n_train, n_test, per-label and calibration details); empty without a classifier."""
        model = self.store.latest_model(self.run_id)
        return dict(model["metrics"]) if model else {}

    def calls(self) -> pd.DataFrame:
        """Model calls this run made, per step and model: calls, ok (valid), rejected, failed, prompt_tokens,
        completion_tokens, cost, latency_s. Answers from the cache are not calls (``run.usage.cached``)."""
        cols = ["step", "model", "calls", "ok", "rejected", "failed", "prompt_tokens", "completion_tokens", "cost",
                "latency_s"]
        return pd.DataFrame(self.store.call_stats(self.run_id), columns=cols)

    def classifier(self) -> TextClassifier:
        """The run's latest classifier as a scikit-learn-style estimator on texts."""
        from workflow.classify.loader import from_store

        if self.store.latest_model(self.run_id) is None:
            raise RunError(f"run {self.run_id} has no classifier yet (status {self.status}: {self.message})")
        return TextClassifier(from_store(self.store, self.run_id))

    # -- after the run --------------------------------------------------------------------------------------

    def export(self, out_dir: str | os.PathLike[str], *, model_id: str | None = None,
               overwrite: bool = False) -> Path:
        """Write the classifier as a versioned artifact (model.skops, taxonomy.json, metrics, manifest, model
        card) that ``load_classifier`` and ``tnt predict`` read without a database."""
        from workflow.classify.loader import export_model

        return export_model(self.store, self.run_id, Path(out_dir), model_id=model_id, overwrite=overwrite)[0]

    def report(self, path: str | os.PathLike[str] = "report.html", *, time_field: str | None = None,
               map_points: int = 2000) -> Path:
        """Write one self-contained HTML file (opens offline): taxonomy, a map of the documents, label sizes,
        agreement, the hierarchy, label share over time (``time_field``, default the run's), coverage, evaluation
        figures and the model card (``tnt report``). Returns its path."""
        from workflow.review.report import write_report

        return write_report(self.store, self.run_id, path, time_field=time_field, map_points=map_points)

    def evaluate(self, gold: str | None = "label", *, against: str | None = None,
                 gold_parent: str | None = None) -> pd.DataFrame:
        """Metrics of the run (``tnt eval``): against gold labels kept in the corpus field ``gold`` (e.g. a
        DataFrame column), the classifier's agreement with the teacher, cost, and stability ``against`` another
        run. Saved in the project too."""
        from workflow.evaluate.report import evaluate_and_save

        rows = evaluate_and_save(self.store, self.run_id, gold_field=gold, against=against,
                                 gold_parent_field=gold_parent)
        return pd.DataFrame([{"metric": m, "value": v, "details": d} for m, v, d in rows],
                            columns=["metric", "value", "details"])

    def update(self, corpus: Any, *, text_field: str = "text", id_field: str | None = "id", progress: bool = True,
               **options: Any) -> dict:
        """Classify new documents, measure drift, add labels for what the taxonomy misses, retrain (``tnt
        update``). Options: label_budget, proposal_sample, refresh_per_label, max_new_labels, new_labels
        ('auto' | 'always' | 'never'), review. Returns the update's report."""
        from workflow.evolve.update import update_run
        from workflow.llm.registry import close_transports

        with corpus_source(corpus, text_field) as (source, _):
            try:
                return update_run(self.store, self.run_id, source, text_field=text_field, id_field=id_field,
                                  show_progress=progress, **options)
            finally:
                close_transports()

    def review(self, *, host: str = "127.0.0.1", port: int = 0, reviewer: str | None = None,
               open_browser: bool = False) -> ReviewSession:
        """Serve the review page (rename, merge, split, add, delete labels; correct documents) from a background
        thread; returns its URL. Continue with ``run.resume()`` after editing; ``stop()`` ends the page."""
        from workflow.review.edits import default_reviewer
        from workflow.review.server import ReviewApp, make_server, url_of

        if not self.store.taxonomy(self.run_id)[1]:
            raise RunError(f"run {self.run_id} has no taxonomy yet; wait until it pauses for review or finishes")
        server = make_server(ReviewApp(self.project.path, self.run_id, reviewer or default_reviewer()), host, port)
        thread = threading.Thread(target=server.serve_forever, name=f"review-{self.run_id}", daemon=True)
        thread.start()
        session = ReviewSession(url_of(server), server, thread)
        if open_browser:
            import webbrowser

            webbrowser.open(session.url)
        return session


__all__ = ["Project", "ReviewSession", "Run", "RunError", "StoreError", "InputError", "corpus_input",
           "corpus_source", "make_config"]
