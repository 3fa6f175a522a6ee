"""The KPI counts, kept as they happen: the one writer of the ``metrics`` table.

Each change of state that a KPI counts adds to its key **in the transaction of that change**
(:func:`add`, an upsert ``value += n``), so a crash can neither count a change that was rolled
back nor lose the count of one that committed, and a report reads these rows instead of
rescanning decisions. Who counts what:

================  ==========================================  =================================
writer            what                                        counts (:class:`Measure`)
================  ==========================================  =================================
the cycle         a page of decisions (``cycle.write``)       audience, decided, held_out,
                                                              control, gated, suppressed (by
                                                              reason), queued, scheduled
the review queue  an item's transition (approve, reject,      approved, rejected, expired,
                  edit, withdraw, expire)                     reviewed, review_seconds
the dispatcher    a decision that became sent or failed       sent, failed
delivery reports  a new delivered or bounced report           delivered, bounced
                  (``service.deliveries.record``)
attribution       a decision settled, a late outcome          settled, visited, converted,
                  credited (``learn.attribution``)            revenue, offer_cost, opened,
                                                              clicked, unsubscribed, complained
================  ==========================================  =================================

**Every count is keyed by its decision**, whenever it happens: the UTC day the decision was
made, its agent, objective, channel, creative, offer and segment (the customer's lifecycle
stage when decided). A day's row therefore reads as a cohort: of the decisions made that day,
how many were sent, how many settled, what they brought. This is the arithmetic of
``legato report kpis`` and the stop-loss (rates per settled send). The outcomes of settled
decisions are split by ``arm`` (sent, holdout, control, unsent) so that the held-out
customers' outcomes sit next to the treated ones'; ``reason`` splits the suppressed.

A count that is undone is added back negative (an approval withdrawn, an outcome a late
refund took back): the kept value is always what a recount of the history says
(:func:`recount`, which ``legato report kpis --rebuild`` writes for stores older than the
table, and which the conformance test compares with the kept counts).

Upserts are sorted by key, so two transactions adding to the same keys take their row locks in
the same order on PostgreSQL and never deadlock; each batch of a writer is aggregated in
memory first, one upsert per key.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy.dialects import postgresql, sqlite

from legato.store.schema import decisions, events, metric_groups, metric_totals, metrics, outbox, playbook_versions, review_items
from legato.store.status import DecisionStatus, OutboxStatus, ReviewKind, ReviewStatus, Route


class Measure(StrEnum):
    """What the ``metrics`` table counts (its ``name``)."""

    AUDIENCE = "audience"  # decisions written: every customer of the audience the cycle decided for
    DECIDED = "decided"  # of those, where the policy chose a message (sent or not; not "do nothing")
    HELD_OUT = "held_out"  # the agent's holdout
    CONTROL = "control"  # the program's global control group
    GATED = "gated"  # the uplift gate left them alone
    SUPPRESSED = "suppressed"  # a guardrail, the budget or reachability stopped the message (by reason)
    QUEUED = "queued"  # proposed to a person
    SCHEDULED = "scheduled"  # went straight to the outbox
    APPROVED = "approved"  # review items (decisions) approved now
    REJECTED = "rejected"
    EXPIRED = "expired"
    REVIEWED = "reviewed"  # items a person approved or rejected: what review_seconds is over
    REVIEW_SECONDS = "review_seconds"  # from queued to a person's decision, summed
    SENT = "sent"  # messages that went out (a later hard bounce fails the decision, it stays sent here)
    FAILED = "failed"  # decisions that failed: never sent, or reported failed after
    DELIVERED = "delivered"  # a provider's delivered report
    BOUNCED = "bounced"  # a provider's bounce report (hard or soft)
    SETTLED = "settled"  # attribution window closed (by arm)
    VISITED = "visited"
    CONVERTED = "converted"
    REVENUE = "revenue"
    REVENUE_SQUARES = "revenue_sq"  # each decision's revenue squared, summed: the variance of revenue per decision
    OFFER_COST = "offer_cost"  # the offer's cost of each sent decision that converted
    OPENED = "opened"
    CLICKED = "clicked"
    UNSUBSCRIBED = "unsubscribed"
    COMPLAINED = "complained"


class Arm(StrEnum):
    """Which group a settled decision's outcomes count for."""

    SENT = "sent"
    HOLDOUT = "holdout"
    CONTROL = "control"
    UNSENT = "unsent"  # treated but no message went (nothing, gated, suppressed, rejected, expired)


