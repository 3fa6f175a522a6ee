"""The write step: decisions, their outbox rows, review items and the audit entry of a page."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timezone

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa
from sqlalchemy import Connection

from legato.cycle.action_table import ActionTable
from legato.cycle.partitions import Partition
from legato.decide.actions import NOTHING
from legato.decide.features import encode_context
from legato.deliver import outbox as outbox_writer
from legato.monitor import metrics
from legato.playbook.models import Agent, Playbook
from legato.store.audit import record
from legato.store.bulk import insert_columns
from legato.store.fetch import fetch_columns
from legato.store.schema import cycles, decisions
from legato.store.status import ReviewStatus
from legato.trust.escalation import evidence_for_reason
from legato.trust.ladder import EXECUTE, REVIEW
from legato.trust.review.items import DecisionItem, open_decision_items


def queue_reviews(
    connection: Connection,
    playbook: Playbook,
    agent: Agent,
    cycle_id: int,
    partition: Partition,
    now: datetime,
    ids: npt.NDArray[np.str_],
    reason: npt.NDArray[np.object_],
    priority: npt.NDArray[np.int64],
    routes: npt.NDArray[np.object_],
) -> None:
    """One review item per decision a person must see: "open" ones wait, "audit" ones went out.

    The items go through the review queue's one writer (:mod:`legato.trust.review.items`).
    """
    wanted = reason != None  # noqa: E711 - elementwise on objects
    if not wanted.any():
        return
    by_customer = {
        customer: (r, int(p), ReviewStatus.OPEN if route_ == REVIEW else ReviewStatus.AUDIT)
        for customer, r, p, route_ in zip(ids[wanted].tolist(), reason[wanted].tolist(), priority[wanted].tolist(), routes[wanted].tolist(), strict=True)
    }
    found, _ = fetch_columns(
        connection,
        sa.select(decisions.c.id, decisions.c.customer_id, decisions.c.content_hash).where(
            partition_rows(cycle_id, agent.id, partition),
            decisions.c.route.in_((REVIEW, EXECUTE)),
        ),
    )
    # What the reviewer reads besides the decision, e.g. the statement of a company value it conflicts with.
    evidence = {r: evidence_for_reason(playbook, r) for r in set(reason[wanted].tolist())}
    items = []
    for decision_id, customer, content_hash in zip(found["id"].tolist(), found["customer_id"].tolist(), found["content_hash"].tolist(), strict=True):
        item = by_customer.get(customer)
        if item is not None:
            why, rank, status = item
            items.append(DecisionItem(int(decision_id), agent.id, why, rank, status, content_hash, evidence[why]))
    open_decision_items(connection, items, now, playbook.review.sla_hours)


def partition_rows(cycle_id: int, agent_id: str, partition: Partition) -> sa.ColumnElement[bool]:
    """The decisions one partition of one agent's cycle wrote, found by what they are.

    The unique (cycle, agent, customer) index makes this exact; ids are not used, so
    partitions written by several processes at once would each still find their own rows.
    """
    return sa.and_(
        decisions.c.cycle_id == cycle_id,
        decisions.c.agent_id == agent_id,
        decisions.c.customer_id > partition.low,
        decisions.c.customer_id <= partition.high,
    )


def write_page(
    connection: Connection,
    agent: Agent,
    cycle_id: int,
    now: datetime,
    partition: Partition,
    ids: npt.NDArray[np.str_],
    chosen: npt.NDArray[np.int64],
    propensity: npt.NDArray[np.float64],
    expected: npt.NDArray[np.float64],
    holdout: npt.NDArray[np.bool_],
    reasons: npt.NDArray[np.object_],
    status: npt.NDArray[np.object_],
    send_at: npt.NDArray[np.datetime64],
    table: ActionTable,
    features: npt.NDArray[np.float64],
    allowed: list[bytes | None],
    *,
    segments: npt.NDArray[np.object_] | None = None,
) -> None:
    """Decisions, then the outbox rows derived from them in SQL, then the page's counts and audit entry.

    ``segments`` is each customer's lifecycle stage (None: the playbook has none)."""
    acting = chosen >= 0
    index = np.where(acting, chosen, 0)
    n = len(ids)
    findings = {reason: json.dumps([reason] if reason else []) for reason in set(reasons.tolist())}
    nothing = np.full(n, None, dtype=object)
    # The playbook the decisions were made with is their cycle's: review and dispatch render from it.
    version_id = connection.execute(sa.select(cycles.c.playbook_version_id).where(cycles.c.id == cycle_id)).scalar_one()
    columns = {
        "cycle_id": [cycle_id] * n,
        "agent_id": [agent.id] * n,
        "customer_id": ids.tolist(),
        "decided_at": np.full(n, np.datetime64(now.astimezone(timezone.utc).replace(tzinfo=None), "us")),
        "action": np.where(acting, table.keys[index], NOTHING),
        "offer_id": np.where(acting, table.offer[index], nothing),
        "creative_id": np.where(acting, table.creative[index], nothing),
        "channel": np.where(acting, table.channel[index], nothing),
        "send_at": send_at,
        "propensity": propensity,
        "expected_value": expected,
        "holdout": holdout,
        "findings": [findings[reason] for reason in reasons.tolist()],
        "route": status,  # the route is the status a decision starts in
        "status": status,
        "content_hash": np.where(acting, table.content_hash[index], nothing),
        "context": encode_context(features),
        "action_index": np.where(acting, chosen, nothing),
        "allowed_actions": allowed,
        "playbook_version_id": [version_id] * n,
        "objective": [agent.objective] * n,
        "segment": segments.tolist() if segments is not None else [None] * n,
    }
    insert_columns(connection, decisions, columns)
    outbox_writer.schedule_decided(connection, sa.and_(partition_rows(cycle_id, agent.id, partition), decisions.c.route == EXECUTE))
    tally = metrics.Tally()
    dims = list(zip(columns["channel"].tolist(), columns["creative_id"].tolist(), columns["offer_id"].tolist(), strict=True))
    base = metrics.Key(agent.id, metrics.day_of(now), agent.objective)
    metrics.count_page(tally, base, status.tolist(), dims, columns["segment"], reasons.tolist())
    metrics.add(connection, tally)
    counts = Counter(status.tolist())
    record(connection, now, f"agent:{agent.id}", "decided", "cycle", str(cycle_id), {"decisions": len(ids), **{str(k): v for k, v in counts.items()}})
