"""tnt subcommands (registered on workflow.cli.app)."""

from __future__ import annotations

from workflow.cli import app  # noqa: F401
