"""Running a cycle: the decisions of every active agent at one instant, then what is due is sent."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine

from legato.clock import Clock
from legato.errors import Conflict
from legato.playbook.models import Playbook
from legato.store.schema import cycles


def last_cycle_at(engine: Engine) -> datetime | None:
    with engine.connect() as connection:
        return connection.execute(sa.select(sa.func.max(cycles.c.at))).scalar()


def refuse_going_back(engine: Engine, now: datetime) -> None:
    """A cycle before the last one would decide as if later sends, caps and outcomes had not happened."""
    last = last_cycle_at(engine)
    if last is not None and now < last:
        raise Conflict(
            f"the last cycle ran at {last:%Y-%m-%d %H:%M} UTC, after {now:%Y-%m-%d %H:%M} UTC",
            hint="run at or after the last cycle (--at), or use another database for what-if runs (legato simulate)",
        )


def run(
    engine: Engine,
    playbook: Playbook,
    clock: Clock,
    transports: Mapping[str, Any],
    *,
    progress: Callable[[str, int], None] | None = None,
) -> Any:
    """One cycle at ``clock.now()``, refused when it would go back in time; returns its report."""
    from legato.cycle import run_cycle

    refuse_going_back(engine, clock.now())
    return run_cycle(engine, playbook, clock, transports, progress=progress)
