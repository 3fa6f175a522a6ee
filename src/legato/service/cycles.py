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
    wait: float = 0.0,
) -> Any:
    """One cycle at ``clock.now()`` under the cycle's lease; returns its report.

    Another cycle running on the store makes it wait up to ``wait`` seconds, then refuse
    (:class:`legato.cycle.lease.LeaseHeld`, a ``Conflict`` naming the holder). A cycle that did
    not finish is resumed first, and that is all the run does (``report.resumed``). A new
    cycle is refused when it would go back in time.
    """
    from legato.cycle import run_cycle
    from legato.cycle.lease import hold
    from legato.cycle.run import unfinished_cycle

    with hold(engine, wait=wait) as lease:
        if unfinished_cycle(engine) is None:
            refuse_going_back(engine, clock.now())
        return run_cycle(engine, playbook, clock, dict(transports), progress=progress, lease=lease)
