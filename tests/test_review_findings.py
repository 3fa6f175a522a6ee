"""Guardrails hold at send time too, and approvals, caps and stop-loss resist the edge cases."""

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
from legato.store.ingest import import_customers
from legato.store.schema import audit_log, decisions, outbox, policy_states
from legato.trust.review import approve, list_items

from tests.world import AT, PLAYBOOK, expected_eligible, load_customers


def playbook(stage: int = 2, *, caps: str | None = None, extra: str = "", quiet: str = "", creatives: str = "[hello]"):  # type: ignore[no-untyped-def]
    text = PLAYBOOK.replace("STAGE", str(stage)).replace("HOLDOUT", "0").replace("BUDGET", "{}")
    if caps is not None:
        text = text.replace("    - {channel: email, max: 1, days: 3, on_block: drop}\n", caps)
    text = text.replace("  frequency_caps:", quiet + "  frequency_caps:") if quiet else text
    text = text.replace("actions: {creatives: [hello],", f"actions: {{creatives: {creatives},")
    return parse_playbook(text.replace("    trust_stage:", f"{extra}    trust_stage:", 1))


def sent_customers(path: Path) -> list[str]:
    if not path.exists():
        return []
    return [json.loads(line)["customer_id"] for line in path.read_text().splitlines()]


def test_consent_revoked_after_the_decision_stops_the_send(engine: Engine, tmp_path: Path) -> None:
    load_customers(engine, n=8)
    pb = playbook()
    clock = FixedClock(AT)
    sinks = transports(pb, tmp_path)
    run_cycle(engine, pb, clock, sinks)
    import_customers(engine, pa.table({"id": ["c001"], "consent_email_marketing": ["revoked"]}), clock=FixedClock(AT + timedelta(minutes=30)))
    clock.set(AT + timedelta(hours=3))
    report = dispatch_due(engine, pb, clock, sinks)
    assert report.failed["mailer"] == 1 and "revoked consent" in report.errors[0]
    assert "c001" not in sent_customers(tmp_path / "out/email.jsonl")


def test_a_late_dispatch_waits_for_the_end_of_quiet_hours(engine: Engine, tmp_path: Path) -> None:
    load_customers(engine, n=8)
    pb = playbook(quiet='  quiet_hours:\n    - {channel: email, start: "21:00", end: "08:00", on_block: delay}\n')
    clock = FixedClock(AT)
    sinks = transports(pb, tmp_path)
    run_cycle(engine, pb, clock, sinks)  # scheduled for 09:00 UTC
    clock.set(AT + timedelta(hours=15))  # the dispatcher only runs at 23:00 UTC
    assert sum(dispatch_due(engine, pb, clock, sinks).sent.values()) == 0
    with engine.connect() as c:
        # Quiet hours end at 08:00, the agent's send window opens at 09:00: it goes then.
        assert set(c.execute(sa.select(outbox.c.send_at)).scalars()) == {AT + timedelta(days=1, hours=1)}
    clock.set(AT + timedelta(days=1, hours=1, minutes=1))
    assert sum(dispatch_due(engine, pb, clock, sinks).sent.values()) == len(expected_eligible(8))


def test_items_waiting_for_review_count_against_the_cap(engine: Engine, tmp_path: Path) -> None:
    load_customers(engine)
    pb = playbook(stage=0)
    clock = FixedClock(AT)
    run_cycle(engine, pb, clock, transports(pb, tmp_path))
    clock.set(AT + timedelta(days=1))
    second = run_cycle(engine, pb, clock, transports(pb, tmp_path))
    assert second.agents["mailer"].queued == 0
    assert second.agents["mailer"].suppressed["frequency_cap:email 1 per 3 days"] == len(expected_eligible())


def test_delayed_sends_do_not_pile_up(engine: Engine, tmp_path: Path) -> None:
    load_customers(engine, n=8)
    pb = playbook(caps="    - {channel: email, max: 1, days: 3, on_block: delay}\n")
    clock = FixedClock(AT)
    sinks = transports(pb, tmp_path)
    for day in range(3):
        clock.set(AT + timedelta(days=day))
        run_cycle(engine, pb, clock, sinks)
    with engine.connect() as c:
        per_customer = c.execute(sa.select(outbox.c.customer_id, sa.func.count()).group_by(outbox.c.customer_id)).all()
    assert {n for _, n in per_customer} == {2}  # the first send, and one delayed to when the cap allows


