"""A preview: who would get what if the cycle ran now, writing nothing.

The counts are the cycle's own: :func:`legato.cycle.run.preview_cycle` runs the cycle's steps
in one transaction that is always rolled back (why, in :mod:`legato.cycle.preview`), and the
few messages shown are the ones it would have scheduled or queued, rendered and checked as a
reviewer sees them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine

from legato.cycle.preview import Sample, samples
from legato.cycle.report import AgentReport, CycleReport
from legato.errors import Conflict, Invalid, NotFound
from legato.playbook.models import Playbook
from legato.service.cycles import refuse_going_back
from legato.store.schema import agents
from legato.store.status import AgentStatus, Route

# Every route, in the order a preview lists them.
ROUTES = (Route.SCHEDULED, Route.QUEUED, Route.SUPPRESSED, Route.HOLDOUT, Route.CONTROL, Route.GATED, Route.NOTHING)


@dataclass
class AgentPreview:
    """One agent's part of the cycle: decisions by route, reasons, and a few messages."""

    agent_id: str
    runs: bool  # False: the cycle would not run it (inactive in the playbook, or paused)
    why_not: str | None = None
    report: AgentReport | None = None
    samples: list[Sample] = field(default_factory=list)

    @property
    def routes(self) -> dict[str, int]:
        counted = self.report.routes if self.report is not None else {}
        return {str(route): int(counted.get(str(route), 0)) for route in ROUTES}

    def to_dict(self) -> dict[str, Any]:
        r = self.report
        return {
            "agent": self.agent_id,
            "runs": self.runs,
            "why_not": self.why_not,
            "trust_stage": None if r is None else r.stage,
            "audience": 0 if r is None else r.audience,
            "routes": self.routes,
            "suppressed": {} if r is None else dict(sorted(r.suppressed.items())),
            "queued_for": {} if r is None else dict(sorted(r.queued_by.items())),
            "delayed": 0 if r is None else r.delayed,
            "delayed_by": {} if r is None else dict(sorted(r.delayed_by.items())),
            "would_settle": 0 if r is None else r.settled,
            "stop_loss_breaches": [] if r is None else [b.to_dict() for b in r.stop_loss],
            "samples": [s.to_dict() for s in self.samples],
        }


@dataclass
class Preview:
    at: datetime
    agents: list[AgentPreview]

    def to_dict(self) -> dict[str, Any]:
        return {"preview": True, "at": self.at.isoformat(), "written": "nothing", "agents": [a.to_dict() for a in self.agents]}


def preview(engine: Engine, playbook: Playbook, now: datetime, *, agent: str | None = None, sample_count: int = 3) -> Preview:
    """What a ``legato run`` at ``now`` would decide, for every agent or only ``agent``.

    Refused as a run would be: a store without customers, a time before the last cycle; and
    when the last cycle did not finish (a run would resume it instead of starting a new one).
    """
    from legato.cycle.run import preview_cycle, unfinished_cycle

    if sample_count < 0:
        raise Invalid(f"--samples must be 0 or more, not {sample_count}")
    known = [a.id for a in playbook.agents]
    if agent is not None and agent not in known:
        raise NotFound(f"the playbook has no agent '{agent}'", hint=f"its agents are: {', '.join(known)}")
    unfinished = unfinished_cycle(engine)
    if unfinished is not None:
        raise Conflict(
            f"cycle {unfinished.id} (at {unfinished.at:%Y-%m-%d %H:%M} UTC) did not finish: the next `legato run` resumes it rather than starting a new cycle",
            hint="run `legato run PLAYBOOK` to finish it, then preview the next cycle",
        )
    refuse_going_back(engine, now)
    wanted = [a for a in playbook.agents if agent is None or a.id == agent]

    def inspect(joined: Engine, report: CycleReport) -> dict[str, AgentPreview]:
        with joined.connect() as connection:
            status = dict(connection.execute(sa.select(agents.c.id, agents.c.status)).tuples().all())
            shown: dict[str, AgentPreview] = {}
            for each in wanted:
                ran = report.agents.get(each.id)
                if ran is None:
                    why = "inactive in the playbook" if not each.active else "paused" if status.get(each.id) == AgentStatus.PAUSED else "not run"
                    shown[each.id] = AgentPreview(each.id, runs=False, why_not=why)
                    continue
                shown[each.id] = AgentPreview(each.id, runs=True, report=ran, samples=samples(connection, playbook, report.cycle_id, each.id, sample_count))
        return shown

    _, seen = preview_cycle(engine, playbook, now, until=agent, inspect=inspect)
    assert isinstance(seen, dict)
    return Preview(at=now, agents=list(seen.values()))
