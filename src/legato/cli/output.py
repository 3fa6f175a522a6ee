"""How commands talk to people and to scripts: Rich tables, or one JSON object with --json."""

from __future__ import annotations

import json
import sys
from typing import Any, NoReturn

import typer
from rich.console import Console

console = Console()
errors = Console(stderr=True)


def emit_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


def fail(error: Exception, exit_code: int = 2) -> NoReturn:
    """Print a user error with its place and fix, then exit with its code."""
    errors.print(f"[bold red]error:[/] {error}", markup=True, highlight=False, soft_wrap=True)
    raise typer.Exit(getattr(error, "exit_code", exit_code))
