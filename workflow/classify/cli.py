"""tnt train / predict / export / serve: the classifier's life after a run (registered on workflow.cli.app)."""

from __future__ import annotations

from pathlib import Path

import duckdb
import typer
from rich.table import Table

from workflow.cli.common import DB_OPT, app, err, fail, on_interrupt, open_store, out, resolve_run_id
from workflow.store import OTHER_ID, OTHER_NAME, Store, StoreError

MODEL_OPT = typer.Option(..., "--model", "-m", help="Stored model id (or run id: its latest model) in --db, "
                                                    "or an exported artifact directory.")


def _fmt(x: object) -> str:
    return "n/a" if x is None else (f"{x:.3f}" if isinstance(x, float) else str(x))


# --------------------------------------------------------------------------- train


@app.command()
def train(
    run_id: str | None = typer.Argument(None, help="Run whose labels to train on (default: the latest)."),
    db: str = DB_OPT,
    algorithms: str = typer.Option("logreg", help="Comma-separated candidates: logreg, lightgbm, mlp."),
    label_docs: bool = typer.Option(True, "--predict/--no-predict", help="Label the run's corpus with the new "
                                    "model, as `tnt run` does (`tnt eval` scores the latest model's labels)."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Retrain a run's classifier from its stored labels (human corrections win) and store a new model."""
    from workflow.classify.embed import EmbeddingUnavailable
    from workflow.classify.export import classifier_to_bytes
    from workflow.classify.fit import fit_on_run
    from workflow.classify.predict import predict_corpus as label_corpus
    from workflow.classify.train import ALGORITHMS, TrainingError

    algos = tuple(a.strip() for a in algorithms.split(",") if a.strip())
    unknown = sorted(set(algos) - set(ALGORITHMS))
    if unknown or not algos:
        fail(f"unknown algorithm(s) {unknown or algorithms!r}; choose from {', '.join(ALGORITHMS)}")
    with open_store(db) as store:
        run_id = resolve_run_id(store, run_id)
        run = store.run(run_id)
        try:  # a multi-label run retrains one-vs-rest; --algorithms does not apply there
            fitted = fit_on_run(store, run_id, run["corpus"], run.config, algorithms=algos,
                                progress=not quiet)
        except EmbeddingUnavailable as exc:
            fail(str(exc), 1)
        except (TrainingError, ValueError) as exc:
            fail(str(exc))
        if fitted is None:
            fail(f"run {run_id} has no labeled documents yet; finish the run first (`tnt resume {run_id}`)")
        n_human = len(store.assignments(run_id, source="human"))
        fitted.metrics["n_human_labels"] = n_human
        version, tax = store.taxonomy(run_id)
        model_id = store.save_model(run_id, algorithm=fitted.clf.algorithm, embedding_model=fitted.embedding_model,
                                    taxonomy_version=version, metrics=fitted.metrics,
                                    artifact=classifier_to_bytes(fitted.clf))
        names = {lb.label_id: lb.name for lb in tax} | {OTHER_ID: OTHER_NAME}
        print_training_report(model_id, fitted.metrics, names, n_labels=fitted.n_labeled, n_human=n_human)
        if label_docs:  # the run's corpus labels come from its latest model (tnt eval, tnt status)
            try:
                n = label_corpus(store, model_id, run["corpus"], run_id, show_progress=not quiet)
            except EmbeddingUnavailable as exc:
                fail(f"model {model_id} is stored, but labeling the corpus failed: {exc}", 1)
            out.print(f"labeled the {n} documents of corpus '{run['corpus']}' with {model_id}", highlight=False)
        else:
            err.print(f"note: the corpus was not labeled with {model_id} (--no-predict), so `tnt eval` reports no "
                      "classifier metrics for this run until `tnt train` labels it", highlight=False)


def print_training_report(model_id: str, m: dict, names: dict[str, str], n_labels: int, n_human: int) -> None:
    """The candidates model selection scored, per-label precision/recall, the most confused pairs and overall
    agreement, as rich tables."""
    print_candidates(m)
    t = Table(title=f"Classifier {model_id}: held-out scores per label", title_justify="left")
    for col in ("id", "label", "precision", "recall", "f1", "support"):
        t.add_column(col, justify="left" if col in ("id", "label") else "right")
    for lid, s in (m.get("per_label") or {}).items():
        t.add_row(lid, names.get(lid, lid), _fmt(s["precision"]), _fmt(s["recall"]), _fmt(s["f1"]),
                  str(s["support"]))
    out.print(t)
    pairs = m.get("confusion_top") or []
    if pairs:
        c = Table(title="Most confused (labeled -> predicted)", title_justify="left")
        for col in ("labeled", "predicted", "count"):
            c.add_column(col, justify="right" if col == "count" else "left")
        for p in pairs:
            c.add_row(names.get(p["true"], p["true"]), names.get(p["pred"], p["pred"]), str(p["count"]))
        out.print(c)
    a = Table(title="Agreement with the training labels (LLM, human corrections win)", title_justify="left")
    for col in ("accuracy", "macro-F1", "Cohen's kappa", "n test", "n train", "uncertain share"):
        a.add_column(col, justify="right")
    conf = m.get("conformal") or {}
    if m.get("multi_label"):
        out.print(f"label sets: micro-F1 {_fmt(m.get('micro_f1'))}, per-document F1 {_fmt(m.get('samples_f1'))}, "
                  f"exact sets {_fmt(m.get('subset_accuracy'))}, Hamming loss {_fmt(m.get('hamming_loss'))}; "
                  f"labels per document: LLM {_fmt((m.get('label_cardinality') or {}).get('llm'))}, classifier "
                  f"{_fmt((m.get('label_cardinality') or {}).get('classifier'))}", highlight=False)
    a.add_row(_fmt(m.get("accuracy")), _fmt(m.get("macro_f1")), _fmt(m.get("cohen_kappa")), _fmt(m.get("n_test")),
              _fmt(m.get("n_train")), _fmt(conf.get("uncertain_share")))
    out.print(a)
    out.print(f"trained {m.get('model')} on {n_labels} labeled documents ({n_human} human corrections); "
              f"stored as model [bold]{model_id}[/]", highlight=False)
    for note in m.get("notes") or []:
        err.print(f"note: {note}", highlight=False)


def print_candidates(m: dict) -> None:
    """Each candidate model selection scored (cross-validated on the training split, or one validation split on
    large data) and the one it chose, so a user can see why it won."""
    scores = m.get("candidate_scores") or {}
    if not scores:
        return
    metric = "micro-F1" if m.get("multi_label") else "macro-F1"
    t = Table(title="Model selection: candidates", title_justify="left")
    t.add_column("candidate")
    t.add_column(metric, justify="right")
    t.add_column("chosen")
    for name, score in scores.items():  # in the order they were tried (logreg: C ascending)
        t.add_row(name, _fmt(score), "<- chosen" if name == m.get("model") else "")
    out.print(t)
    how = m.get("selection") or "model selection"
    if how == "single-candidate":
        why = f"{m.get('model')} was the only candidate (not scored)"
    elif "failed" in how:
        why = f"no candidate could be scored ({how}); used {m.get('model')}"
    else:
        why = f"chose {m.get('model')}: the highest {metric} by {how} on the training split"
    out.print(why, highlight=False)


# --------------------------------------------------------------------------- predict


def _load(store: Store | None, model: str):  # -> ServingModel
    from workflow.classify.export import ArtifactError
    from workflow.classify.loader import ModelNotFound, load_model

    try:
        return load_model(model, store)
    except (ModelNotFound, ArtifactError) as exc:
        fail(str(exc))


def _predict_store(ctx: typer.Context, db: str, model: str, source: str, output: str, cache: bool) -> Store | None:
    """The database `tnt predict` needs, or None. An exported artifact reading a file and writing a Parquet file
    needs none: it neither opens nor creates one (another process may hold ./tnt.duckdb), unless --db is given
    for the embedding cache. A database that does not exist is never created only to find nothing in it."""
    from workflow.classify.predict import names_db_object

    artifact = Path(model).is_dir()
    in_db = names_db_object(source)  # a corpus or table name, not a file
    to_file = output.lower().endswith((".parquet", ".pq"))
    source_of_db = ctx.get_parameter_source("db")  # typer may vendor click: compare the enum by name
    db_given = getattr(source_of_db, "name", "DEFAULT") not in ("DEFAULT", "DEFAULT_MAP")
    if artifact and not in_db and to_file and not (cache and db_given):
        return None
    if not Path(db).exists():
        if not artifact:
            fail(f"no stored model or run '{model}': database {db} does not exist (pass --db), and no artifact "
                 "directory of that name")
        if in_db:
            fail(f"{source}: no such file, and no database {db} to find a table or corpus of that name in "
                 "(pass --db)")
    return open_store(db)  # creates it only for an output table or an embedding cache the command asked for


@app.command()
def predict(
    ctx: typer.Context,
    model: str = MODEL_OPT,
    input: str = typer.Option(..., "--input", "-i", help="JSONL/CSV/Parquet file, file.duckdb:table, or a corpus "
                                                          "or table name in --db."),
    output: str = typer.Option(..., "--output", "-o", help="A table name in --db, or a .parquet file."),
    db: str = DB_OPT,
    text_field: str = typer.Option("text", help="Field holding the text."),
    id_field: str = typer.Option("id", help="Field holding the document id (missing: hash of the text)."),
    vector_field: str | None = typer.Option(None, help="Use precomputed embeddings from this column instead "
                                                          "of embedding the text (Parquet or DuckDB input)."),
    batch_size: int | None = typer.Option(None, min=1, help="Rows read, embedded and written per batch "
                                             "[default: 4096 texts, 32768 precomputed vectors]."),
    memory_limit: str = typer.Option("256MB", help="DuckDB memory cap while streaming; DuckDB would otherwise "
                                                   "keep the blocks it read cached, up to 80% of RAM."),
    overwrite: bool = typer.Option(False, help="Replace an existing output table or file."),
    cache: bool = typer.Option(True, "--cache/--no-cache", help="Cache embeddings in --db by text hash (an exported "
                               "artifact on files uses no database unless --db is given)."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
    drift: bool = typer.Option(True, "--drift/--no-drift", help="Store per-batch drift figures of a stored "
                                                               "model against its run's own unseen documents."),
    engine: str = typer.Option("local", help="local: this process; ray: embed and classify on Ray actors (a local "
                               "cluster, or --ray-address), same output rows; no embedding cache, no drift."),
    ray_address: str | None = typer.Option(None, help="With --engine ray: a running cluster ('auto', "
                                              "'ray://host:10001'); default: start one on this machine."),
) -> None:
    """Label any number of documents with a classifier, streaming in batches (memory stays flat).

    Interrupted (Ctrl-C, killed, a crash), the same command run again continues where it stopped: documents
    already in the output are neither embedded nor written again."""
    from workflow.classify.checkpoint import count_input_rows, open_resumable_output
    from workflow.classify.embed import EmbeddingUnavailable
    from workflow.classify.predict import (
        PredictInputError,
        make_vectorizer,
        open_input,
        other_share,
        predict_stream,
    )

    if engine not in ("local", "ray"):
        fail(f"unknown --engine {engine!r}; choose local or ray")
    if engine == "ray":
        from workflow.classify.ray_engine import ray_available

        if not ray_available():
            fail('--engine ray needs Ray: pip install "tnt[distributed]"')
        cache = drift = False  # workers embed without the database
    store = _predict_store(ctx, db, model, input, output, cache)
    try:
        serving = _load(store, model)
        if batch_size is None:
            batch_size = 32_768 if vector_field else 4096
        with on_interrupt("the same command run again continues where it stopped"):
            try:
                if store is not None:
                    store.limit_memory(memory_limit)
                batches, total = open_input(input, store, text_field=text_field, id_field=id_field or None,
                                            vector_field=vector_field, batch_size=batch_size, memory_limit=memory_limit)
                if total is None and not quiet:
                    total = count_input_rows(input, store)  # for the bar's ETA
                sink = open_resumable_output(output, store, serving.version, overwrite)  # continues an interrupted run
                if sink.done and not quiet:
                    err.print(f"resuming: {output} already holds {sink.done} predictions of this model; predicting the "
                              "rest", highlight=False)
                vectorize = None if vector_field else make_vectorizer(serving, store if cache else None)
                monitor = None
                if store is not None and not vector_field and drift:
                    from workflow.evolve.drift import monitor_for

                    monitor = monitor_for(store, serving)  # per-batch drift figures into the drift table
                if engine == "ray":
                    from workflow.classify.ray_engine import predict_ray

                    stats = predict_ray(serving, batches, sink, total=total, show_progress=not quiet,
                                        address=ray_address)
                else:
                    stats = predict_stream(serving, batches, sink, vectorize=vectorize, total=total,
                                           show_progress=not quiet, on_batch=monitor)
                if monitor is not None and monitor.figures:
                    store.save_drift(serving.version, input, monitor.rows(), monitor.base.as_dict())
            except (PredictInputError, StoreError) as exc:
                fail(str(exc))
            except EmbeddingUnavailable as exc:
                fail(str(exc), 1)
            except duckdb.OutOfMemoryException as exc:
                fail(f"DuckDB ran out of memory under --memory-limit {memory_limit} ({str(exc).splitlines()[0]}); "
                     "raise --memory-limit or lower --batch-size", 1)
        base = (serving.metrics.get("conformal") or {}).get("uncertain_share")
        out.print(
            f"predicted {stats.n} documents with {serving.version} -> {output}"
            + (f" (and {sink.done} before the interruption)" if sink.done else "") + "; "
            f"uncertain {stats.share(stats.uncertain):.1%}"
            + (f" (held-out at training: {base:.1%})" if base is not None else "")
            + f", Other {other_share(serving, stats):.1%}",
            highlight=False,
        )
        if monitor is not None and monitor.flagged:
            err.print(f"[yellow]drift:[/] batches {monitor.flagged} of {len(monitor.figures)} differ from the run's "
                      "own unseen documents (see `tnt status RUN`); `tnt update` can grow the taxonomy",
                      highlight=False)
        if base is not None and stats.n and stats.share(stats.uncertain) > 2 * base + 0.05:
            err.print("[yellow]warning:[/] far more uncertain predictions than at training time: the input may "
                      "differ from the training data (drift); review a sample or retrain", highlight=False)
    finally:
        if store is not None:
            store.close()


# --------------------------------------------------------------------------- export


@app.command()
def export(
    run_id: str | None = typer.Argument(None, help="Run whose model to export (default: the latest run)."),
    out_dir: Path = typer.Option(..., "--out", "-o", help="Directory to write the artifact into."),
    db: str = DB_OPT,
    model: str | None = typer.Option(None, "--model", "-m", help="Model id (default: the run's latest)."),
    overwrite: bool = typer.Option(False, help="Replace an existing artifact directory's files."),
) -> None:
    """Write a versioned artifact: model.skops, taxonomy.json (stable ids), metrics, manifest, model card."""
    from workflow.classify.export import ArtifactError
    from workflow.classify.loader import export_model

    with open_store(db) as store:
        run_id = resolve_run_id(store, run_id)
        try:
            path, model_id = export_model(store, run_id, out_dir, model_id=model, overwrite=overwrite)
        except (ArtifactError, StoreError, ValueError) as exc:
            fail(str(exc))
    out.print(f"exported {model_id} to {path} (model.skops, taxonomy.json, metrics.json, manifest.json, "
              "README.md)", highlight=False)


# --------------------------------------------------------------------------- serve


@app.command()
def serve(
    model: str = MODEL_OPT,
    db: str = DB_OPT,
    host: str = typer.Option("127.0.0.1", help="Interface to bind; 0.0.0.0 exposes it (no authentication)."),
    port: int = typer.Option(8080, min=0, max=65535),
    max_batch_texts: int = typer.Option(256, min=1, help="Texts per embedding call when concurrent requests are "
                                                         "batched together."),
) -> None:
    """Serve a classifier over HTTP (FastAPI on uvicorn): POST /classify {"texts": [...]}, GET /health, GET /labels,
    GET /docs. For your own deployment: uvicorn --factory workflow.classify.serve:create_app with TNT_MODEL set."""
    from workflow.classify.embed import EmbeddingUnavailable
    from workflow.classify.serve_uvicorn import make_server

    store = None if Path(model).is_dir() else open_store(db)
    try:
        serving = _load(store, model)
    finally:
        if store is not None:
            store.close()  # the model is in memory; do not hold the database lock while serving
    try:
        server = make_server(serving, host, port, max_batch_texts=max_batch_texts)
    except EmbeddingUnavailable as exc:
        fail(str(exc), 1)
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
    h, p = server.server_address[:2]
    err.print(f"serving {serving.version} on http://{h}:{p} (POST /classify, GET /health, GET /labels, GET /docs); "
              "Ctrl-C stops", highlight=False)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