# route → what the cycle counts for it (besides audience and decided)
_ROUTE_MEASURE = {
    Route.HOLDOUT: Measure.HELD_OUT,
    Route.CONTROL: Measure.CONTROL,
    Route.GATED: Measure.GATED,
    Route.SUPPRESSED: Measure.SUPPRESSED,
    Route.QUEUED: Measure.QUEUED,
    Route.SCHEDULED: Measure.SCHEDULED,
}
_REVIEW_MEASURE = {ReviewStatus.APPROVED: Measure.APPROVED, ReviewStatus.REJECTED: Measure.REJECTED, ReviewStatus.EXPIRED: Measure.EXPIRED}
OUTCOMES = (Measure.VISITED, Measure.CONVERTED, Measure.REVENUE, Measure.REVENUE_SQUARES, Measure.OFFER_COST, Measure.OPENED, Measure.CLICKED, Measure.UNSUBSCRIBED, Measure.COMPLAINED)


@dataclass(frozen=True, order=True)
class Key:
    """What a count is kept under: its decision's day and dimensions ('' for none)."""

    agent_id: str
    day: str
    objective: str = ""
    channel: str = ""
    creative: str = ""
    offer: str = ""
    segment: str = ""


# The decision columns a Key is made of: select these, then key_of(row).
KEY_COLUMNS = (
    decisions.c.agent_id, decisions.c.decided_at, decisions.c.objective, decisions.c.channel,
    decisions.c.creative_id, decisions.c.offer_id, decisions.c.segment,
)


def day_of(at: datetime) -> str:
    """The UTC day of an instant, as the table keeps it."""
    if at.tzinfo is not None:
        at = at.astimezone(timezone.utc)
    return at.date().isoformat()


def key_of(row: Any) -> Key:
    """The key of a decision row holding :data:`KEY_COLUMNS`."""
    return Key(
        row.agent_id, day_of(row.decided_at), row.objective or "", row.channel or "", row.creative_id or "", row.offer_id or "", row.segment or ""
    )


def arm_of(route: str, holdout: bool, left: bool) -> Arm:
    """The arm a settled decision's outcomes count for; ``left``: its message went out (its outbox
    row is sent), whatever the provider said after (a hard bounce fails the decision, not the send)."""
    if holdout or route == Route.HOLDOUT:
        return Arm.HOLDOUT
    if route == Route.CONTROL:
        return Arm.CONTROL
    return Arm.SENT if left else Arm.UNSENT


def message_left() -> sa.ColumnElement[bool]:
    """Per decision row: its message went out (the decision is sent, or its outbox row is: a
    decision failed by a later report), for :func:`arm_of`."""
    return sa.or_(
        decisions.c.status == DecisionStatus.SENT,
        sa.exists().where(outbox.c.decision_id == decisions.c.id, outbox.c.status == OutboxStatus.SENT),
    ).label("left")


class Tally:
    """Counts of one batch, aggregated in memory before one upsert per key (:func:`add`)."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[Key, str, str, str]] = Counter()

    def count(self, key: Key, measure: Measure, n: float = 1, *, arm: str = "", reason: str = "") -> None:
        if n:
            self.counts[(key, measure.value, arm, reason)] += n

    def __bool__(self) -> bool:
        return any(self.counts.values())

    def merge(self, other: Tally) -> None:
        """Add another tally's counts to this one (negative counts too, unlike ``Counter +``)."""
        for k, v in other.counts.items():
            self.counts[k] += v


# The breakdowns ``metric_groups`` sums each key under (``legato report kpis --by``).
DIMENSIONS = ("creative", "offer", "channel", "segment")


