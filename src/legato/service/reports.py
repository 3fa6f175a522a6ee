"""Reports: lift against the holdout and the global control, every outcome broken down, what the
guardrails did, fairness, the playbook's KPIs by day, segment sizes.

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
from legato.errors import Invalid, LegatoError
from legato.monitor.fairness import FairnessAudit, audit_fairness
from legato.monitor.guardrails import RuleCount, rule_counts
from legato.monitor.kpis import BY, DayKpis, KpiReport, kpis_by_day
from legato.monitor.kpis import report as kpi_summary
from legato.monitor.lift import LiftReport, measure
from legato.monitor.outcomes import OutcomeRow, outcomes
from legato.playbook.models import Playbook
from legato.store.schema import agents, cycles, decisions, metrics, playbook_versions


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
    against: tuple[str, ...] = ("holdout", "global_control"),
) -> list[LiftRow]:
    """Each agent's lift per customer (intent to treat) against its holdout and the global control
    (``against``: only some of them, e.g. the console's overview asks for the holdout alone)."""
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
                for group in against:
                    report = measure(connection, agent, decided_from=since, decided_to=until, against=group, customers=members)  # type: ignore[arg-type]
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


def guardrail_report(
    engine: Engine, *, agent_id: str | None = None, since: datetime | None = None, until: datetime | None = None
) -> list[RuleCount]:
    """How many decisions each rule blocked, delayed or escalated, per agent and UTC day."""
    with engine.connect() as connection:
        return rule_counts(connection, agent_id=agent_id, decided_from=since, decided_to=until)


def fairness_report(
    engine: Engine, playbook: Playbook, *, now: datetime, since: datetime | None = None, record_breaches: bool = True
) -> list[FairnessAudit]:
    """Selection rates per protected group for each agent; ``record_breaches`` raises each breach
    as a finding in the review queue (``legato report fairness``), else nothing is written."""
    if not playbook.guardrails.protected_attributes:
        raise Invalid("the playbook declares no protected attributes to audit", hint="list them under guardrails.protected_attributes")
    return audit_fairness(engine, playbook, now, since=since, record_breaches=record_breaches)


def kpi_report(
    engine: Engine, *, agent_id: str | None = None, since: datetime | None = None, until: datetime | None = None
) -> list[DayKpis]:
    """The playbook's KPIs per agent and UTC day of the decision, over its sends (rates per settled send)."""
    with engine.connect() as connection:
        return kpis_by_day(connection, agent_id=agent_id, decided_from=since, decided_to=until)


def kpis(
    engine: Engine, playbook: Playbook | None, *, agent_id: str | None = None, since: datetime | None = None,
    until: datetime | None = None, by: str | None = None,
) -> KpiReport:
    """Each agent's KPIs over whole UTC days from the kept counts, primary first, against their
    targets, with lift vs holdout. Targets are ``playbook``'s, else the playbook the newest cycle ran."""
    if by is not None and by not in BY:
        raise Invalid(f"cannot break the KPIs down by {by}", hint=f"use --by {' | '.join(BY)}")
    with engine.connect() as connection:
        if playbook is None:
            playbook = _newest_run_playbook(connection)
        found = kpi_summary(connection, playbook, agent_id=agent_id, since=since, until=until, by=by)
        if not found.groups and connection.execute(sa.select(decisions.c.id).limit(1)).first() is not None \
                and connection.execute(sa.select(metrics.c.agent_id).limit(1)).first() is None:
            raise Invalid(
                "the store has decisions but no kept metrics: it predates them (migration 0027)",
                hint="count them once from history with `legato report kpis --rebuild`",
            )
    return found


def rebuild_metrics(engine: Engine) -> int:
    """Recount every kept metric from history (decisions, review items, delivery reports); returns the keys written."""
    from legato.monitor.metrics import rebuild

    with engine.begin() as connection:
        return rebuild(connection)


def _newest_run_playbook(connection: Any) -> Playbook | None:
    from legato.validation import parse_playbook

    text = connection.execute(
        sa.select(playbook_versions.c.text).join(cycles, cycles.c.playbook_version_id == playbook_versions.c.id).order_by(cycles.c.id.desc()).limit(1)
    ).scalar_one_or_none()
    if text is None:
        return None
    try:
        return parse_playbook(text)
    except LegatoError:
        return None  # a version today's engine no longer reads: the KPIs without targets


def segment(engine: Engine, playbook: Playbook, name: str, *, at: datetime, limit: int = 10) -> SegmentSample:
    """A segment's or lifecycle stage's members (first holding stage wins), and a few of them."""
    return segment_sample(engine, playbook, name, at, limit=limit)


def _agents(connection: Any) -> list[str]:
    return list(connection.execute(sa.select(agents.c.id).order_by(agents.c.id)).scalars())
