"""What every `tnt` command shares: the app they register on, the consoles, one-line errors and the database option.

Command modules import this module only (never the package), so the CLI has no import circle.

Exit codes: 0 done or paused for review, 1 run failed, 2 bad input or usage, 3 stopped by the budget,
4 database in use, 130 interrupted (Ctrl-C), 143 terminated (SIGTERM).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from workflow.secrets import RedactingFilter, redact
from workflow.store import Store, StoreError
from workflow.store.connection import is_interrupt

app = typer.Typer(add_completion=False, no_args_is_help=True, help="TnT-LLM taxonomy induction and labeling.")
out = Console()
err = Console(stderr=True)
log = logging.getLogger("tnt")

DB_OPT = typer.Option("tnt.duckdb", "--db", help="DuckDB file holding documents, runs and models.")
EXIT = {"done": 0, "paused": 0, "failed": 1, "stopped": 3}


def config_option(field: str, *flags: str, **kwargs: Any) -> Any:
    """A `tnt run` option whose default and help are the JobConfig field's: one place for both, shared with the
    Python API's options."""
    from pydantic_core import PydanticUndefined

    from workflow.config import JobConfig

    info = JobConfig.model_fields[field]
    default = ... if info.default is PydanticUndefined else info.default
    text = (info.description or "").strip()
    if text:  # JobConfig's descriptions read as phrases; a flag's help reads as a sentence
        text = text[0].upper() + text[1:] + ("" if text.endswith((".", "?", ")")) else ".")
    return typer.Option(default, *flags, help=text or None, **kwargs)


def fail(message: str, code: int = 2) -> None:
    err.print(f"[bold red]error:[/] {escape(redact(message) or '')}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@contextmanager
def on_interrupt(then: str) -> Iterator[None]:
    """Ctrl-C as one line and exit 130. Without this, click says "Aborted!" and, where the Ctrl-C landed while
    DuckDB ran a query, DuckDB's own RuntimeError prints a traceback."""
    try:
        yield
    except BaseException as exc:
        if not is_interrupt(exc):
            raise
        fail(f"interrupted; {then}", 130)


def setup_logging(verbose: bool) -> None:
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


def resolve_run_id(store: Store, run_id: str | None) -> str:
    """The run a command acts on: the one named, or the latest; one error line if there is none."""
    try:
        run_id = run_id or store.latest_run_id()
        store.run(run_id)
    except StoreError as exc:
        fail(str(exc))
    return run_id  # type: ignore[return-value]