def add(connection: Connection, tally: Tally) -> None:
    """Add a batch's counts to their keys, to their agent's totals and to each breakdown
    member's totals, in the caller's transaction: one upsert per key."""
    totals: Counter[tuple[str, str, str, str, str]] = Counter()
    groups: Counter[tuple[str, str, str, str, str, str, str]] = Counter()
    rows = []
    for (key, name, arm, reason), n in sorted(tally.counts.items(), key=lambda item: (item[0][0], item[0][1], item[0][2], item[0][3])):
        if not n:
            continue
        rows.append({
            "agent_id": key.agent_id, "name": name, "day": key.day, "objective": key.objective, "channel": key.channel,
            "creative": key.creative, "offer": key.offer, "segment": key.segment, "arm": arm, "reason": reason[:128], "value": float(n),
        })
        totals[(key.agent_id, name, key.day, arm, reason[:128])] += n
        for dimension in DIMENSIONS:
            groups[(dimension, key.agent_id, getattr(key, dimension), name, arm, reason[:128], key.day)] += n
    if rows:
        connection.execute(_upsert(connection.dialect.name, metrics), rows)
        summed = [
            {"agent_id": agent, "name": name, "day": day, "arm": arm, "reason": reason, "value": float(n)}
            for (agent, name, day, arm, reason), n in sorted(totals.items())
            if n
        ]
        if summed:
            connection.execute(_upsert(connection.dialect.name, metric_totals), summed)
        members = [
            {"dimension": dimension, "agent_id": agent, "grp": grp, "name": name, "arm": arm, "reason": reason, "day": day, "value": float(n)}
            for (dimension, agent, grp, name, arm, reason, day), n in sorted(groups.items())
            if n
        ]
        if members:
            connection.execute(_upsert(connection.dialect.name, metric_groups), members)


_UPSERTS: dict[tuple[str, str], Any] = {}


def _upsert(dialect: str, table: sa.Table) -> Any:
    if (dialect, table.name) not in _UPSERTS:
        insert = postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)
        _UPSERTS[(dialect, table.name)] = insert.on_conflict_do_update(
            index_elements=list(table.primary_key.columns), set_={"value": table.c.value + insert.excluded.value}
        )
    return _UPSERTS[(dialect, table.name)]


def keys_for(connection: Connection, decision_ids: Iterable[int]) -> dict[int, Key]:
    """The keys of these decisions, read in chunks."""
    ids = sorted(set(decision_ids))
    found: dict[int, Key] = {}
    for start in range(0, len(ids), 1_000):
        for row in connection.execute(sa.select(decisions.c.id, *KEY_COLUMNS).where(decisions.c.id.in_(ids[start : start + 1_000]))):
            found[int(row.id)] = key_of(row)
    return found


# --- what each writer counts ------------------------------------------------------------------


def count_page(tally: Tally, key_base: Key, routes: list[str], dims: list[tuple[str, str, str]], segments: list[str], reasons: list[str]) -> None:
    """A page of decisions the cycle writes: ``dims`` is each decision's (channel, creative, offer)."""
    grouped = Counter(zip(routes, dims, segments, ((r or "") if route == Route.SUPPRESSED else "" for route, r in zip(routes, reasons, strict=True)), strict=True))
    for (route, (channel, creative, offer), segment, reason), n in grouped.items():
        key = Key(key_base.agent_id, key_base.day, key_base.objective, channel or "", creative or "", offer or "", segment or "")
        tally.count(key, Measure.AUDIENCE, n)
        if channel:  # the policy chose a message (not "do nothing")
            tally.count(key, Measure.DECIDED, n)
        measure = _ROUTE_MEASURE.get(Route(route))
        if measure is not None:
            tally.count(key, measure, n, reason=reason if measure is Measure.SUPPRESSED else "")


def count_status_change(tally: Tally, key: Key, before: str | None, after: str) -> None:
    """A dispatched decision's status moved from ``before`` to ``after``.

    ``sent`` counts the messages that went out, so a sent decision that a provider's report
    later fails (a hard bounce) stays counted as sent and is counted failed as well."""
    if before == after:
        return
    if before == DecisionStatus.FAILED:
        tally.count(key, Measure.FAILED, -1)
    elif before == DecisionStatus.SENT and after != DecisionStatus.FAILED:
        tally.count(key, Measure.SENT, -1)
    if after == DecisionStatus.SENT:
        tally.count(key, Measure.SENT, 1)
    elif after == DecisionStatus.FAILED:
        tally.count(key, Measure.FAILED, 1)


def count_review(tally: Tally, key: Key, created_at: datetime, status: str, decided_at: datetime | None, sign: int) -> None:
    """A decision's review item entered (``sign`` 1) or left (-1) ``status``."""
    measure = _REVIEW_MEASURE.get(ReviewStatus(status)) if status in set(_REVIEW_MEASURE) else None
    if measure is None:
        return
    tally.count(key, measure, sign)
    if status in (ReviewStatus.APPROVED, ReviewStatus.REJECTED) and decided_at is not None:
        tally.count(key, Measure.REVIEWED, sign)
        tally.count(key, Measure.REVIEW_SECONDS, sign * max((decided_at - created_at).total_seconds(), 0.0))


