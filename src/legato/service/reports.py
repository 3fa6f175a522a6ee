"""Reports: lift against the holdout and the global control, every outcome broken down, segment sizes.

Periods are decisions made from ``since`` (inclusive) to ``until`` (exclusive); a face that
takes a date without a time for ``until`` means the whole of that day (see :func:`period`).
Segment membership is evaluated at ``until`` when given, else at ``now``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine

from legato.audience.segments import SegmentSample, member_ids, segment_sample
from legato.errors import Invalid
from legato.monitor.lift import LiftReport, measure
from legato.monitor.outcomes import OutcomeRow, outcomes
from legato.playbook.models import Playbook
from legato.store.schema import agents, decisions


def period(since: str | None, until: str | None) -> tuple[datetime | None, datetime | None]:
    """``--since``/``--until`` as typed: ISO dates or times; a date alone for ``until`` includes that day."""
    from legato.clock import parse_instant

    start = parse_instant(since) if since else None
    end = parse_instant(until) if until else None
    if end is not None and until is not None and "T" not in until.strip() and " " not in until.strip() and len(until.strip()) <= 10:
        end += timedelta(days=1)
    if start is not None and end is not None and end <= start:
        raise Invalid(f"--until ({until}) is not after --since ({since})", hint="give a period that ends after it starts")
    return start, end


@dataclass(frozen=True)
class LiftRow:
    """One agent's lift against one comparison group, in one segment (None: all customers)."""

    segment: str | None
    report: LiftReport

    def to_dict(self) -> dict[str, Any]:
        return {"segment": self.segment, **self.report.to_dict()}


def lift_report(
    engine: Engine,
    *,
    now: datetime,
    agent_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    by_segment: bool = False,
    playbook: Playbook | None = None,
) -> list[LiftRow]:
    """Each agent's lift per customer (intent to treat) against its holdout and the global control."""
    if by_segment and (playbook is None or not playbook.segments):
        raise Invalid("a breakdown by segment needs a playbook with segments", hint="give --playbook, whose segments: section names them")
    rows: list[LiftRow] = []
    with engine.connect() as connection:
        agent_ids = [agent_id] if agent_id else _agents(connection)
        scopes: list[tuple[str | None, Any]] = [(None, None)]
        if by_segment and playbook is not None:
            at = until or now
            scopes = [(name, decisions.c.customer_id.in_(member_ids(playbook, name, at, engine.dialect.name))) for name in playbook.segments]
        for agent in agent_ids:
            for segment, members in scopes:
                for against in ("holdout", "global_control"):
                    report = measure(connection, agent, decided_from=since, decided_to=until, against=against, customers=members)  # type: ignore[arg-type]
                    rows.append(LiftRow(segment, report))
    return rows


def outcome_report(
    engine: Engine,
    *,
    now: datetime,
    agent_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    by: tuple[str, ...] = (),
    playbook: Playbook | None = None,
) -> list[OutcomeRow]:
    """Every imported outcome per agent, broken down by creative, offer, channel and segment."""
    segments = None
    if "segment" in by:
        if playbook is None or not playbook.segments:
            raise Invalid("a breakdown by segment needs a playbook with segments", hint="give --playbook, whose segments: section names them")
        at = until or now
        segments = {name: decisions.c.customer_id.in_(member_ids(playbook, name, at, engine.dialect.name)) for name in playbook.segments}
    with engine.connect() as connection:
        return outcomes(connection, agent_id=agent_id, decided_from=since, decided_to=until, by=by, segments=segments)


def segment(engine: Engine, playbook: Playbook, name: str, *, at: datetime, limit: int = 10) -> SegmentSample:
    """A segment's or lifecycle stage's members (first holding stage wins), and a few of them."""
    return segment_sample(engine, playbook, name, at, limit=limit)


def _agents(connection: Any) -> list[str]:
    return list(connection.execute(sa.select(agents.c.id).order_by(agents.c.id)).scalars())
