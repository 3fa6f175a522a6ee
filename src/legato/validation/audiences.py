"""Audiences counted on the data as it is, for ``legato validate --database``.

An audience that holds nobody is not wrong in itself (the data may not be imported yet), so
it is a note, not a problem: it names the agent, how many customers the store holds and,
when lifecycle stages are in play, how many are in each.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from legato.audience.expr import ExpressionError
from legato.audience.segments import audience_sizes
from legato.clock import SystemClock
from legato.playbook.models import Playbook
from legato.playbook.problems import Problem


def empty_audiences(engine: Any, playbook: Playbook, at: datetime | None = None) -> list[Problem]:
    """A note at each agent's ``audience`` that no customer in the store matches now."""
    when = at or SystemClock().now()
    try:
        sizes = audience_sizes(engine, playbook, when)
    except ExpressionError:
        return []  # the lifecycle does not compile: already a problem of its own
    notes = []
    for index, agent in enumerate(playbook.agents):
        if sizes.agents.get(agent.id) is None or sizes.agents[agent.id]:
            continue  # counted and not empty, or not countable (its own problem says why)
        if not sizes.total:
            hint = "the database holds no customers: import them first (legato import customers FILE)"
        else:
            hint = f"none of the {sizes.total:,} customers in the database matches it at {when:%Y-%m-%d %H:%M} UTC"
            if sizes.stages and "lifecycle_stage" in agent.audience:
                counts = ", ".join(f"{name or 'no stage'} {count:,}" for name, count in sorted(sizes.stages.items(), key=lambda i: str(i[0])))
                hint += f"; lifecycle stages now: {counts}"
        notes.append(Problem(("agents", index, "audience"), f"agent '{agent.id}' has an empty audience on the current data", hint))
    return notes