def count_review_transition(connection: Connection, decision_id: int | None, kind: str, created_at: datetime,
                            before: tuple[str, datetime | None], after: tuple[str, datetime | None]) -> None:
    """One review item's transition, added now (review actions call this in their transaction)."""
    if decision_id is None or kind != ReviewKind.DECISION or before == after:
        return
    key = keys_for(connection, [decision_id]).get(decision_id)
    if key is None:
        return
    tally = Tally()
    count_review(tally, key, created_at, before[0], before[1], -1)
    count_review(tally, key, created_at, after[0], after[1], 1)
    add(connection, tally)


@dataclass(frozen=True)
class Outcome:
    """A settled decision's stored outcome, as attribution writes it."""

    visited: bool = False
    purchased: bool = False
    revenue: float = 0.0
    opened: bool = False
    clicked: bool = False
    unsubscribed: bool = False
    complained: bool = False


def count_outcome(tally: Tally, key: Key, arm: Arm, outcome: Outcome, offer_cost: float, sign: int = 1) -> None:
    """A settled decision's outcome (``sign`` -1 takes back one that a late credit replaced)."""
    tally.count(key, Measure.VISITED, sign * outcome.visited, arm=arm)
    tally.count(key, Measure.CONVERTED, sign * outcome.purchased, arm=arm)
    tally.count(key, Measure.REVENUE, sign * outcome.revenue, arm=arm)
    tally.count(key, Measure.REVENUE_SQUARES, sign * outcome.revenue * outcome.revenue, arm=arm)
    tally.count(key, Measure.OPENED, sign * outcome.opened, arm=arm)
    tally.count(key, Measure.CLICKED, sign * outcome.clicked, arm=arm)
    tally.count(key, Measure.UNSUBSCRIBED, sign * outcome.unsubscribed, arm=arm)
    tally.count(key, Measure.COMPLAINED, sign * outcome.complained, arm=arm)
    if arm is Arm.SENT and outcome.purchased:
        tally.count(key, Measure.OFFER_COST, sign * offer_cost, arm=arm)


def count_delivery(connection: Connection, decision_id: int, event_type: str) -> None:
    """A new delivery report about a decision's message (``delivered`` or ``bounce``)."""
    measure = {"delivered": Measure.DELIVERED, "bounce": Measure.BOUNCED}.get(event_type)
    if measure is None:
        return
    key = keys_for(connection, [decision_id]).get(decision_id)
    if key is not None:
        tally = Tally()
        tally.count(key, measure)
        add(connection, tally)


# --- the recount from history ----------------------------------------------------------------


def recount(connection: Connection) -> Tally:
    """Every count again from the history the store holds (decisions, review items, events).

    What the writers keep must equal this (the conformance test); ``rebuild`` writes it for a
    store whose history predates the table. Offer costs are each decision's playbook
    version's (as settling used them).
    """
    tally = Tally()
    costs = _offer_costs(connection)
    columns = (
        decisions.c.id, *KEY_COLUMNS, decisions.c.route, decisions.c.status, decisions.c.holdout, decisions.c.findings,
        decisions.c.settled_at, decisions.c.visited, decisions.c.purchased, decisions.c.revenue, decisions.c.opened, decisions.c.clicked,
        decisions.c.unsubscribed, decisions.c.complained, decisions.c.playbook_version_id, message_left(),
    )
    keys: dict[int, Key] = {}
    last = 0
    while True:
        rows = connection.execute(sa.select(*columns).where(decisions.c.id > last).order_by(decisions.c.id).limit(20_000)).all()
        if not rows:
            break
        last = int(rows[-1].id)
        for row in rows:
            key = key_of(row)
            keys[int(row.id)] = key
            findings = row.findings if not isinstance(row.findings, str) else json.loads(row.findings)
            reason = str(findings[0]) if row.route == Route.SUPPRESSED and findings else ""
            count_page(tally, key, [row.route], [(key.channel, key.creative, key.offer)], [key.segment], [reason])
            if row.left and row.status in (DecisionStatus.SENT, DecisionStatus.FAILED):
                tally.count(key, Measure.SENT)
            if row.status == DecisionStatus.FAILED:
                tally.count(key, Measure.FAILED)
            if row.settled_at is not None:
                arm = arm_of(row.route, bool(row.holdout), bool(row.left))
                tally.count(key, Measure.SETTLED, arm=arm)
                outcome = Outcome(
                    bool(row.visited), bool(row.purchased), float(row.revenue or 0.0), bool(row.opened), bool(row.clicked),
                    bool(row.unsubscribed), bool(row.complained),
                )
                cost = costs.get(row.playbook_version_id, {}).get(row.offer_id or "", 0.0)
                count_outcome(tally, key, arm, outcome, cost)
    for row in connection.execute(
        sa.select(review_items.c.decision_id, review_items.c.status, review_items.c.created_at, review_items.c.decided_at).where(
            review_items.c.kind == ReviewKind.DECISION, review_items.c.decision_id.is_not(None)
        )
    ):
        key = keys.get(int(row.decision_id))
        if key is not None:
            count_review(tally, key, row.created_at, row.status, row.decided_at, 1)
    for event_type, properties in connection.execute(
        sa.select(events.c.type, events.c.properties).where(events.c.type.in_(("delivered", "bounce")))
    ):
        found = properties if isinstance(properties, Mapping) else json.loads(properties or "{}")
        decision = str(found.get("decision_id") or "")
        # Delivery reports carry the message id (service.deliveries); an imported event without one is no report of ours.
        if found.get("message_id") and decision.isdigit() and int(decision) in keys:
            tally.count(keys[int(decision)], Measure.DELIVERED if event_type == "delivered" else Measure.BOUNCED)
    return tally