def test_an_approved_variant_whose_creative_changed_needs_approval_again(engine: Engine, tmp_path: Path) -> None:
    load_customers(engine)
    clock = FixedClock(AT)
    manual = playbook(stage=0)
    run_cycle(engine, manual, clock, transports(manual, tmp_path))
    item = list_items(engine)[0]
    approve(engine, item.id, "rita", content_hash=item.content_hash, now=AT + timedelta(minutes=5))
    text = PLAYBOOK.replace("STAGE", "1").replace("HOLDOUT", "0").replace("BUDGET", "{}").replace('subject: "Hi {{ customer.tier }}"', 'subject: "Hello again {{ customer.tier }}"')
    changed = parse_playbook(text)
    clock.set(AT + timedelta(days=4))
    report = run_cycle(engine, changed, clock, transports(changed, tmp_path))
    assert report.agents["mailer"].scheduled == 0 and report.agents["mailer"].queued == len(expected_eligible())


def test_one_bad_message_does_not_stop_delivery(engine: Engine, tmp_path: Path) -> None:
    load_customers(engine, n=8)
    two = with_bye()
    clock = FixedClock(AT)
    sinks = transports(two, tmp_path)
    run_cycle(engine, two, clock, sinks)
    with engine.connect() as c:
        planned = dict(c.execute(sa.select(decisions.c.creative_id, sa.func.count()).where(decisions.c.status == "scheduled").group_by(decisions.c.creative_id)).all())
    assert planned.get("bye") and planned.get("hello")
    one = playbook()  # "bye" was retired from the playbook before the dispatcher ran
    clock.set(AT + timedelta(hours=3))
    report = dispatch_due(engine, one, clock, transports(one, tmp_path))
    assert report.sent["mailer"] == planned["hello"] and report.failed["mailer"] == planned["bye"]
    assert "no longer in the playbook" in report.errors[0]


def with_bye():  # type: ignore[no-untyped-def]
    text = PLAYBOOK.replace("STAGE", "2").replace("HOLDOUT", "0").replace("BUDGET", "{}")
    return parse_playbook(
        text.replace(
            "creatives:\n  - {id: hello,",
            'creatives:\n  - {id: bye, channel: email, subject: "Bye", body: "Bye. Unsubscribe: {{ unsubscribe_url }} {{ brand.postal_address }}"}\n  - {id: hello,',
        ).replace("actions: {creatives: [hello],", "actions: {creatives: [hello, bye],")
    )


def test_policy_state_follows_the_action_space(engine: Engine, tmp_path: Path) -> None:
    load_customers(engine, n=8)
    run_cycle(engine, playbook(), FixedClock(AT), transports(playbook(), tmp_path))
    text = PLAYBOOK.replace("STAGE", "2").replace("HOLDOUT", "0").replace("BUDGET", "{}")
    no_features = parse_playbook(text.replace("""    features: ['tier = "gold"', "lifetime_spend / 100", "purchase_count"]\n""", "    features: []\n"))
    # other features: the state cannot be reused either
    # 10:00: inside the send window, so day 0's messages go out with the day-4 cycle
    run_cycle(engine, no_features, FixedClock(AT + timedelta(days=4, hours=2)), transports(no_features, tmp_path))
    run_cycle(engine, with_bye(), FixedClock(AT + timedelta(days=8, hours=2)), transports(with_bye(), tmp_path))
    with engine.connect() as c:
        states = c.execute(sa.select(policy_states.c.state).order_by(policy_states.c.version)).scalars().all()
        resets = c.execute(sa.select(sa.func.count()).select_from(audit_log).where(audit_log.c.action == "policy_reset")).scalar_one()
    got = [(s["action_keys"], len(s["features"])) for s in states]
    assert got[:3] == [
        (["hello/no_offer/09:00-17:00"], 3),
        (["hello/no_offer/09:00-17:00"], 0),
        (["hello/no_offer/09:00-17:00", "bye/no_offer/09:00-17:00"], 3),
    ]
    # Day 0's decisions (same features, action "hello" still there) then teach the new policy.
    assert got[3:] == [(["hello/no_offer/09:00-17:00", "bye/no_offer/09:00-17:00"], 3)]
    assert resets == 2


def test_running_twice_does_not_queue_the_same_customer_twice(engine: Engine, tmp_path: Path) -> None:
    load_customers(engine, n=8)
    text = PLAYBOOK.replace("STAGE", "0").replace("HOLDOUT", "0").replace("BUDGET", "{}")
    no_caps = parse_playbook(text.replace("    - {channel: email, max: 1, days: 3, on_block: drop}\n", "    - {channel: email, max: 10, days: 1, on_block: drop}\n"))
    first = run_cycle(engine, no_caps, FixedClock(AT), transports(no_caps, tmp_path))
    again = run_cycle(engine, no_caps, FixedClock(AT), transports(no_caps, tmp_path))
    assert first.agents["mailer"].queued == len(expected_eligible(8))
    assert again.agents["mailer"].queued == 0
    assert again.agents["mailer"].suppressed["awaiting_review"] == len(expected_eligible(8))
