"""Outcomes reach the decision that preceded them, become rewards, and teach the policy."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy import Engine

from legato.clock import FixedClock
from legato.deliver.dispatch import dispatch_due, transports
from legato.cycle import run_cycle
from legato.monitor.lift import measure
from legato.validation import parse_playbook
from legato.store.ingest import import_events
from legato.store.schema import decisions, policy_states

from tests.world import AT, PLAYBOOK, load_customers
from tests.world import learning_playbook as playbook


def first_day(engine: Engine, tmp_path: Path):  # type: ignore[no-untyped-def]
    """20 customers, one cycle at AT and its messages sent by AT + 10 h."""
    load_customers(engine, n=20)
    pb = playbook()
    clock = FixedClock(AT)
    sinks = transports(pb, tmp_path)
    run_cycle(engine, pb, clock, sinks)
    clock.set(AT + timedelta(hours=2))  # 10:00, inside the 09:00-17:00 send window
    dispatch_due(engine, pb, clock, sinks)
    return pb, clock, sinks


def test_outcomes_are_attributed_rewarded_and_learned(engine: Engine, tmp_path: Path) -> None:
    pb, clock, sinks = first_day(engine, tmp_path)
    with engine.connect() as c:
        first = dict(c.execute(sa.select(decisions.c.customer_id, decisions.c.status)).all())
    buyer = next(cid for cid, status in first.items() if status == "sent")
    idle = next(cid for cid, status in first.items() if status == "nothing")
    events = pa.table(
        {
            "id": ["v1", "p1", "v2", "late"],
            "customer_id": [buyer, buyer, idle, idle],
            "type": ["visit", "purchase", "visit", "visit"],
            "occurred_at": [
                (AT + timedelta(hours=11)).isoformat(),
                (AT + timedelta(hours=12)).isoformat(),
                (AT + timedelta(hours=13)).isoformat(),
                (AT + timedelta(days=3)).isoformat(),  # after the one-day window: not credited
            ],
            "revenue": [None, 50.0, None, None],
        }
    )
    import_events(engine, events, clock=clock)
    clock.set(AT + timedelta(days=1, hours=1))
    report = run_cycle(engine, pb, clock, sinks)
    agent = report.agents["mailer"]
    assert agent.settled == len(first)
    assert agent.learned_from == sum(1 for s in first.values() if s in ("sent", "nothing"))
    assert agent.learning_error is None
    with engine.connect() as c:
        settled = {
            row.customer_id: row
            for row in c.execute(
                sa.select(decisions).where(decisions.c.settled_at.is_not(None))
            )
        }
        versions = c.execute(sa.select(sa.func.count()).select_from(policy_states)).scalar_one()
    assert settled[buyer].purchased is True and settled[buyer].revenue == 50.0 and settled[buyer].reward == 1.0
    assert settled[idle].visited is True and settled[idle].purchased is False and settled[idle].reward == 0.0
    assert sum(bool(row.visited) for row in settled.values()) == 2
    assert versions == 2  # the fresh policy, then the one that learned
    with engine.connect() as c:
        measured = measure(c, "mailer")
    # No holdout (share 0): nothing to compare with, and the report says so instead of a lift.
    assert (measured.customers_treated, measured.customers_control, measured.lifts) == (len(first), 0, [])
    assert measured.nothing_yet is not None and "holdout share is 0" in measured.nothing_yet


def test_unlearnable_rewards_keep_the_last_good_state(engine: Engine, tmp_path: Path) -> None:
    """beta_thompson needs rewards in [0, 1]; revenue rewards are refused, audited, and deciding goes on."""
    load_customers(engine, n=10)
    text = PLAYBOOK.replace("STAGE", "2").replace("HOLDOUT", "0").replace("BUDGET", "{}")
    text = text.replace("    policy: {name: uniform_random}", "    policy: {name: beta_thompson}")
    text = text.replace("kpis: [{metric: visit_rate, target: 0.1}]}", "kpis: [{metric: revenue, target: 5}], attribution_days: 1}")
    pb = parse_playbook(text)
    clock = FixedClock(AT)
    sinks = transports(pb, tmp_path)
    run_cycle(engine, pb, clock, sinks)
    clock.set(AT + timedelta(hours=2))  # 10:00, inside the 09:00-17:00 send window
    dispatch_due(engine, pb, clock, sinks)
    with engine.connect() as c:
        sent = c.execute(sa.select(decisions.c.customer_id).where(decisions.c.status == "sent")).scalars().first()
    import_events(engine, pa.table({"id": ["p"], "customer_id": [sent], "type": ["purchase"], "occurred_at": [(AT + timedelta(hours=11)).isoformat()], "revenue": [80.0]}), clock=clock)
    clock.set(AT + timedelta(days=1, hours=1))
    report = run_cycle(engine, pb, clock, sinks)
    agent = report.agents["mailer"]
    assert agent.learning_error is not None and "rewards in [0, 1]" in agent.learning_error
    assert agent.scheduled + agent.suppressed_total + agent.nothing == agent.audience  # the cycle still decided


def test_outcomes_that_name_their_decision_are_checked_and_credited_to_it(engine: Engine, tmp_path: Path) -> None:
    pb, clock, sinks = first_day(engine, tmp_path)
    with engine.connect() as c:
        rows = c.execute(sa.select(decisions.c.id, decisions.c.customer_id, decisions.c.status)).all()
    sent = next(r for r in rows if r.status == "sent")
    other = next(r for r in rows if r.customer_id != sent.customer_id)
    events = pa.table(
        {
            "id": ["ok", "unknown", "someone_else"],
            "customer_id": [sent.customer_id, sent.customer_id, sent.customer_id],
            "type": ["purchase", "purchase", "purchase"],
            "occurred_at": [(AT + timedelta(hours=11)).isoformat()] * 3,
            "revenue": [20.0, 30.0, 40.0],
            "decision_id": [sent.id, 999_999, other.id],
        }
    )
    report = import_events(engine, events, clock=clock)
    assert report.inserted == 1 and report.rejected == 2
    errors = {e.row: e for e in report.errors}
    assert set(errors) == {2, 3} and {e.column for e in report.errors} == {"decision_id"}
    assert "decision_id '999999' is not a decision Legato made for customer" in errors[2].reason
    assert f"decision_id '{other.id}'" in errors[3].reason
    run_cycle(engine, pb, FixedClock(AT + timedelta(days=2)), sinks)
    with engine.connect() as c:
        credited = c.execute(sa.select(decisions.c.purchased, decisions.c.revenue).where(decisions.c.id == sent.id)).one()
    assert credited.purchased and credited.revenue == 20.0


def test_a_reviewers_rejection_teaches_the_agent(engine: Engine, tmp_path: Path) -> None:
    from legato.trust.review import approve, list_items, reject

    load_customers(engine, n=20)
    text = PLAYBOOK.replace("STAGE", "0").replace("HOLDOUT", "0").replace("BUDGET", "{}")
    text = text.replace("    policy: {name: uniform_random}", "    policy: {name: beta_thompson}")
    text = text.replace(
        "kpis: [{metric: visit_rate, target: 0.1}]}",
        "kpis: [{metric: visit_rate, target: 0.1}], attribution_days: 1, reward: {rejection_penalty: 0.5}}",
    )
    pb = parse_playbook(text)
    clock = FixedClock(AT)
    sinks = transports(pb, tmp_path)
    run_cycle(engine, pb, clock, sinks)
    first, second, *_ = list_items(engine)
    reject(engine, first.id, "ana", "off_brand", note="too pushy", now=AT + timedelta(hours=1))
    approve(engine, second.id, "ana", content_hash=second.content_hash, now=AT + timedelta(hours=1))
    clock.set(AT + timedelta(hours=2))  # 10:00, inside the 09:00-17:00 send window
    dispatch_due(engine, pb, clock, sinks)
    report = run_cycle(engine, pb, FixedClock(AT + timedelta(days=4)), sinks).agents["mailer"]
    with engine.connect() as c:
        rewards = dict(c.execute(sa.select(decisions.c.id, decisions.c.reward).where(decisions.c.settled_at.is_not(None))).all())
    # The stored reward is the outcome's (lift compares it with the holdout): nobody visited.
    assert rewards[first.decision_id] == 0.0 and rewards[second.decision_id] == 0.0
    assert report.learned_from == 2  # the rejection teaches too; the expired proposals teach nothing
    with engine.connect() as c:
        states = c.execute(sa.select(policy_states.c.state).order_by(policy_states.c.version)).scalars().all()
    before, after = (np.asarray(states[i]["beta"]).sum() for i in (0, -1))
    assert after - before == 2.0  # two failures: the rejection and the approved send nobody answered
    assert np.asarray(states[-1]["alpha"]).sum() == np.asarray(states[0]["alpha"]).sum()


def test_the_penalty_of_a_rejection_reaches_the_policy_not_the_stored_reward(engine: Engine) -> None:
    """settle() itself: the feedback handed to the policy carries the penalty."""
    from legato.learn.attribution import settle
    from legato.store.schema import review_items

    load_customers(engine, n=4)
    pb = playbook()
    with engine.begin() as c:
        from legato.store.schema import cycles

        cycle = c.execute(sa.insert(cycles).values(at=AT, started_at=AT, status="finished").returning(cycles.c.id)).scalar_one()
        base = {"cycle_id": cycle, "agent_id": "mailer", "decided_at": AT, "action": "hello/no_offer/09:00-17:00", "propensity": 1.0, "holdout": False, "findings": [], "route": "queued"}
        rejected = c.execute(sa.insert(decisions).values(customer_id="c001", status="rejected", **base).returning(decisions.c.id)).scalar_one()
        c.execute(sa.insert(review_items).values(kind="decision", decision_id=rejected, agent_id="mailer", reason="trust_stage_0", priority=50, status="rejected", created_at=AT))
        settled = settle(c, "mailer", pb.objective("grow"), {}, AT + timedelta(days=2))
        stored = c.execute(sa.select(decisions.c.reward).where(decisions.c.id == rejected)).scalar_one()
    assert settled.executed.tolist() == [True]
    assert settled.reward.tolist() == [-pb.objective("grow").reward.rejection_penalty] and stored == 0.0


def test_an_outcome_naming_a_decision_is_exclusive_within_its_agent_only(engine: Engine) -> None:
    from legato.learn.attribution import settle
    from legato.store.schema import cycles

    load_customers(engine, n=4)
    pb = playbook()
    with engine.begin() as c:
        # One decision per customer, agent and cycle: the second message is the next hour's cycle.
        cycle = {
            h: c.execute(sa.insert(cycles).values(at=AT + timedelta(hours=h), started_at=AT + timedelta(hours=h), status="finished").returning(cycles.c.id)).scalar_one()
            for h in (0, 1)
        }
        base = {"customer_id": "c001", "action": "hello/no_offer/09:00-17:00", "propensity": 1.0, "holdout": False, "findings": [], "route": "scheduled", "status": "sent"}
        ids = {
            name: c.execute(
                sa.insert(decisions).values(cycle_id=cycle[h], agent_id=agent, decided_at=AT + timedelta(hours=h), send_at=AT + timedelta(hours=h), **base).returning(decisions.c.id)
            ).scalar_one()
            for name, agent, h in (("a_first", "mailer", 0), ("a_second", "mailer", 1), ("b", "other", 0))
        }
    events = pa.table({"id": ["buy"], "customer_id": ["c001"], "type": ["purchase"], "occurred_at": [(AT + timedelta(hours=3)).isoformat()], "revenue": [25.0], "decision_id": [ids["a_first"]]})
    assert import_events(engine, events, clock=FixedClock(AT)).inserted == 1
    with engine.begin() as c:
        settle(c, "mailer", pb.objective("grow"), {}, AT + timedelta(days=3))
        settle(c, "other", pb.objective("grow"), {}, AT + timedelta(days=3))
        bought = dict(c.execute(sa.select(decisions.c.id, decisions.c.purchased)).all())
    # Without the name, the later message of the same agent would have cut a_first's window
    # and taken the purchase; another agent's decision still sees it.
    assert bought[ids["a_first"]] and not bought[ids["a_second"]] and bought[ids["b"]]


def test_late_outcomes_are_credited_once_and_do_not_teach_the_policy_again(engine: Engine, tmp_path: Path) -> None:
    """A purchase, an open and a click imported after the decision settled, but inside its
    window, are credited at the next cycle; a re-run credits nothing twice."""
    from legato.learn.attribution import credit_late
    from legato.monitor.outcomes import outcomes
    from legato.store.schema import audit_log, settings

    pb, clock, sinks = first_day(engine, tmp_path)
    with engine.connect() as c:
        first = c.execute(sa.select(decisions.c.id, decisions.c.customer_id, decisions.c.status)).all()
    buyer = next(r for r in first if r.status == "sent")
    settling = run_cycle(engine, pb, FixedClock(AT + timedelta(days=1, hours=1)), sinks).agents["mailer"]
    assert settling.settled == len(first) and settling.late_credited == 0
    with engine.connect() as c:
        before = c.execute(sa.select(decisions.c.purchased, decisions.c.revenue, decisions.c.opened, decisions.c.reward).where(decisions.c.id == buyer.id)).one()
    assert (before.purchased, before.revenue, before.opened, before.reward) == (False, 0.0, False, 0.0)

    # Imported a day late: all three happened inside the first decision's one-day window.
    late = pa.table(
        {
            "id": ["open", "click", "buy"],
            "customer_id": [buyer.customer_id] * 3,
            "type": ["open", "click", "purchase"],
            "occurred_at": [(AT + timedelta(hours=h)).isoformat() for h in (10.5, 11, 12)],
            "revenue": [None, None, 40.0],
            "decision_id": [buyer.id, buyer.id, None],
        }
    )
    import_events(engine, late, clock=FixedClock(AT + timedelta(days=2)))
    with engine.connect() as c:
        states_before = c.execute(sa.select(sa.func.count()).select_from(policy_states)).scalar_one()
    second = run_cycle(engine, pb, FixedClock(AT + timedelta(days=2, hours=1)), sinks).agents["mailer"]
    assert second.late_credited == 1
    with engine.connect() as c:
        after = c.execute(sa.select(decisions.c.purchased, decisions.c.revenue, decisions.c.opened, decisions.c.clicked, decisions.c.reward).where(decisions.c.id == buyer.id)).one()
        audited = c.execute(sa.select(audit_log.c.detail).where(audit_log.c.action == "late_outcomes_credited")).scalars().all()
        states = c.execute(sa.select(policy_states.c.state).order_by(policy_states.c.version)).scalars().all()
    assert (after.purchased, after.revenue, after.opened, after.clicked, after.reward) == (True, 40.0, True, True, 1.0)
    assert [{**d} for d in audited] == [{"decisions": 1, "events": 3}]
    # The policy learned from the second day's settled decisions only, not from the corrected one.
    assert len(states) == states_before + 1
    taught = sum(np.asarray(states[-1][k]).sum() - np.asarray(states[-2][k]).sum() for k in ("alpha", "beta"))
    assert taught == second.learned_from
    # Opens and clicks reach the reports.
    with engine.connect() as c:
        by_creative = {r.group["creative"]: r for r in outcomes(c, agent_id="mailer", by=("creative",), decided_to=AT + timedelta(hours=1))}
    assert (by_creative["hello"].opened, by_creative["hello"].clicked, by_creative["hello"].purchased, by_creative["hello"].revenue) == (1, 1, 1, 40.0)

    # Again: nothing new is credited, by the next cycle or by a step that looks at every batch again.
    third = run_cycle(engine, pb, FixedClock(AT + timedelta(days=3, hours=1)), sinks).agents["mailer"]
    assert third.late_credited == 0
    with engine.begin() as c:
        c.execute(sa.delete(settings).where(settings.c.key.like("late_outcomes_seen:%")))
        again = credit_late(c, "mailer", pb.objective("grow"), {}, AT + timedelta(days=3, hours=2))
        unchanged = c.execute(sa.select(decisions.c.revenue).where(decisions.c.id == buyer.id)).scalar_one()
    assert again.decisions == 0 and again.events == 3 and unchanged == 40.0
