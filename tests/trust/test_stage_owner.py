"""Conformance: every path that lowers a trust stage writes the same audited result.

A person's demotion, a stop-loss breach and a blocking content finding at send time all go
through :func:`legato.trust.agent_state.change_stage`. Asked the same question (agent at
stage 3, lower it to 0 at the same instant), each must leave the agent row and the audit log
in the same shape, differing only in the action (the cause) and the actor.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from importlib.resources import files
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from legato.deliver.dispatch import demote_for_compliance
from legato.monitor.stop_loss import check_stop_loss
from legato.validation import parse_playbook
from legato.playbook.models import StopLoss
from legato.store.schema import agents, audit_log, cycles, decisions
from legato.store.status import AgentStatus, CycleStatus, DecisionStatus, Route
from legato.trust.agent_state import StageCause, change_stage
from legato.trust.track_record import TrustInvalid, demote

NOW = datetime(2024, 5, 1, 12, tzinfo=UTC)
EXAMPLE = files("legato.playbook").joinpath("example/playbook.yaml").read_text(encoding="utf-8")


def _agent_at(engine: Engine, stage: int) -> None:
    with engine.begin() as c:
        c.execute(sa.insert(agents).values(id="winback_email", trust_stage=stage, status=AgentStatus.ACTIVE, updated_at=NOW - timedelta(days=9)))


def _person(engine: Engine) -> None:
    demote(engine, "winback_email", 0, "ana", "too many complaints", NOW)


def _stop_loss(engine: Engine) -> None:
    """Twenty settled sends, ten unsubscribed: 50% against a 5% limit."""
    playbook = parse_playbook(EXAMPLE)
    agent = next(a for a in playbook.agents if a.id == "winback_email")
    agent = agent.model_copy(update={"stop_loss": [StopLoss(metric="unsubscribe_rate", max=0.05, min_sends=10, demote_to=0)]})
    with engine.begin() as c:
        cycle = c.execute(sa.insert(cycles).values(at=NOW, started_at=NOW, status=CycleStatus.FINISHED).returning(cycles.c.id)).scalar_one()
        c.execute(
            sa.insert(decisions),
            [
                {"cycle_id": cycle, "agent_id": agent.id, "customer_id": f"c{i}", "decided_at": NOW - timedelta(days=3), "action": "x",
                 "propensity": 1.0, "holdout": False, "findings": [], "route": Route.SCHEDULED, "status": DecisionStatus.SENT,
                 "settled_at": NOW - timedelta(days=1), "unsubscribed": i < 10}
                for i in range(20)
            ],
        )
        result = check_stop_loss(c, playbook, agent, 3, NOW)
    assert result.stage == 0 and len(result.breaches) == 1 and result.paused


def _compliance(engine: Engine) -> None:
    with engine.begin() as c:
        demote_for_compliance(c, "winback_email", {"message": 7, "decision": 7, "rules": ["compliance.false_scarcity"]}, NOW)


PATHS = {"person": (_person, StageCause.DEMOTION, "ana"), "stop_loss": (_stop_loss, StageCause.STOP_LOSS, "stop_loss"),
         "compliance": (_compliance, StageCause.COMPLIANCE, "dispatcher")}


def _state(engine: Engine) -> tuple[Any, list[Any]]:
    with engine.connect() as c:
        row = c.execute(sa.select(agents.c.trust_stage, agents.c.status, agents.c.updated_at)).one()
        log = c.execute(sa.select(audit_log).where(audit_log.c.entity == "agent")).all()
    return row, log


@pytest.mark.parametrize("path", sorted(PATHS))
def test_every_demotion_path_writes_the_same_audited_change(engine: Engine, path: str) -> None:
    run, cause, actor = PATHS[path]
    _agent_at(engine, 3)
    run(engine)
    row, log = _state(engine)
    # A stop-loss also pauses the agent (through the same owner, audited as agent_paused).
    assert (row.trust_stage, row.status, row.updated_at) == (0, "paused" if path == "stop_loss" else "active", NOW)
    assert [e.action for e in log] == [cause.value] + (["agent_paused"] if path == "stop_loss" else [])
    entry = log[0]
    assert (entry.action, entry.actor, entry.entity_id, entry.at) == (cause.value, actor, "winback_email", NOW)
    assert entry.detail["from"] == 3 and entry.detail["to"] == 0 and entry.detail["reason"].strip()


def test_an_automatic_demotion_never_raises_a_stage(engine: Engine) -> None:
    """A compliance breach of an agent already at stage 0 changes nothing and records nothing;
    an automatic cause asked to go up is not a change either."""
    _agent_at(engine, 0)
    _compliance(engine)
    with engine.begin() as c:
        assert change_stage(c, "winback_email", 2, cause=StageCause.STOP_LOSS, actor="stop_loss", reason="x", now=NOW) is None
    row, log = _state(engine)
    assert row.trust_stage == 0 and log == []


def test_a_person_cannot_demote_upwards(engine: Engine) -> None:
    _agent_at(engine, 1)
    with pytest.raises(TrustInvalid, match="demoting to 2 is not down"):
        demote(engine, "winback_email", 2, "ana", "why", NOW)
    assert _state(engine)[1] == []