def rebuild(connection: Connection) -> int:
    """Replace the kept counts with :func:`recount`'s; returns how many keys were written."""
    tally = recount(connection)
    connection.execute(sa.delete(metrics))
    connection.execute(sa.delete(metric_totals))
    connection.execute(sa.delete(metric_groups))
    add(connection, tally)
    return sum(1 for n in tally.counts.values() if n)


def kept(connection: Connection) -> Tally:
    """The counts the table holds, as a :class:`Tally` (for comparing with :func:`recount`)."""
    tally = Tally()
    for row in connection.execute(sa.select(metrics)):
        key = Key(row.agent_id, row.day, row.objective, row.channel, row.creative, row.offer, row.segment)
        tally.counts[(key, row.name, row.arm, row.reason)] += row.value
    return tally


def totals_differ(connection: Connection) -> list[Any]:
    """The agent totals and the breakdown members' totals that are not the sum of their keys
    (none, when the writers kept them all)."""
    found = _sums_differ(connection, metric_totals, ("agent_id", "name", "day", "arm", "reason"))
    for dimension in DIMENSIONS:
        found += _sums_differ(connection, metric_groups, ("agent_id", "grp", "name", "day", "arm", "reason"), dimension)
    return found


def _sums_differ(connection: Connection, table: sa.Table, columns: tuple[str, ...], dimension: str | None = None) -> list[Any]:
    """Rows of ``table`` (``metric_groups``: of one dimension) that are not ``metrics`` summed by ``columns``."""
    grouped = [metrics.c[c] if c != "grp" else metrics.c[str(dimension)].label("grp") for c in columns]
    summed = sa.select(*grouped, sa.func.sum(metrics.c.value).label("value")).group_by(*grouped).subquery()
    kept = table if dimension is None else sa.select(table).where(table.c.dimension == dimension).subquery()
    on = sa.and_(*(summed.c[c] == kept.c[c] for c in columns))
    one = sa.select(*(summed.c[c] for c in columns), summed.c.value, kept.c.value.label("total")).select_from(summed.outerjoin(kept, on)).where(
        sa.or_(kept.c.value.is_(None), sa.func.abs(kept.c.value - summed.c.value) > 1e-6 * (1 + sa.func.abs(summed.c.value)))
    )
    other = sa.select(*(kept.c[c] for c in columns), summed.c.value, kept.c.value.label("total")).select_from(kept.outerjoin(summed, on)).where(
        summed.c.value.is_(None), kept.c.value != 0
    )
    return [*connection.execute(one).all(), *connection.execute(other).all()]


def _offer_costs(connection: Connection) -> dict[int | None, dict[str, float]]:
    """Each recorded playbook version's offer costs."""
    from legato.validation import parse_playbook

    costs: dict[int | None, dict[str, float]] = {}
    for version_id, text in connection.execute(sa.select(playbook_versions.c.id, playbook_versions.c.text)):
        try:
            playbook = parse_playbook(text)
        except Exception:  # noqa: BLE001 - a version that no longer parses: its offers cost nothing to the recount
            continue
        costs[version_id] = {offer.id: float(offer.cost) for offer in playbook.offers}
    return costs
