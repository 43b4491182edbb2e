"""`tnt review`: open the review page for a run (registered on workflow.cli.app)."""

from __future__ import annotations

import webbrowser
from pathlib import Path

import typer

from workflow.cli.common import DB_OPT, app, err, fail, open_store, resolve_run_id
from workflow.store import StoreError

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


@app.command()
def review(
    run_id: str | None = typer.Argument(None, help="Run to review (default: the latest)."),
    db: str = DB_OPT,
    host: str = typer.Option("127.0.0.1", help="Interface to bind; keep the default unless you know why."),
    port: int = typer.Option(0, help="Port to listen on; 0 picks a free one."),
    no_open: bool = typer.Option(False, "--no-open", help="Do not open a browser."),
    reviewer: str | None = typer.Option(None, "--reviewer", help="Name recorded with each edit (default: OS user)."),
) -> None:
    """Review a run's taxonomy and labels in the browser: rename, merge, split, add, delete, correct documents."""
    from workflow.review.edits import default_reviewer
    from workflow.review.server import ReviewApp, make_server, url_of

    if not Path(db).exists():
        fail(f"{db} does not exist; start a run with `tnt run`")
    with open_store(db) as store:  # validate, then release the file: the server opens it per request
        run_id = resolve_run_id(store, run_id)
        if not store.taxonomy(run_id)[1]:
            fail(f"run '{run_id}' has no taxonomy yet; wait until it pauses for review or finishes")
    if host not in LOCAL_HOSTS:
        err.print(f"[yellow]warning:[/] binding {host}: anyone who can reach it can edit this run", highlight=False)
    try:
        server = make_server(ReviewApp(db, run_id, reviewer or default_reviewer()), host, port)
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
    url = url_of(server)
    err.print(f"reviewing [bold]{run_id}[/] at [link={url}]{url}[/]  (Ctrl-C to stop; then `tnt resume {run_id}`)",
              highlight=False)
    if not no_open:
        webbrowser.open(url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        err.print("stopped", highlight=False)
    finally:
        server.server_close()


@app.command()
def report(
    run_id: str | None = typer.Argument(None, help="Run to report on (default: the latest)."),
    out: Path = typer.Option(Path("report.html"), "--out", "-o", help="HTML file to write."),
    db: str = DB_OPT,
    time_field: str | None = typer.Option(None, "--time-field", help="Document field holding dates, for label "
                                             "share over time (default: the run's --time-field)."),
    map_points: int = typer.Option(2000, "--map-points", min=10, max=20000, help="Documents sampled onto the map."),
) -> None:
    """Write one self-contained HTML report of a run: taxonomy, map, charts, coverage, evaluation, model card."""
    from workflow.review.figures import doc_times
    from workflow.review.report import write_report

    if not Path(db).exists():
        fail(f"{db} does not exist; start a run with `tnt run`")
    if out.is_dir():
        fail(f"--out {out} is a directory; name the HTML file to write")
    with open_store(db) as store:
        try:
            run_id = run_id or store.latest_run_id()
            corpus = store.run(run_id).corpus
            if time_field and not doc_times(store, corpus, time_field):
                fail(f"no document of corpus '{corpus}' has a date in field '{time_field}' (ISO date or Unix seconds)")
            path = write_report(store, run_id, out, map_points=map_points, time_field=time_field)
        except StoreError as exc:
            fail(str(exc))
        except OSError as exc:
            fail(f"cannot write {out}: {exc.strerror or exc}")
    err.print(f"wrote [bold]{path}[/] for run {run_id}", highlight=False)
