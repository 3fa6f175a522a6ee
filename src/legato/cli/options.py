"""Options the commands that act as a person share (`legato review`, `legato agents`), and how they reach the store.

Every command that changes something needs the name of the person doing it (``--reviewer``
or ``--by``, either spelling works), because each change is written to the audit log under
that name. ``--at`` acts at a simulated time, like ``legato run --at``.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from legato.clock import SystemClock, parse_instant

DatabaseOption = Annotated[
    str | None,
    typer.Option("--database", "-d", help="Database URL; default $LEGATO_DATABASE_URL, else sqlite:///legato.db"),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")]
ReviewerOption = Annotated[str, typer.Option("--reviewer", "--by", help="Your name, as it goes into the audit log.")]
AtOption = Annotated[str | None, typer.Option("--at", help="Act at this time (ISO-8601, UTC unless an offset is given); default now.")]


def engine_for(database: str | None) -> Any:
    from legato.store.db import connect

    return connect(database)


def now_at(at: str | None) -> datetime:
    return parse_instant(at) if at else SystemClock().now()


def playbook_at(path: Path | None) -> Any:
    if path is None:
        return None
    from legato.validation import load_playbook

    return load_playbook(path)
