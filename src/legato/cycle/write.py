"""The write step: decisions, their outbox rows, review items and the audit entry of a page."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa
from sqlalchemy import Connection

from legato.cycle.action_table import ActionTable
from legato.cycle.audit import audit
from legato.decide.actions import NOTHING
from legato.decide.features import encode_context
from legato.playbook.models import Agent, Playbook
from legato.store.bulk import insert_many
from legato.store.schema import decisions, outbox, review_items
from legato.trust.escalation import evidence_for_reason
from legato.trust.ladder import EXECUTE, REVIEW
from legato.trust.review import assign_due_dates


def queue_reviews(
    connection: Connection,
    playbook: Playbook,
    agent: Agent,
    cycle_id: int,
    written_after: int,
    now: datetime,
    ids: npt.NDArray[np.str_],
    reason: npt.NDArray[np.object_],
    priority: npt.NDArray[np.int64],
    routes: npt.NDArray[np.object_],
) -> None:
    """One review item per decision a person must see: "open" ones wait, "audit" ones went out."""
    wanted = reason != None  # noqa: E711 - elementwise on objects
    if not wanted.any():
        return
    by_customer = {
        customer: (r, int(p), "open" if route_ == REVIEW else "audit")
        for customer, r, p, route_ in zip(ids[wanted].tolist(), reason[wanted].tolist(), priority[wanted].tolist(), routes[wanted].tolist(), strict=True)
    }
    rows = connection.execute(
        sa.select(decisions.c.id, decisions.c.customer_id, decisions.c.content_hash).where(
            decisions.c.cycle_id == cycle_id,
            decisions.c.agent_id == agent.id,
            decisions.c.id > written_after,
            decisions.c.route.in_((REVIEW, EXECUTE)),
        )
    ).all()
    # What the reviewer reads besides the decision, e.g. the statement of a company value it conflicts with.
    evidence = {r: json.dumps(e) if (e := evidence_for_reason(playbook, r)) is not None else None for r in set(reason[wanted].tolist())}
    items = [
        (decision_id, agent.id, by_customer[customer][0], by_customer[customer][1], by_customer[customer][2], now, content_hash, evidence[by_customer[customer][0]])
        for decision_id, customer, content_hash in rows
        if customer in by_customer
    ]
    insert_many(connection, review_items, ["decision_id", "agent_id", "reason", "priority", "status", "created_at", "content_hash", "evidence"], items)
    assign_due_dates(connection, playbook.review.sla_hours)


def write_page(
    connection: Connection,
    agent: Agent,
    cycle_id: int,
    now: datetime,
    ids: npt.NDArray[np.str_],
    chosen: npt.NDArray[np.int64],
    propensity: npt.NDArray[np.float64],
    expected: npt.NDArray[np.float64],
    holdout: npt.NDArray[np.bool_],
    reasons: npt.NDArray[np.object_],
    route_column: npt.NDArray[np.object_],
    status: npt.NDArray[np.object_],
    send_at: npt.NDArray[np.datetime64],
    table: ActionTable,
    features: npt.NDArray[np.float64],
    allowed: list[bytes | None],
) -> int:
    """Decisions, then the outbox rows derived from them in SQL; returns the largest decision id
    before this page, so later steps of the same transaction can find the page's rows."""
    before = connection.execute(sa.select(sa.func.coalesce(sa.func.max(decisions.c.id), 0))).scalar_one()
    acting = chosen >= 0
    index = np.where(acting, chosen, 0)
    keys = np.where(acting, table.keys[index], NOTHING)
    send_times = _aware(send_at)
    n = len(ids)
    findings = {reason: json.dumps([reason] if reason else []) for reason in set(reasons.tolist())}
    columns = {
        "cycle_id": [cycle_id] * n,
        "agent_id": [agent.id] * n,
        "customer_id": ids.tolist(),
        "decided_at": [now] * n,
        "action": keys.tolist(),
        "offer_id": np.where(acting, table.offer[index], None).tolist(),
        "creative_id": np.where(acting, table.creative[index], None).tolist(),
        "channel": np.where(acting, table.channel[index], None).tolist(),
        "send_at": send_times,
        "propensity": propensity.tolist(),
        "expected_value": expected.tolist(),
        "holdout": holdout.tolist(),
        "findings": [findings[reason] for reason in reasons.tolist()],
        "route": route_column.tolist(),
        "status": status.tolist(),
        "content_hash": np.where(acting, table.content_hash[index], None).tolist(),
        "context": encode_context(features),
        "action_index": np.where(acting, chosen, None).tolist(),
        "allowed_actions": allowed,
    }
    insert_many(connection, decisions, list(columns), list(zip(*columns.values(), strict=True)))
    this_page = sa.and_(decisions.c.cycle_id == cycle_id, decisions.c.agent_id == agent.id, decisions.c.id > before)
    connection.execute(
        sa.insert(outbox).from_select(
            ["decision_id", "customer_id", "channel", "send_at", "status", "attempts"],
            sa.select(
                decisions.c.id,
                decisions.c.customer_id,
                decisions.c.channel,
                decisions.c.send_at,
                sa.literal("pending"),
                sa.literal(0),
            ).where(this_page, decisions.c.route == EXECUTE),
        )
    )
    counts = Counter(status.tolist())
    audit(connection, now, f"agent:{agent.id}", "decided", "cycle", str(cycle_id), {"decisions": len(ids), **counts})
    return int(before)


def _aware(values: npt.NDArray[np.datetime64]) -> list[datetime | None]:
    from datetime import timezone

    return [None if v is None else v.replace(tzinfo=timezone.utc) for v in values.astype("datetime64[us]").astype(object).tolist()]
