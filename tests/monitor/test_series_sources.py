"""The agent's daily series read from the kept counts equals the series read from decisions.

The stop-loss and the anomaly detector read ``monitor.series.agent_series``, which takes the
history from the kept metrics and only what they cannot hold from decisions (sends still in
their window, the epoch's own day after a resume). Read both ways on one store after a
simulated run with delivery reports (a soft and a hard bounce, which fails a sent decision),
then after a resume in the middle of a day, the two must agree day by day, on SQLite and
PostgreSQL.
"""

from __future__ import annotations

from datetime import timedelta
from importlib.resources import files
from pathlib import Path

import numpy as np
import sqlalchemy as sa
from sqlalchemy import Engine

from legato.audience.fields import declared_types
from legato.clock import FixedClock
from legato.deliver.dispatch import transports
from legato.demo import ARMS, START, demo_customers, hillstrom_table
from legato.learn.simulation import simulate
from legato.learn.simulator import HillstromWorld
from legato.monitor.series import AgentSeries, Group, Source, agent_series
from legato.playbook.models import Playbook
from legato.service import agents, deliveries
from legato.store.ingest import import_customers, import_events
from legato.store.schema import outbox
from legato.store.status import OutboxStatus
from legato.validation import parse_playbook

CUSTOMERS = 1_200


def _both(engine: Engine, playbook: Playbook, now: object) -> list[tuple[AgentSeries, AgentSeries]]:
    with engine.connect() as connection:
        return [
            (agent_series(connection, playbook, a, now, source=Source.KEPT), agent_series(connection, playbook, a, now, source=Source.DECISIONS))  # type: ignore[arg-type]
            for a in playbook.agents
        ]


def _same_group(kept: Group, read: Group, where: str) -> None:
    np.testing.assert_allclose(kept.n, read.n, err_msg=f"{where}: n")
    assert set(kept.sums) == set(read.sums)
    for name in kept.sums:
        np.testing.assert_allclose(kept.sums[name], read.sums[name], rtol=1e-9, atol=1e-9, err_msg=f"{where}: {name}")
        np.testing.assert_allclose(kept.squares[name], read.squares[name], rtol=1e-9, atol=1e-6, err_msg=f"{where}: {name}²")


def _assert_equal(pairs: list[tuple[AgentSeries, AgentSeries]]) -> None:
    for kept, read in pairs:
        assert kept.days == read.days, kept.agent_id
        assert kept.since == read.since
        for part in ("sent", "settled_sent", "settled_holdout"):
            _same_group(getattr(kept, part), getattr(read, part), f"{kept.agent_id} {part}")
        np.testing.assert_allclose(kept.offer_cost, read.offer_cost, err_msg=f"{kept.agent_id} offer cost")


def test_the_series_from_kept_counts_equals_the_series_from_decisions(engine: Engine, tmp_path: Path) -> None:
    playbook = parse_playbook(files("legato.playbook").joinpath("example/playbook.yaml").read_text(encoding="utf-8"))
    rows = hillstrom_table().slice(0, CUSTOMERS)
    people, history = demo_customers(rows, START)
    clock = FixedClock(START)
    import_customers(engine, people, attribute_types=declared_types(playbook.attributes), clock=clock)
    import_events(engine, history, clock=clock)
    world = HillstromWorld.fit(rows, people.column("id").to_numpy(zero_copy_only=False), seed=7)
    sinks = transports(playbook, tmp_path)
    simulate(engine, playbook, world, ARMS, START, 4, sinks)
    now = START + timedelta(days=4)

    # Delivery reports: a soft bounce, and a hard one that fails its sent decision (its message still went out).
    with engine.connect() as connection:
        sent = connection.execute(sa.select(outbox.c.message_id).where(outbox.c.status == OutboxStatus.SENT).order_by(outbox.c.id).limit(3)).scalars().all()
    assert len(sent) == 3
    deliveries.record(engine, deliveries.Delivery("bounced", message_id=sent[0], bounce="soft"), now=now)
    assert deliveries.record(engine, deliveries.Delivery("bounced", message_id=sent[1]), now=now).decision_failed
    deliveries.record(engine, deliveries.Delivery("delivered", message_id=sent[2]), now=now)

    pairs = _both(engine, playbook, now)
    _assert_equal(pairs)
    # The series hold something of every kind: sends, fast outcomes, bounces, settled sends and holdout, offer costs.
    kept = {s.agent_id: s for s, _ in pairs}
    assert all(len(s.days) >= 4 for s in kept.values())
    assert sum(s.sent.n.sum() for s in kept.values()) > 0 and sum(s.sent.sums["bounced"].sum() for s in kept.values()) == 2
    assert sum(s.settled_sent.n.sum() for s in kept.values()) > 0 and sum(s.settled_holdout.n.sum() for s in kept.values()) > 0
    assert sum(s.sent.sums["unsubscribed"].sum() + s.settled_sent.sums["visited"].sum() for s in kept.values()) > 0

    # A resume half an hour before a cycle: the epoch's day comes from decisions from that instant, the days after it kept.
    agent = playbook.agents[0].id
    agents.pause(engine, agent, "ana", "a look at the series", now=now)
    resumed = START + timedelta(days=5, minutes=-30)
    agents.resume(engine, agent, "ana", now=resumed, reason="looked")
    simulate(engine, playbook, world, ARMS, START + timedelta(days=5), 2, sinks)
    later = START + timedelta(days=6, hours=1)
    pairs = _both(engine, playbook, later)
    _assert_equal(pairs)
    mine = next(s for s, _ in pairs if s.agent_id == agent)
    assert mine.since == resumed and mine.days[0] == resumed.date() and mine.sent.n.sum() > 0
