"""The review queue's counts (legato.trust.review.counts) stay what counting the items says,
through every writer: a cycle opening proposals, approve, edit, reject, escalate, withdraw,
bulk actions, a customer's reply, a finding, resolve, expiry; folded or not; with writers at
once on PostgreSQL; and seeded by migration 0022 from items already on file."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy import Engine

from legato.clock import FixedClock
from legato.cycle import run_cycle
from legato.deliver.dispatch import transports
from legato.service import review as service
from legato.store.db import alembic_config, connect
from legato.store.schema import review_counts, review_items
from legato.store.status import ReviewKind
from legato.trust import inbound
from legato.trust.review import counts, expire_overdue
from legato.trust.review.items import NewItem, open_item
from legato.trust.review.model import QueueFilter
from legato.trust.review.queue import filter_total
from tests.world import AT, load_customers, playbook

UNSUBSCRIBE = "Unsubscribe: {{ unsubscribe_url }} {{ brand.postal_address }}"
FILTERS = [
    QueueFilter(), QueueFilter(status="all"), QueueFilter(status="approved"), QueueFilter(status="rejected"), QueueFilter(status="expired"),
    QueueFilter(status="resolved"), QueueFilter(agent="mailer"), QueueFilter(kind="conversation"), QueueFilter(kind="finding", status="all"),
    QueueFilter(role="legal"), QueueFilter(reason="trust_stage_0"), QueueFilter(reason="escalate"), QueueFilter(min_priority=60, status="all"),
]


def counted(engine: Engine) -> dict[tuple[object, ...], int]:
    """What counting the items themselves says, by the counts' key."""
    columns = [review_items.c[name] for name in counts.KEY]
    with engine.connect() as c:
        return {tuple(row[:-1]): int(row[-1]) for row in c.execute(sa.select(*columns, sa.func.count()).group_by(*columns))}


def assert_in_step(engine: Engine) -> None:
    with engine.connect() as c:
        kept = counts.by(c, counts.KEY)
        for where in FILTERS:
            real = sum(n for key, n in counted(engine).items() if _matches(where, dict(zip(counts.KEY, key))))
            assert filter_total(c, where) == real, where
    assert kept == counted(engine)


def _matches(where: QueueFilter, key: dict[str, object]) -> bool:
    reason = str(key["reason"])
    return all((
        where.status == "all" or key["status"] == where.status,
        where.agent is None or key["agent_id"] == where.agent,
        where.role is None or key["assigned_role"] == where.role,
        where.kind is None or key["kind"] == where.kind,
        where.reason is None or reason == where.reason or reason.startswith(where.reason + ":"),
        where.min_priority is None or int(key["priority"]) >= where.min_priority,  # type: ignore[call-overload]
    ))


def queue(engine: Engine, tmp_path: Path, n: int = 40) -> list[int]:
    load_customers(engine, n)
    pb = playbook(stage=0)
    run_cycle(engine, pb, FixedClock(AT), transports(pb, tmp_path))
    return [item.id for item in service.page(engine, QueueFilter(), limit=1000).items]


@pytest.mark.parametrize("fold_every", [500, 2])
def test_the_counts_follow_every_writer(engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fold_every: int) -> None:
    monkeypatch.setattr(counts, "COMPACT_EVERY", fold_every)  # 2: folded after nearly every write
    ids = queue(engine, tmp_path)
    assert_in_step(engine)
    items = {item.id: item for item in service.page(engine, QueueFilter(), limit=1000).items}
    now = AT + timedelta(minutes=5)
    a, b, c, d, e = ids[:5]
    service.approve(engine, a, "ana", now=now, content_hash=items[a].content_hash)
    edited, _ = service.edit(engine, b, "ana", now=now, body="Hello {{ customer.id }}, news. " + UNSUBSCRIBE)
    service.approve(engine, b, "bob", now=now, content_hash=edited.content_hash)
    service.edit(engine, b, "bob", now=now, body="Hello {{ customer.id }}, other news. " + UNSUBSCRIBE)  # approved → open again
    service.reject(engine, c, "ana", "off_brand", now=now)
    service.escalate(engine, d, "ana", to_role="legal", note="claim?", now=now)
    service.approve(engine, e, "ana", now=now, content_hash=items[e].content_hash)
    service.withdraw(engine, e, "ana", now=now)
    assert_in_step(engine)
    service.reject_matching(engine, QueueFilter(agent="mailer", reason="trust_stage_0"), "ana", "timing", now=now, limit=3)
    pb = playbook(stage=0)
    inbound.receive(engine, pb, "c001", "email", "This is unacceptable, I want a refund!", now)
    with engine.begin() as connection:
        finding = open_item(connection, NewItem(kind=ReviewKind.FINDING, reason="fairness", priority=80, created_at=now, agent_id="mailer"), {})
    service.resolve(engine, finding, "ana", note="looked into it", now=now)
    assert_in_step(engine)
    assert expire_overdue(engine, AT + timedelta(days=3)) > 0
    assert_in_step(engine)
    with engine.connect() as connection:
        assert filter_total(connection, QueueFilter()) == 0
        rows = connection.execute(sa.select(sa.func.count()).select_from(review_counts)).scalar_one()
    if fold_every == 2:
        assert rows <= len(counted(engine)) + 2  # folded: about one row per key


def test_writers_at_once_keep_the_counts(engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(counts, "COMPACT_EVERY", 3)  # folds race the other writers' deltas
    ids = queue(engine, tmp_path)
    items = {item.id: item for item in service.page(engine, QueueFilter(), limit=1000).items}
    failures: list[BaseException] = []

    def act(mine: list[int], reviewer: str) -> None:
        try:
            for n, item in enumerate(mine):
                if n % 2:
                    service.approve(engine, item, reviewer, now=AT, content_hash=items[item].content_hash)
                else:
                    service.reject(engine, item, reviewer, "timing", now=AT)
        except BaseException as error:  # reported below: a failure in a thread must fail the test
            failures.append(error)

    threads = [threading.Thread(target=act, args=(ids[k::3], f"r{k}")) for k in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert_in_step(engine)


def test_migration_0022_counts_the_items_on_file(blank_database_url: str, tmp_path: Path) -> None:
    engine = sa.create_engine(blank_database_url)
    command.upgrade(alembic_config(engine), "0021")
    with engine.begin() as c:
        c.execute(sa.text("INSERT INTO review_items (kind, agent_id, reason, priority, status, created_at) VALUES "
                          "('finding', 'a', 'fairness', 80, 'open', :at), ('finding', 'a', 'fairness', 80, 'open', :at), "
                          "('finding', NULL, 'fairness', 80, 'resolved', :at)"), {"at": AT.replace(tzinfo=None)})
    engine.dispose()
    migrated = connect(blank_database_url)
    assert_in_step(migrated)
    with migrated.connect() as c:
        assert filter_total(c, QueueFilter(kind="finding")) == 2 and filter_total(c, QueueFilter(status="all")) == 3
    migrated.dispose()


def test_recount_rebuilds_them_from_the_items(engine: Engine, tmp_path: Path) -> None:
    queue(engine, tmp_path)
    with engine.begin() as c:
        c.execute(sa.insert(review_counts).values(status="open", kind="decision", agent_id="mailer", reason="trust_stage_0", priority=50, n=7))
        counts.recount(c)
    assert_in_step(engine)
