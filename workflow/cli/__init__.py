"""The `tnt` command line: a thin layer over the Python API (workflow/api.py) and the libraries it drives.

Errors a user can fix print one line and exit non-zero; no tracebacks. Each command module registers on the one
`app` in workflow/cli/common.py; importing this package imports them all.
"""

from __future__ import annotations

from workflow.classify import cli as _classify_cli  # noqa: F401
from workflow.cli import jobs as _jobs  # noqa: F401  (run, resume, status)
from workflow.cli.common import app
from workflow.cli.summary import print_summary, recheck_line
from workflow.evaluate import cli as _evaluate_cli  # noqa: F401
from workflow.evolve import cli as _evolve_cli  # noqa: F401
from workflow.review import cli as _review_cli  # noqa: F401

__all__ = ["app", "main", "print_summary", "recheck_line"]


def main() -> None:  # pragma: no cover
    app()
