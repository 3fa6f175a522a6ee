"""`legato secret`: the key that signs unsubscribe links (see legato.deliver.tokens)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from legato.cli.output import console, emit_json, fail
from legato.errors import LegatoError

secret_app = typer.Typer(help="The key that signs unsubscribe links: where it is, rotate it.", no_args_is_help=True)
DatabaseOption = Annotated[Optional[str], typer.Option("--database", "-d", help="Database URL (the key file lives beside a SQLite database).")]


@secret_app.command("rotate")
def rotate_command(
    database: DatabaseOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Sign new links with a new key; links already sent keep working (the old key is kept 90 days).

    Example: `legato secret rotate -d sqlite:///legato.db`
    """
    from legato.deliver.tokens import rotate_secret
    from legato.store.db import database_url

    try:
        path, kept = rotate_secret(database_url(database))
    except LegatoError as error:
        fail(error)
    if as_json:
        emit_json({"file": str(path), "keys": kept})
        return
    console.print(f"new signing key in {path} ({kept} key{'s' if kept != 1 else ''} accepted)", highlight=False)
