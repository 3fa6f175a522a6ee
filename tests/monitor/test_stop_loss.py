"""Stop-loss: an agent whose sends credibly cross a limit is paused and demoted, with the evidence,
a finding and one alert; only a person resumes it, with a reason, audited."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from legato.monitor.alerts import list_alerts
from legato.monitor.stop_loss import Method, StopLossResult, check_stop_loss
from legato.playbook.models import Playbook
from legato.store.schema import agents, audit_log, events, review_items
from legato.store.status import AlertStatus
from legato.trust.track_record import TrustConflict, TrustInvalid, promotion_check, resume, track_record, PromotionCriteria

UNSUBSCRIBES_OVER_2_PERCENT = "    stop_loss: [{metric: unsubscribe_rate, max: 0.02, min_sends: 100, demote_to: 1}]"
Check = Callable[..., StopLossResult]


@pytest.fixture
def now(cycle_at: datetime) -> datetime:
    return cycle_at + timedelta(days=9)  # the decisions settle eight days after the cycle


@pytest.fixture
def check(engine: Engine, cycle_at: datetime, now: datetime) -> Check:
    """check(playbook, stage=3, at=now): the stop-loss of the playbook's agent, stored at stage 3 and active."""
    with engine.begin() as c:
        c.execute(sa.insert(agents).values(id="mailer", trust_stage=3, status="active", updated_at=cycle_at))

    def run(playbook: Playbook, stage: int = 3, at: datetime | None = None) -> StopLossResult:
        with engine.begin() as c:
            return check_stop_loss(c, playbook, playbook.agents[0], stage, at or now)

    return run


def agent_row(engine: Engine) -> tuple[int, str]:
    with engine.connect() as c:
        row = c.execute(sa.select(agents.c.trust_stage, agents.c.status).where(agents.c.id == "mailer")).one()
    return int(row.trust_stage), str(row.status)


def logged(engine: Engine, action: str) -> list[dict]:
    with engine.connect() as c:
        rows = c.execute(sa.select(audit_log).where(audit_log.c.action == action).order_by(audit_log.c.id)).all()
    return [{"actor": r.actor, "entity_id": r.entity_id, "at": r.at, **r.detail} for r in rows]


def findings(engine: Engine) -> list[dict]:
    with engine.connect() as c:
        rows = c.execute(sa.select(review_items).where(review_items.c.kind == "finding")).all()
    return [{"reason": r.reason, "priority": r.priority, "agent_id": r.agent_id, **r.evidence} for r in rows]


def test_a_credible_breach_pauses_demotes_and_records_the_evidence_a_finding_and_one_alert(
    engine: Engine, check: Check, now: datetime, make_playbook: Callable[..., Playbook], write_decisions: Callable[..., None]
) -> None:
    write_decisions("sent", 12, unsubscribed=True)
    write_decisions("sent", 88)  # 12 of 100 unsubscribed against a 2% limit
    result = check(make_playbook(stage=3, agent=UNSUBSCRIBES_OVER_2_PERCENT))
    assert (result.stage, result.paused) == (1, True)
    [breach] = result.breaches
    assert (breach.metric, breach.side, breach.limit, breach.sends, breach.demoted_to) == ("unsubscribe_rate", "max", 0.02, 100, 1)
    assert breach.value == pytest.approx(0.12) and breach.method == Method.TRIPWIRE
    assert breach.statistic >= breach.threshold == pytest.approx(6.3969, abs=1e-3)  # log(30 / 0.05)
    assert (breach.first_day, breach.last_day) == ("2024-03-04", "2024-03-13")
    assert agent_row(engine) == (1, "paused")
    [demoted] = logged(engine, "stop_loss_breach")
    [paused] = logged(engine, "agent_paused")
    for row in (demoted, paused):
        assert row["actor"] == "stop_loss" and row["at"] == now
        assert row["breaches"] == [breach.to_dict()] and row["reason"].startswith("unsubscribe_rate 0.12 over 100 sends")
    assert (demoted["from"], demoted["to"], paused["from"], paused["to"]) == (3, 1, "active", "paused")
    [finding] = findings(engine)
    assert (finding["reason"], finding["priority"], finding["agent_id"], finding["from"], finding["to"]) == ("stop_loss", 95, "mailer", 3, 1)
    assert finding["breaches"] == [breach.to_dict()]
    with engine.connect() as c:
        [alert] = list_alerts(c)
    assert (alert.incident, alert.kind, alert.status, alert.agent_id, alert.repeats) == ("stop_loss:mailer", "stop_loss", "open", "mailer", 0)
    assert alert.id == finding["alert_id"] and "paused by its stop-loss and demoted 3 → 1" in alert.summary


