"""Every outcome a marketer imports, counted per agent and broken down as they ask.

Over the decisions made in ``[decided_from, decided_to)``: how many decisions and customers,
how many were settled and sent, and how many settled decisions had an open, a click, a visit,
a purchase (with its revenue), an unsubscribe or a complaint within their window (the
window rule of ``legato.learn.attribution``: each outcome counts once per agent). Rows can
be broken down by creative, offer, channel (a decision without a message, held out or "do
nothing", has none: ``None``) and by segment (the playbook's segments, membership
evaluated when the report is made; a customer in two segments counts in both).

This is a description of what happened, not a comparison: lift against the holdout is
``legato.monitor.lift``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from legato.errors import Invalid
from legato.store.schema import decisions
from legato.store.status import DecisionStatus

BREAKDOWNS = {"creative": decisions.c.creative_id, "offer": decisions.c.offer_id, "channel": decisions.c.channel}
COUNTED = ("opened", "clicked", "visited", "purchased", "unsubscribed", "complained")


@dataclass(frozen=True)
class OutcomeRow:
    agent_id: str
    group: dict[str, str | None]  # breakdown → value, e.g. {"creative": "mens_collection", "segment": "big_spenders"}
    decisions: int
    customers: int
    settled: int
    sent: int
    opened: int
    clicked: int
    visited: int
    purchased: int
    revenue: float
    unsubscribed: int
    complained: int

    def to_dict(self) -> dict[str, Any]:
        return {"agent": self.agent_id, **self.group, **{k: v for k, v in self.__dict__.items() if k not in ("agent_id", "group")}}


def outcomes(
    connection: Connection,
    *,
    agent_id: str | None = None,
    decided_from: datetime | None = None,
    decided_to: datetime | None = None,
    by: tuple[str, ...] = (),
    segments: dict[str, sa.ColumnElement[bool]] | None = None,
) -> list[OutcomeRow]:
    """One row per agent and breakdown value; ``segments``: segment name → condition on ``decisions.customer_id``."""
    unknown = [b for b in by if b not in BREAKDOWNS and b != "segment"]
    if unknown:
        raise Invalid(f"cannot break down by {', '.join(unknown)}", hint=f"use {', '.join([*BREAKDOWNS, 'segment'])}")
    if "segment" in by and not segments:
        raise Invalid("a breakdown by segment needs the playbook's segments", hint="give --playbook, whose segments: section names them")
    where: list[sa.ColumnElement[bool]] = []
    if agent_id is not None:
        where.append(decisions.c.agent_id == agent_id)
    if decided_from is not None:
        where.append(decisions.c.decided_at >= decided_from)
    if decided_to is not None:
        where.append(decisions.c.decided_at < decided_to)
    keys = [b for b in by if b != "segment"]
    columns = [BREAKDOWNS[k].label(k) for k in keys]
    count_true = lambda column: sa.func.sum(sa.case((column.is_(True), 1), else_=0))  # noqa: E731
    measures = [
        sa.func.count().label("decisions"),
        sa.func.count(sa.distinct(decisions.c.customer_id)).label("customers"),
        sa.func.count(decisions.c.settled_at).label("settled"),
        sa.func.sum(sa.case((decisions.c.status == DecisionStatus.SENT, 1), else_=0)).label("sent"),
        *(count_true(decisions.c[name]).label(name) for name in COUNTED),
        sa.func.sum(sa.func.coalesce(decisions.c.revenue, 0.0)).label("revenue"),
    ]
    scopes: list[tuple[dict[str, str | None], list[sa.ColumnElement[bool]]]] = [({}, where)]
    if "segment" in by:
        scopes = [({"segment": name}, [*where, member]) for name, member in (segments or {}).items()]
    rows: list[OutcomeRow] = []
    for fixed, scope in scopes:
        query = sa.select(decisions.c.agent_id, *columns, *measures).where(*scope).group_by(decisions.c.agent_id, *(BREAKDOWNS[k] for k in keys))
        for row in connection.execute(query.order_by(decisions.c.agent_id, *(BREAKDOWNS[k] for k in keys))):
            m = row._mapping
            rows.append(
                OutcomeRow(
                    agent_id=m["agent_id"],
                    group={**fixed, **{k: m[k] for k in keys}},
                    decisions=int(m["decisions"]),
                    customers=int(m["customers"]),
                    settled=int(m["settled"]),
                    sent=int(m["sent"] or 0),
                    **{name: int(m[name] or 0) for name in COUNTED},
                    revenue=float(m["revenue"] or 0.0),
                )
            )
    return rows
