"""How the engine routes by trust stage and escalation rules, and how stop-loss demotes."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy import Engine

from legato.clock import FixedClock
from legato.deliver.dispatch import dispatch_due, transports
from legato.cycle import run_cycle
from legato.validation import parse_playbook
from legato.store.ingest import import_events
from legato.store.schema import agents, audit_log, decisions, review_items
from legato.trust.review import approve, list_items
from legato.trust.track_record import resume

from tests.world import AT, PLAYBOOK, expected_eligible, load_customers

TWO_CREATIVES = PLAYBOOK.replace(
    "creatives:\n  - {id: hello,",
    'creatives:\n  - {id: promo, channel: email, subject: "News", body: "New arrivals. Unsubscribe: {{ unsubscribe_url }} {{ brand.postal_address }}"}\n  - {id: hello,',
)


def playbook(stage: int, *, creatives: str = "[hello]", extra: str = "", holdout: float = 0.0, base: str = PLAYBOOK):  # type: ignore[no-untyped-def]
    text = base.replace("STAGE", str(stage)).replace("HOLDOUT", str(holdout)).replace("BUDGET", "{}")
    text = text.replace("actions: {creatives: [hello],", f"actions: {{creatives: {creatives},")
    return parse_playbook(text.replace("    trust_stage:", f"{extra}    trust_stage:", 1))


def review_reasons(engine: Engine) -> dict[str, str]:
    query = sa.select(decisions.c.customer_id, review_items.c.reason).join(review_items, review_items.c.decision_id == decisions.c.id)
    with engine.connect() as c:
        return dict(c.execute(query).all())


def test_assisted_agent_executes_only_what_a_person_approved_before(engine: Engine, tmp_path: Path) -> None:
    load_customers(engine)
    clock = FixedClock(AT)
    manual = playbook(0)
    run_cycle(engine, manual, clock, transports(manual, tmp_path))
    first = list_items(engine)[0]
    approve(engine, first.id, "rita", content_hash=first.content_hash, now=AT + timedelta(minutes=5))

    assisted = playbook(1, creatives="[hello, promo]", base=TWO_CREATIVES)
    clock.set(AT + timedelta(days=4))  # past the 3-day frequency cap
    report = run_cycle(engine, assisted, clock, transports(assisted, tmp_path))
    agent = report.agents["mailer"]
    with engine.connect() as c:
        latest = c.execute(
            sa.select(decisions.c.creative_id, decisions.c.status).where(decisions.c.decided_at == AT + timedelta(days=4))
        ).all()
    by_creative = {(creative, status) for creative, status in latest if status in ("scheduled", "queued")}
    assert by_creative == {("hello", "scheduled"), ("promo", "queued")}
    assert agent.scheduled + agent.queued == len(expected_eligible())
    # The approved stage-0 message's window (day 0, 09:00-17:00) passed long ago: it waits for today's.
    assert agent.sent == 0 and report.dispatch.late_moved["mailer"] == 1
    queued_reasons = {r for cid, r in review_reasons(engine).items()} - {"trust_stage_0"}
    assert queued_reasons == {"not_approved_before"}


def test_supervised_agent_audit_sample_has_the_configured_size(engine: Engine, tmp_path: Path) -> None:
    load_customers(engine, n=2000)
    pb = playbook(2, extra="    audit_sample: 0.1\n")
    report = run_cycle(engine, pb, FixedClock(AT), transports(pb, tmp_path))
    scheduled = report.agents["mailer"].scheduled
    with engine.connect() as c:
        audited = c.execute(sa.select(sa.func.count()).select_from(review_items).where(review_items.c.status == "audit")).scalar_one()
        still_sent = c.execute(
            sa.select(sa.func.count()).select_from(review_items.join(decisions, decisions.c.id == review_items.c.decision_id)).where(decisions.c.status == "scheduled")
        ).scalar_one()
    assert abs(audited - 0.1 * scheduled) <= 4 * (0.1 * 0.9 * scheduled) ** 0.5  # binomial, 4 standard deviations
    assert still_sent == audited  # the audit does not hold the send back


def test_escalation_rules_route_b2b_renewals_and_high_value_upsells(engine: Engine, tmp_path: Path, b2b_and_upsell_playbook: str) -> None:
    pb = playbook(3, base=b2b_and_upsell_playbook)
    report = run_cycle(engine, pb, FixedClock(AT), transports(pb, tmp_path))
    assert review_reasons(engine) == {"c001": "b2b_renewal", "c002": "high_value_upsell"}
    assert report.agents["mailer"].queued == 2
    with engine.connect() as c:
        findings = dict(c.execute(sa.select(decisions.c.customer_id, decisions.c.findings).where(decisions.c.customer_id.in_(["c001", "c002"]))).all())
    assert findings["c001"] == ["escalate:b2b_renewal"]


def test_stop_loss_breach_pauses_and_demotes_at_once(engine: Engine, tmp_path: Path) -> None:
    load_customers(engine, n=40)
    text = PLAYBOOK.replace("kpis: [{metric: visit_rate, target: 0.1}]}", "kpis: [{metric: visit_rate, target: 0.1}], attribution_days: 1}")
    pb = playbook(3, extra="    stop_loss:\n      - {metric: unsubscribe_rate, max: 0.05, min_sends: 10, demote_to: 0}\n", base=text)
    clock = FixedClock(AT)
    sinks = transports(pb, tmp_path)
    run_cycle(engine, pb, clock, sinks)
    clock.set(AT + timedelta(hours=2))  # 10:00, inside the send window
    dispatch_due(engine, pb, clock, sinks)
    with engine.connect() as c:
        sent = c.execute(sa.select(decisions.c.customer_id).where(decisions.c.status == "sent")).scalars().all()
    unsubscribes = sent[:12]  # 12 of ~26 sends: far above the 5% limit
    import_events(engine, pa.table({"id": [f"u{i}" for i in range(12)], "customer_id": unsubscribes, "type": ["unsubscribe"] * 12, "occurred_at": [(AT + timedelta(hours=11)).isoformat()] * 12}), clock=clock)
    clock.set(AT + timedelta(days=4, hours=2))  # past the 3-day frequency cap
    report = run_cycle(engine, pb, clock, sinks)
    agent = report.agents["mailer"]
    assert agent.stage == 0 and agent.paused and agent.scheduled == agent.queued == 0  # stopped in the same cycle
    (breach,) = agent.stop_loss
    assert breach.metric == "unsubscribe_rate" and breach.sends == len(sent)
    with engine.connect() as c:
        assert c.execute(sa.select(agents.c.trust_stage, agents.c.status)).one() == (0, "paused")
        assert c.execute(sa.select(sa.func.count()).select_from(audit_log).where(audit_log.c.action == "stop_loss_breach")).scalar_one() == 1
    # Paused: the next cycle leaves it alone. A person resumes it; the playbook still says 3,
    # but the demotion stands until a person promotes the agent again.
    clock.set(AT + timedelta(days=5, hours=2))
    assert "mailer" not in run_cycle(engine, pb, clock, sinks).agents
    resume(engine, "mailer", "ana", AT + timedelta(days=5, hours=3), reason="unsubscribe link checked")
    clock.set(AT + timedelta(days=6, hours=2))
    again = run_cycle(engine, pb, clock, sinks).agents["mailer"]
    assert again.stage == 0 and not again.paused and again.queued > 0  # decided as Manual


def test_approval_is_bound_to_the_content_a_person_saw(engine: Engine, tmp_path: Path) -> None:
    """A stage-0 agent sends nothing until approved, then exactly what was approved, even if
    the playbook file's creative changed after the approval (the message is rendered from the
    decision's own playbook version); without a stored version (a decision from before them),
    changed content is not sent at all."""
    load_customers(engine, n=8)
    clock = FixedClock(AT)
    manual = playbook(0)
    sinks = transports(manual, tmp_path)
    run_cycle(engine, manual, clock, sinks)
    clock.set(AT + timedelta(hours=4))  # 12:00, inside the send window
    assert sum(dispatch_due(engine, manual, clock, sinks).sent.values()) == 0
    first, second = list_items(engine)[:2]
    approve(engine, first.id, "rita", content_hash=first.content_hash, now=clock.now())
    approve(engine, second.id, "rita", content_hash=second.content_hash, now=clock.now())
    sent = dispatch_due(engine, manual, clock, sinks)
    assert sent.sent["mailer"] == 2
    lines = (tmp_path / "out/email.jsonl").read_text().splitlines()
    assert len(lines) == 2

    third = list_items(engine)[0]
    approve(engine, third.id, "rita", content_hash=third.content_hash, now=clock.now())
    changed = parse_playbook(
        PLAYBOOK.replace("STAGE", "0").replace("HOLDOUT", "0").replace("BUDGET", "{}").replace('subject: "Hi {{ customer.tier }}"', 'subject: "Big news {{ customer.tier }}"')
    )
    report = dispatch_due(engine, changed, clock, transports(changed, tmp_path))
    assert report.sent["mailer"] == 1 and report.errors == []
    lines = [json.loads(line) for line in (tmp_path / "out/email.jsonl").read_text().splitlines()]
    assert len(lines) == 3 and lines[-1]["subject"] == "Hi gold"

    fourth = list_items(engine)[0]
    approve(engine, fourth.id, "rita", content_hash=fourth.content_hash, now=clock.now())
    with engine.begin() as c:
        c.execute(sa.update(decisions).where(decisions.c.id == fourth.decision_id).values(playbook_version_id=None))
    report = dispatch_due(engine, changed, clock, transports(changed, tmp_path))
    assert report.failed["mailer"] == 1 and "changed after rita approved it" in report.errors[0]
    assert len((tmp_path / "out/email.jsonl").read_text().splitlines()) == 3


def test_low_confidence_decisions_escalate(engine: Engine, tmp_path: Path) -> None:
    """uniform_random over 2 actions chooses with propensity 0.5: uncertainty 0.5 crosses 0.4."""
    load_customers(engine, n=40)
    pb = playbook(3, creatives="[hello, promo]", base=TWO_CREATIVES, extra="    escalation:\n      - {when: 'uncertainty > 0.4', reason: low_confidence}\n")
    report = run_cycle(engine, pb, FixedClock(AT), transports(pb, tmp_path))
    assert report.agents["mailer"].queued == len(expected_eligible()) and report.agents["mailer"].scheduled == 0
    assert set(review_reasons(engine).values()) == {"low_confidence"}