def test_a_rate_at_or_under_the_limit_or_short_of_the_minimum_sample_is_not_judged(
    engine: Engine, check: Check, make_playbook: Callable[..., Playbook], write_decisions: Callable[..., None]
) -> None:
    pb = make_playbook(stage=3, agent=UNSUBSCRIBES_OVER_2_PERCENT)
    write_decisions("sent", 11, unsubscribed=True)
    write_decisions("sent", 88)  # 11% of 99 sends: far over the limit, one send short of being judged
    assert check(pb) == StopLossResult(3, [], False)
    assert agent_row(engine) == (3, "active") and logged(engine, "agent_paused") == [] and findings(engine) == []
    write_decisions("sent", 1)
    assert check(pb).paused


def test_an_observed_rate_a_little_over_the_limit_is_not_a_breach_on_a_small_sample(
    engine: Engine, check: Check, make_playbook: Callable[..., Playbook], write_decisions: Callable[..., None]
) -> None:
    """3 of 100 is 3% against a 2% limit: the old fixed threshold demoted on it; noise at this size."""
    write_decisions("sent", 3, unsubscribed=True)
    write_decisions("sent", 97)
    assert check(make_playbook(stage=3, agent=UNSUBSCRIBES_OVER_2_PERCENT)) == StopLossResult(3, [], False)


def test_only_this_agents_sends_count_and_unsettled_unsubscribes_count_as_they_arrive(
    engine: Engine, check: Check, cycle_at: datetime, now: datetime, make_playbook: Callable[..., Playbook], write_decisions: Callable[..., None]
) -> None:
    pb = make_playbook(stage=3, agent=UNSUBSCRIBES_OVER_2_PERCENT)
    write_decisions("sent", 100)
    # Unsubscribes that must not count: another agent's, and decisions never sent.
    write_decisions("sent", 50, unsubscribed=True, agent_id="other")
    write_decisions("holdout", 50, unsubscribed=True)
    write_decisions("suppressed", 50, unsubscribed=True)
    assert check(pb).breaches == []
    # Twenty sends yesterday, not settled, whose customers unsubscribed an hour later: counted now.
    yesterday = now - timedelta(days=1)
    write_decisions("sent", 20, decided_at=yesterday, settled_at=None)
    with engine.connect() as c:
        customers = c.execute(sa.select(sa.text("customer_id")).select_from(sa.text("decisions")).where(sa.text("settled_at IS NULL"))).scalars().all()
    with engine.begin() as c:
        c.execute(sa.insert(events), [{"id": f"u{i}", "customer_id": customer, "type": "unsubscribe", "occurred_at": yesterday + timedelta(hours=1)}
                                      for i, customer in enumerate(customers)])
    result = check(pb)
    [breach] = result.breaches
    # The evidence is carried by all 120 sends (the 20 alone are under the minimum sample).
    assert breach.first_day == "2024-03-04" and breach.sends == 120 and breach.value == pytest.approx(20 / 120)


def test_a_guardrail_against_the_holdout_fires_on_a_credible_harm_only(
    engine: Engine, check: Check, make_playbook: Callable[..., Playbook], write_decisions: Callable[..., None]
) -> None:
    rule = "    stop_loss: [{metric: conversion_rate, against: holdout, min: 0, min_sends: 500, min_holdout: 200, demote_to: 0}]"
    pb = make_playbook(stage=2, holdout=0.1, agent=rule)
    write_decisions("sent", 50, purchased=True)
    write_decisions("sent", 950)  # 5% of sends bought
    write_decisions("holdout", 30, purchased=True)
    write_decisions("holdout", 270)  # 10% of the holdout bought without a message
    result = check(pb, stage=2)
    [breach] = result.breaches
    assert breach.method == Method.HOLDOUT and (breach.sends, breach.holdout) == (1000, 300)
    assert breach.value == pytest.approx(-0.05) and breach.holdout_value == pytest.approx(0.1)
    assert breach.statistic >= breach.threshold == pytest.approx(2.9957, abs=1e-3)  # log(1 / 0.05)
    assert result.stage == 0 and agent_row(engine) == (0, "paused")


def test_the_same_conversion_as_the_holdout_is_no_breach(
    engine: Engine, check: Check, make_playbook: Callable[..., Playbook], write_decisions: Callable[..., None]
) -> None:
    rule = "    stop_loss: [{metric: conversion_rate, against: holdout, min: 0, min_sends: 500, min_holdout: 200}]"
    write_decisions("sent", 80, purchased=True)
    write_decisions("sent", 920)
    write_decisions("holdout", 24, purchased=True)
    write_decisions("holdout", 276)  # 8% both
    assert check(make_playbook(stage=2, holdout=0.1, agent=rule), stage=2).breaches == []


