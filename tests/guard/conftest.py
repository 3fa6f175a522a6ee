"""Set-ups the conformance tests share: every agent proposing its message to every customer,
and the dispatcher re-checking each proposal as if a person had approved it."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from legato.clock import FixedClock
from legato.deliver.dispatch import dispatch_due, transports
from legato.deliver.outbox import schedule_message
from legato.deliver.render import variant_hash
from legato.playbook.models import Playbook
from legato.store.schema import cycles, decisions, outbox, review_items

Proposals = dict[tuple[str, str], int]


@pytest.fixture
def propose() -> Callable[[Engine, Playbook, Iterable[str], datetime], Proposals]:
    """Queue, for review, each agent's first creative to each customer; returns decision ids by (agent, customer)."""

    def run(engine: Engine, pb: Playbook, customer_ids: Iterable[str], at: datetime) -> Proposals:
        ids: Proposals = {}
        with engine.begin() as c:
            # A cycle of their own: one decision per customer, agent and cycle, and the cycle
            # that ran before may have decided for the same customers.
            cycle = c.execute(sa.insert(cycles).values(at=at, started_at=at, finished_at=at, status="finished").returning(cycles.c.id)).scalar_one()
            for agent in pb.agents:
                creative = pb.creative(agent.actions.creatives[0])
                content_hash = variant_hash(creative, None)
                for customer in customer_ids:
                    decision = c.execute(
                        sa.insert(decisions).values(
                            cycle_id=cycle, agent_id=agent.id, customer_id=customer, decided_at=at, action=creative.id,
                            creative_id=creative.id, channel=creative.channel.value, send_at=at, propensity=1.0,
                            expected_value=0.0, holdout=False, findings="[]", route="queued", status="queued",
                            content_hash=content_hash,
                        ).returning(decisions.c.id)
                    ).scalar_one()
                    c.execute(
                        sa.insert(review_items).values(
                            decision_id=decision, agent_id=agent.id, reason="trust_stage_0", priority=50, status="open",
                            created_at=at, content_hash=content_hash,
                        )
                    )
                    ids[(agent.id, customer)] = decision
        return ids

    return run


@pytest.fixture
def dispatch_all(tmp_path: Path) -> Callable[[Engine, Playbook, Proposals, datetime], dict[tuple[str, str], tuple[str, str | None]]]:
    """Put every proposal in the outbox as if approved, dispatch at ``at``: (status, error) per proposal."""

    def run(engine: Engine, pb: Playbook, ids: Proposals, at: datetime) -> dict[tuple[str, str], tuple[str, str | None]]:
        with engine.begin() as c:
            c.execute(sa.delete(outbox))  # only the proposals are due
            for (agent, customer), decision in ids.items():
                spec = next(a for a in pb.agents if a.id == agent)
                channel = pb.creative(spec.actions.creatives[0]).channel.value
                schedule_message(c, decision, customer, channel, at)
        dispatch_due(engine, pb, FixedClock(at), transports(pb, tmp_path / "dispatched"))
        with engine.connect() as c:
            rows = {d: (s, e) for d, s, e in c.execute(sa.select(outbox.c.decision_id, outbox.c.status, outbox.c.error))}
        return {key: rows[decision] for key, decision in ids.items()}

    return run
