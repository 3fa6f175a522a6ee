"""A preview of the next cycle: the cycle's own steps, in one transaction that is always rolled back.

Why this design (and not a read-only copy of the propose and route steps): the cycle's
answer depends on what its earlier steps write — settling and learning change the policy
the partitions decide with, expired review items free their customers, an earlier agent's
messages count toward a later agent's caps, the budget's reservation of one agent, rolled
trait windows. A copy that skipped those writes would drift from the cycle the first time a
step is added or changed. So a preview runs :func:`legato.cycle.run.preview_cycle`, which is
:mod:`legato.cycle.run`'s own new-cycle path, on :class:`Joined`: an engine's face over one
connection whose every ``engine.begin()`` is a savepoint of one outer transaction and whose
every ``engine.connect()`` is that connection. Each step sees what the steps before it wrote,
as in a cycle; at the end the outer transaction is rolled back, and a listener refuses any
commit of it, so nothing a step writes can reach the store whatever the step does.

What it does not share with a cycle: nothing is dispatched (no outbox file is written), the
daily fairness audit does not run, the cycle's lease is not taken, and opt-outs waiting in
the pending file are applied inside the transaction without touching the file. On SQLite the
transaction holds the store's write lock (``BEGIN IMMEDIATE``) until it ends, as a cycle's
partition does; on PostgreSQL it takes the row locks a cycle's writes take. Sequences
(PostgreSQL ids) advance with the rolled-back inserts: later ids skip numbers, which nothing
reads as meaning.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy import Connection, Engine, event

from legato.deliver.render import variant_hash
from legato.guard.message import MessageChecker, Recipient, Variant
from legato.playbook.models import Playbook
from legato.store.schema import customers, decisions, review_items
from legato.store.status import Route


class PreviewCommitted(RuntimeError):
    """A step tried to commit the preview's transaction: a bug, and nothing was committed."""


class Joined:
    """An :class:`~sqlalchemy.Engine`'s face over one connection in one outer transaction.

    ``begin()`` is a savepoint of it (released or rolled back as the step's transaction
    would be committed or rolled back), ``connect()`` the connection itself. Only what the
    cycle's steps use is here; anything else is an ``AttributeError`` rather than a way
    around the transaction.
    """

    def __init__(self, connection: Connection, engine: Engine) -> None:
        self._connection = connection
        self.dialect = engine.dialect
        self.url = engine.url
        self.name = engine.name

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        yield self._connection

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        with self._connection.begin_nested():
            yield self._connection


def _refuse_commit(_connection: Connection) -> None:
    raise PreviewCommitted("a preview's transaction is never committed")


@contextmanager
def rolled_back(engine: Engine) -> Iterator[Engine]:
    """An engine whose transactions are savepoints of one transaction rolled back at the end."""
    with engine.connect() as connection:
        event.listen(connection, "commit", _refuse_commit)
        outer = connection.begin()
        try:
            if engine.dialect.name == "sqlite":
                # pysqlite begins a transaction only before a write; begin one now, so that the
                # first savepoint is inside it (a savepoint outside one would commit on release).
                connection.exec_driver_sql("BEGIN IMMEDIATE")
            yield cast(Engine, Joined(connection, engine))
        finally:
            outer.rollback()


def apply_pending_in_place(engine: Engine) -> None:
    """A preview's settling: opt-outs waiting in the pending file are applied to the store
    (inside the preview's transaction), as a cycle applies them, but the file is left as it is."""
    from legato.trust.inbound import apply_pending
    from legato.trust.pending_optouts import path_for, pending

    for entry in pending(path_for(engine)):
        apply_pending(engine, entry, wait=0)


# --- what a preview shows besides the cycle's counts ---------------------------------------

SAMPLED_ROUTES = (Route.SCHEDULED, Route.QUEUED)


@dataclass(frozen=True)
class Sample:
    """One message the cycle would schedule or queue, rendered and checked as a reviewer sees it."""

    customer_id: str
    route: str
    review_reason: str | None
    channel: str | None
    creative_id: str | None
    offer_id: str | None
    send_at: datetime | None
    content: dict[str, str | None] | None
    verdict: str | None
    findings: list[str] = field(default_factory=list)
    render_error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "customer_id": self.customer_id,
            "route": self.route,
            "review_reason": self.review_reason,
            "channel": self.channel,
            "creative": self.creative_id,
            "offer": self.offer_id,
            "send_at": None if self.send_at is None else self.send_at.isoformat(),
            "content": self.content,
            "verdict": self.verdict,
            "findings": self.findings,
            "render_error": self.render_error,
        }


def samples(connection: Connection, playbook: Playbook, cycle_id: int, agent_id: str, limit: int) -> list[Sample]:
    """Up to ``limit`` of the agent's scheduled or queued decisions of the cycle (first by
    customer id), each rendered for its customer and checked through the one check of a
    message, with the preview's unsubscribe token, exactly as ``legato review show`` does."""
    if limit <= 0:
        return []
    rows = connection.execute(
        sa.select(
            decisions.c.customer_id, decisions.c.route, decisions.c.channel, decisions.c.creative_id, decisions.c.offer_id,
            decisions.c.send_at, review_items.c.reason, customers.c.email, customers.c.phone, customers.c.attributes,
        )
        .join(customers, customers.c.id == decisions.c.customer_id)
        .outerjoin(review_items, review_items.c.decision_id == decisions.c.id)
        .where(decisions.c.cycle_id == cycle_id, decisions.c.agent_id == agent_id, decisions.c.route.in_(SAMPLED_ROUTES))
        .order_by(decisions.c.customer_id)
        .limit(limit)
    ).all()
    from legato.trust.review.message import PREVIEW_TOKEN

    creatives = {c.id: c for c in playbook.creatives}
    offers = {o.id: o for o in playbook.offers}
    checker = MessageChecker(playbook)
    found = []
    for row in rows:
        creative = creatives.get(row.creative_id or "")
        content = verdict = error = None
        rules: list[str] = []
        if creative is not None:
            variant = Variant(creative, offers.get(row.offer_id or ""), variant_hash(creative, row.offer_id))
            check = checker.check(variant, recipient=Recipient(row.customer_id, row.email, row.phone, row.attributes), token=PREVIEW_TOKEN)
            if check.rendered is not None:
                content = {"subject": check.rendered.subject, "title": check.rendered.title, "body": check.rendered.body}
            verdict, error = check.verdict, check.render_error
            rules = sorted({f.rule for f in check.findings})
        found.append(
            Sample(
                customer_id=row.customer_id, route=str(row.route), review_reason=row.reason, channel=row.channel,
                creative_id=row.creative_id, offer_id=row.offer_id, send_at=row.send_at, content=content,
                verdict=verdict, findings=rules, render_error=error,
            )
        )
    return found
