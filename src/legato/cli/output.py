"""How commands talk to people and to scripts: Rich tables, or one JSON object with --json.

Errors: :func:`user_error` is the one place that decides whether an exception is the user's
to fix (a :class:`~legato.errors.LegatoError`, a driver error :func:`legato.store.db.store_error`
recognises, a file that cannot be read or written) and :class:`LegatoGroup`, the CLI's group,
prints it as one line with its fix and exits with its kind's code. Anything else is a bug and
keeps its traceback (without local variables: they may hold customers' data).
"""

from __future__ import annotations

import errno
import json
import sys
from typing import Any, NoReturn

from rich.markup import escape
import typer
from rich.console import Console
from typer.core import TyperGroup

from legato.errors import Invalid, LegatoError, StoreError

console = Console()
errors = Console(stderr=True)


def emit_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, default=str) + "\n")


def fail(error: Exception, exit_code: int = 2) -> NoReturn:
    """Print a user error with its place and fix, then exit with its code."""
    # The message is text, not markup: a hint such as pip install 'legato[charts]' keeps its brackets.
    errors.print(f"[bold red]error:[/] {escape(str(error))}", markup=True, highlight=False, soft_wrap=True)
    raise typer.Exit(getattr(error, "exit_code", exit_code))


def user_error(error: BaseException) -> LegatoError | None:
    """The error as the user's to fix, with its place and fix; None when it is a bug."""
    if isinstance(error, LegatoError):
        return error
    from legato.store.db import store_error

    found = store_error(error)
    if found is not None:
        return found
    if isinstance(error, OSError) and error.filename is not None:
        place = error.filename
        reason = error.strerror or type(error).__name__
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            return StoreError(f"cannot write {place}: {reason}", hint="free disk space or point the path elsewhere; run the command again")
        return Invalid(
            f"cannot use {place}: {reason}",
            hint="check that the path exists and that this user may read and write it and its folder, or give another path",
        )
    return None


class LegatoGroup(TyperGroup):
    """The ``legato`` group: every command's user errors end here, as one line and an exit code."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except Exception as error:
            found = user_error(error)
            if found is None or _is_click(error):
                raise
            fail(found)


def _is_click(error: BaseException) -> bool:
    """Usage errors and exits of the command-line parser itself, which it reports its own way."""
    return type(error).__module__.startswith(("click", "typer"))
