"""POST /v1/agents/{id}/resume over real HTTP: an agent its stop-loss paused resumes only with a reason, audited."""

from __future__ import annotations

import sqlalchemy as sa

from legato.store.schema import audit_log
from legato.store.status import AgentStatus
from legato.trust import agent_state
from tests.api.conftest import Served
from tests.world import AT

RESUME = "/v1/agents/mailer/resume"


def paused_by(served: Served, actor: str) -> None:
    with served.engine.begin() as connection:
        agent_state.create(connection, "mailer", 2, AT)
        agent_state.change_status(connection, "mailer", AgentStatus.PAUSED, actor=actor, reason="complaint_rate 0.005 crossed its max 0.003", now=AT,
                                  detail={"breaches": [{"metric": "complaint_rate"}]})


def test_a_stop_loss_pause_needs_a_reason_and_the_resume_names_the_breach(served: Served) -> None:
    paused_by(served, "stop_loss")
    with served.client("marketer") as client:
        bare = client.post(RESUME)
        done = client.post(RESUME, json={"reason": "complaint source removed"})
    assert bare.status_code == 422 and "resuming it needs a reason" in bare.json()["error"]["message"]
    assert done.status_code == 200 and done.json()["status"] == "active"
    with served.engine.connect() as connection:
        [row] = connection.execute(sa.select(audit_log).where(audit_log.c.action == "agent_resumed")).all()
    assert row.actor != "stop_loss" and row.detail["reason"] == "complaint source removed"
    assert row.detail["answers"]["breaches"] == [{"metric": "complaint_rate"}]


def test_a_pause_by_a_person_resumes_without_a_body(served: Served) -> None:
    paused_by(served, "ana")
    with served.client("marketer") as client:
        assert client.post(RESUME).status_code == 200
