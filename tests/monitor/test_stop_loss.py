"""Stop-loss: an agent whose recent settled sends cross a guardrail KPI's limit is demoted at once."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from legato.monitor.stop_loss import LOOKBACK_DAYS, Breach, check_stop_loss
from legato.playbook.models import Playbook
from legato.store.schema import agents, audit_log

UNSUBSCRIBES_OVER_2_PERCENT = "    stop_loss: [{metric: unsubscribe_rate, max: 0.02, min_sends: 100, demote_to: 1}]"
Check = Callable[..., tuple[int, list[Breach]]]


@pytest.fixture
def now(cycle_at: datetime) -> datetime:
    return cycle_at + timedelta(days=9)  # the decisions settle eight days after the cycle: inside the lookback


@pytest.fixture
def check(engine: Engine, cycle_at: datetime, now: datetime) -> Check:
    """check(playbook, stage=3, at=now): the stop-loss of the playbook's agent, stored at stage 3."""
    with engine.begin() as c:
        c.execute(sa.insert(agents).values(id="mailer", trust_stage=3, status="active", updated_at=cycle_at))

    def run(playbook: Playbook, stage: int = 3, at: datetime | None = None) -> tuple[int, list[Breach]]:
        with engine.begin() as c:
            return check_stop_loss(c, playbook.agents[0], stage, at or now)

    return run


def stored_stage(engine: Engine) -> int:
    with engine.connect() as c:
        return int(c.execute(sa.select(agents.c.trust_stage).where(agents.c.id == "mailer")).scalar_one())


def breaches_logged(engine: Engine) -> list[dict]:
    with engine.connect() as c:
        rows = c.execute(sa.select(audit_log).where(audit_log.c.action == "stop_loss_breach").order_by(audit_log.c.id)).all()
    return [{"actor": r.actor, "entity_id": r.entity_id, "at": r.at, **r.detail} for r in rows]


def test_crossing_the_limit_demotes_to_the_rules_stage_and_logs_why(
    engine: Engine, check: Check, now: datetime, make_playbook: Callable[..., Playbook], write_decisions: Callable[..., None]
) -> None:
    write_decisions("sent", 3, unsubscribed=True)
    write_decisions("sent", 97)  # 3 of 100 settled sends unsubscribed: 3% > 2%
    stage, breaches = check(make_playbook(stage=3, agent=UNSUBSCRIBES_OVER_2_PERCENT))
    assert stage == 1
    [breach] = breaches
    assert (breach.metric, breach.value, breach.limit, breach.sends, breach.demoted_to) == ("unsubscribe_rate", 0.03, 0.02, 100, 1)
    assert stored_stage(engine) == 1
    assert breaches_logged(engine) == [
        {"actor": "stop_loss", "entity_id": "mailer", "at": now, "metric": "unsubscribe_rate", "value": 0.03,
         "limit": 0.02, "sends": 100, "demoted_to": 1, "from": 3, "to": 1,
         "reason": "unsubscribe_rate 0.03 crossed 0.02 over 100 settled sends"}
    ]


def test_exactly_at_the_limit_nothing_happens(
    engine: Engine, check: Check, make_playbook: Callable[..., Playbook], write_decisions: Callable[..., None]
) -> None:
    write_decisions("sent", 2, unsubscribed=True)
    write_decisions("sent", 98)  # exactly 2%
    assert check(make_playbook(stage=3, agent=UNSUBSCRIBES_OVER_2_PERCENT)) == (3, [])
    assert stored_stage(engine) == 3 and breaches_logged(engine) == []


def test_no_judgement_before_the_minimum_number_of_sends(
    engine: Engine, check: Check, make_playbook: Callable[..., Playbook], write_decisions: Callable[..., None]
) -> None:
    pb = make_playbook(stage=3, agent=UNSUBSCRIBES_OVER_2_PERCENT)
    write_decisions("sent", 3, unsubscribed=True)
    write_decisions("sent", 96)  # 3% of 99 sends: over the limit, one send short of being judged
    assert check(pb) == (3, [])
    write_decisions("sent", 1)
    stage, [breach] = check(pb)
    assert stage == 1 and breach.sends == 100


def test_only_this_agents_settled_sends_of_the_lookback_count(
    check: Check, now: datetime, make_playbook: Callable[..., Playbook], write_decisions: Callable[..., None]
) -> None:
    pb = make_playbook(stage=3, agent=UNSUBSCRIBES_OVER_2_PERCENT)
    write_decisions("sent", 100)  # the sends that count: none unsubscribed
    # Unsubscribes that must not count: settled before the lookback, not settled yet, another
    # agent's, and decisions that were never sent.
    write_decisions("sent", 50, unsubscribed=True, settled_at=now - timedelta(days=LOOKBACK_DAYS, seconds=1))
    write_decisions("sent", 50, unsubscribed=True, settled_at=None)
    write_decisions("sent", 50, unsubscribed=True, agent_id="other")
    write_decisions("holdout", 50, unsubscribed=True)
    write_decisions("suppressed", 50, unsubscribed=True)
    assert check(pb) == (3, [])
    write_decisions("sent", 3, unsubscribed=True, settled_at=now - timedelta(days=LOOKBACK_DAYS))  # just inside
    stage, [breach] = check(pb)
    assert stage == 1 and breach.sends == 103 and breach.value == pytest.approx(3 / 103)


def test_a_floor_breach_and_rules_applied_in_order(
    engine: Engine, check: Check, make_playbook: Callable[..., Playbook], write_decisions: Callable[..., None]
) -> None:
    rules = (
        "    stop_loss:\n"
        "      - {metric: unsubscribe_rate, max: 0.02, min_sends: 100, demote_to: 2}\n"
        "      - {metric: visit_rate, min: 0.05, min_sends: 100, demote_to: 0}\n"
        "      - {metric: complaint_rate, max: 0.001, min_sends: 100, demote_to: 1}"
    )
    write_decisions("sent", 3, unsubscribed=True, complained=[True, False, False])
    write_decisions("sent", 97, visited=[i < 4 for i in range(97)])  # 4% visited: under the 5% floor
    stage, breaches = check(make_playbook(stage=3, agent=rules))
    # Demoted to 2, then to 0; the complaint rule's stage 1 is above 0, so it does not apply.
    assert stage == 0
    assert [(b.metric, b.limit, b.demoted_to) for b in breaches] == [("unsubscribe_rate", 0.02, 2), ("visit_rate", 0.05, 0)]
    assert breaches[1].value == pytest.approx(0.04)
    assert [(row["metric"], row["from"]) for row in breaches_logged(engine)] == [("unsubscribe_rate", 3), ("visit_rate", 2)]
    assert stored_stage(engine) == 0


def test_an_agent_already_at_or_below_the_rules_stage_is_not_demoted_again(
    engine: Engine, check: Check, make_playbook: Callable[..., Playbook], write_decisions: Callable[..., None]
) -> None:
    write_decisions("sent", 10, unsubscribed=True)
    write_decisions("sent", 90)
    pb = make_playbook(stage=3, agent=UNSUBSCRIBES_OVER_2_PERCENT)
    assert check(pb, stage=1) == (1, [])
    assert check(pb, stage=0) == (0, [])
    assert breaches_logged(engine) == [] and stored_stage(engine) == 3
    # Without rules nothing is measured: the stage given is the stage returned.
    assert check(make_playbook(stage=3), stage=3) == (3, [])