def test_offer_cost_over_the_daily_amount_is_a_breach(
    engine: Engine, check: Check, make_playbook: Callable[..., Playbook], write_decisions: Callable[..., None]
) -> None:
    text = make_playbook(stage=2).model_dump(mode="json")
    text["offers"] = [{"id": "ten_off", "kind": "amount_off", "value": 10, "cost": 4.0}]
    text["agents"][0]["actions"]["offers"] = ["ten_off"]
    text["agents"][0]["stop_loss"] = [{"metric": "offer_cost", "max": 300}]
    pb = Playbook.model_validate(text)
    write_decisions("sent", 80, offer_id="ten_off")  # 320 spent on the day
    [breach] = check(pb, stage=2).breaches
    assert (breach.method, breach.value, breach.limit, breach.sends, breach.first_day) == (Method.BUDGET, 320.0, 300.0, 80, "2024-03-04")


def test_resuming_needs_a_person_and_a_reason_clears_the_alert_and_starts_a_new_epoch(
    engine: Engine, check: Check, now: datetime, make_playbook: Callable[..., Playbook], write_decisions: Callable[..., None]
) -> None:
    pb = make_playbook(stage=3, agent=UNSUBSCRIBES_OVER_2_PERCENT)
    write_decisions("sent", 12, unsubscribed=True)
    write_decisions("sent", 88)
    assert check(pb).paused
    later = now + timedelta(hours=1)
    with pytest.raises(TrustInvalid, match="paused by its stop-loss .* resuming it needs a reason"):
        resume(engine, "mailer", "ana", later)
    with pytest.raises(TrustInvalid, match="who makes this change is not said"):
        resume(engine, "mailer", " ", later, reason="fixed")
    assert agent_row(engine) == (1, "paused")
    state = resume(engine, "mailer", "ana", later, reason="the unsubscribe link was broken; fixed")
    assert (state.status, state.trust_stage) == ("active", 1)  # resumed at the demoted stage
    [row] = logged(engine, "agent_resumed")
    assert (row["actor"], row["reason"], row["from"], row["to"]) == ("ana", "the unsubscribe link was broken; fixed", "paused", "active")
    assert row["answers"]["breaches"][0]["metric"] == "unsubscribe_rate"
    with engine.connect() as c:
        [alert] = list_alerts(c)
    assert (alert.status, alert.cleared_at) == (AlertStatus.CLEARED, later) and row["alert_cleared"] == alert.id
    with pytest.raises(TrustConflict, match="already active"):
        resume(engine, "mailer", "ana", later, reason="again")
    # The old sends are before the epoch: the stop-loss starts afresh and does not fire again.
    assert check(pb, stage=1, at=later + timedelta(hours=1)) == StopLossResult(1, [], False)
    # A breach after the resume is a new incident: a second alert.
    write_decisions("sent", 12, unsubscribed=True, decided_at=later + timedelta(minutes=30))
    write_decisions("sent", 88, decided_at=later + timedelta(minutes=30))
    assert check(pb, stage=1, at=later + timedelta(hours=2)).paused
    with engine.connect() as c:
        assert [(a.status, a.incident) for a in list_alerts(c)] == [("cleared", "stop_loss:mailer"), ("open", "stop_loss:mailer")]


def test_a_breach_at_the_rules_stage_still_pauses_and_blocks_promotion(
    engine: Engine, check: Check, now: datetime, make_playbook: Callable[..., Playbook], write_decisions: Callable[..., None]
) -> None:
    write_decisions("sent", 12, unsubscribed=True)
    write_decisions("sent", 88)
    with engine.begin() as c:
        c.execute(sa.update(agents).values(trust_stage=1))
    result = check(make_playbook(stage=3, agent=UNSUBSCRIBES_OVER_2_PERCENT), stage=1)
    assert (result.stage, result.paused) == (1, True) and agent_row(engine) == (1, "paused")
    assert logged(engine, "stop_loss_breach") == []  # no stage changed
    record = track_record(engine, "mailer", now=now + timedelta(days=1))
    assert record.last_stop_loss_breach == now
    ok, unmet = promotion_check(record, PromotionCriteria(min_reviewed=0, min_unedited_approval_rate=0.0, require_lift=False))
    assert not ok and any("stop-loss breached" in u for u in unmet)


def test_a_resume_of_an_agent_a_person_paused_needs_no_reason(engine: Engine, check: Check, now: datetime) -> None:
    from legato.trust.track_record import pause

    pause(engine, "mailer", "ana", "holiday freeze", now)
    assert resume(engine, "mailer", "ana", now).status == "active"
    [row] = logged(engine, "agent_resumed")
    assert row["reason"] is None and "answers" not in row
