"""The metrics kept as they happen equal a recount from history, after a simulated run.

Cycles, the dispatcher and hourly event imports over a slice of the Hillstrom world (the
example playbook: one agent at stage 2, one at stage 0 whose proposals wait for a person),
then review actions of every kind, delivery reports (a repeat among them) and a late
outcome; after each step the kept counts must be what ``monitor.metrics.recount`` finds in
the decisions, review items and events. On SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import timedelta
from importlib.resources import files
from pathlib import Path

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy import Engine

from legato.clock import FixedClock
from legato.demo import ARMS, START, demo_customers, hillstrom_table
from legato.deliver.dispatch import transports
from legato.learn.simulation import simulate
from legato.learn.simulator import HillstromWorld
from legato.monitor import metrics
from legato.audience.fields import declared_types
from legato.service import deliveries
from legato.store.ingest import import_customers, import_events
from legato.store.schema import decisions, outbox, review_items
from legato.store.status import OutboxStatus, ReviewStatus
from legato.trust.review import actions
from legato.validation import parse_playbook

CUSTOMERS = 1_500


def _differences(engine: Engine) -> dict[tuple[object, ...], tuple[float, float]]:
    with engine.connect() as connection:
        kept, again = metrics.kept(connection).counts, metrics.recount(connection).counts
        # The agent totals are their keys' sums (what a report without --by reads).
        assert metrics.totals_differ(connection) == []
    return {
        k: (kept.get(k, 0.0), again.get(k, 0.0))
        for k in set(kept) | set(again)
        if abs(kept.get(k, 0.0) - again.get(k, 0.0)) > 1e-6 * max(1.0, abs(again.get(k, 0.0)))
    }


def _total(engine: Engine, name: str, **where: str) -> float:
    with engine.connect() as connection:
        query = sa.select(sa.func.coalesce(sa.func.sum(metrics.metrics.c.value), 0.0)).where(metrics.metrics.c.name == name)
        for column, value in where.items():
            query = query.where(metrics.metrics.c[column] == value)
        return float(connection.execute(query).scalar_one())


def test_kept_metrics_equal_a_recount_after_a_simulated_run(engine: Engine, tmp_path: Path) -> None:
    text = files("legato.playbook").joinpath("example/playbook.yaml").read_text(encoding="utf-8")
    playbook = parse_playbook(text)
    rows = hillstrom_table().slice(0, CUSTOMERS)
    people, history = demo_customers(rows, START)
    clock = FixedClock(START)
    import_customers(engine, people, attribute_types=declared_types(playbook.attributes), clock=clock)
    import_events(engine, history, clock=clock)
    world = HillstromWorld.fit(rows, people.column("id").to_numpy(zero_copy_only=False), seed=7)
    sinks = transports(playbook, tmp_path)

    days = simulate(engine, playbook, world, ARMS, START, 5, sinks)
    assert sum(d.sent["winback_email"] for d in days) > 0
    assert _differences(engine) == {}
    # Every writer has counted something: the cycle, the dispatcher and attribution.
    assert _total(engine, "audience") > 0 and _total(engine, "held_out") > 0 and _total(engine, "queued") > 0
    assert _total(engine, "sent") == sum(d.sent["winback_email"] + d.sent["welcome_email"] for d in days)
    assert _total(engine, "settled", arm="sent") > 0 and _total(engine, "settled", arm="holdout") > 0
    assert _total(engine, "visited", arm="sent") > 0
    assert _total(engine, "suppressed") > 0

    now = START + timedelta(days=5)
    with engine.connect() as connection:
        waiting = connection.execute(
            sa.select(review_items.c.id, review_items.c.content_hash)
            .where(review_items.c.status == ReviewStatus.OPEN, review_items.c.decision_id.is_not(None), review_items.c.due_at > now + timedelta(hours=1))
            .order_by(review_items.c.id)
            .limit(6)
        ).all()
    assert len(waiting) == 6
    approved = [actions.approve(engine, item.id, "ana", content_hash=item.content_hash, now=now) for item in waiting[:3]]
    actions.reject(engine, waiting[3].id, "ana", "off_brand", now=now)
    actions.withdraw(engine, approved[0].id, "bo", now=now + timedelta(minutes=5))  # approval taken back: counted back
    assert _differences(engine) == {}
    assert _total(engine, "approved") == 2 and _total(engine, "rejected") == 1 and _total(engine, "reviewed") == 3

    # Delivery reports: delivered, a repeat of it (counted once), a soft and a hard bounce (which
    # fails the sent decision: still counted sent, as the message went out, and now failed too).
    sent_before, failed_before = _total(engine, "sent"), _total(engine, "failed")
    with engine.connect() as connection:
        sent = connection.execute(sa.select(outbox.c.message_id).where(outbox.c.status == OutboxStatus.SENT).order_by(outbox.c.id).limit(4)).scalars().all()
    for message_id in sent[:3]:
        deliveries.record(engine, deliveries.Delivery("delivered", message_id=message_id), now=now)
    deliveries.record(engine, deliveries.Delivery("delivered", message_id=sent[0]), now=now)
    deliveries.record(engine, deliveries.Delivery("bounced", message_id=sent[1], bounce="soft"), now=now)
    # The first of delivered and failed stands (service.deliveries): the hard bounce is about a message not reported delivered.
    assert deliveries.record(engine, deliveries.Delivery("bounced", message_id=sent[3]), now=now).decision_failed
    assert _total(engine, "delivered") == 3 and _total(engine, "bounced") == 2
    assert _total(engine, "sent") == sent_before and _total(engine, "failed") == failed_before + 1
    assert _differences(engine) == {}

    # A late purchase for a settled sent decision: credited at the next cycle, its counts corrected.
    with engine.connect() as connection:
        settled = connection.execute(
            sa.select(decisions.c.customer_id, decisions.c.decided_at)
            .where(decisions.c.settled_at.is_not(None), decisions.c.status == "sent", decisions.c.purchased.is_(False))
            .order_by(decisions.c.id)
            .limit(1)
        ).one()
    revenue_before = _total(engine, "revenue")
    late = pa.table({
        "id": ["late-1"], "customer_id": [settled.customer_id], "type": ["purchase"],
        "occurred_at": [(settled.decided_at + timedelta(hours=3)).isoformat()], "revenue": [42.0],
    })
    assert import_events(engine, late, clock=FixedClock(now)).inserted == 1
    # Two more days: the withdrawn proposal and the rest expire by their SLA, the late purchase is credited.
    simulate(engine, playbook, world, ARMS, now, 2, sinks)
    assert _total(engine, "revenue") > revenue_before
    assert _total(engine, "expired") > 0
    assert _differences(engine) == {}

    # A rebuild from history writes the same counts.
    with engine.begin() as connection:
        before = metrics.kept(connection).counts
        metrics.rebuild(connection)
        after = metrics.kept(connection).counts
    assert {k: round(v, 6) for k, v in before.items() if v} == {k: round(v, 6) for k, v in after.items() if v}
