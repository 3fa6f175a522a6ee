"""One cycle end to end, on both databases: audience → decide → guardrails → trust → outbox → dispatch."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from legato.clock import FixedClock
from legato.deliver.dispatch import dispatch_due, transports
from legato.cycle import run_cycle
from legato.errors import NothingToDoError
from legato.validation import PlaybookError, parse_playbook
from legato.store.ingest import import_customers, import_events
from legato.store.schema import agents, audit_log, decisions, outbox, review_items

from tests.world import AT, PLAYBOOK, expected_eligible, load_customers, playbook


def statuses(engine: Engine) -> dict[str, str]:
    with engine.connect() as c:
        return dict(c.execute(sa.select(decisions.c.customer_id, decisions.c.status)).all())


def test_empty_database_is_refused(engine: Engine, tmp_path: Path) -> None:
    pb = playbook()
    with pytest.raises(NothingToDoError, match="no customers"):
        run_cycle(engine, pb, FixedClock(AT), transports(pb, tmp_path))


def test_autonomous_cycle_schedules_then_dispatches_exactly_once(engine: Engine, tmp_path: Path) -> None:
    load_customers(engine)
    pb = playbook(stage=2)
    clock = FixedClock(AT)
    sinks = transports(pb, tmp_path)
    report = run_cycle(engine, pb, clock, sinks)
    agent = report.agents["mailer"]
    audience = {f"c{i:03d}" for i in range(40) if i % 4 != 3}
    assert agent.audience == len(audience)
    assert set(statuses(engine)) == audience
    assert agent.scheduled == len(expected_eligible())
    assert agent.suppressed == {"consent_revoked:email": 4, "no_consent:email": 2}  # c015, c035 are bronze
    assert agent.sent == 0  # the window opens at 09:00 UTC

    clock.set(AT + timedelta(hours=2))
    first = dispatch_due(engine, pb, clock, sinks)
    again = dispatch_due(engine, pb, clock, sinks)
    assert first.sent["mailer"] == len(expected_eligible())
    assert sum(again.sent.values()) == 0
    lines = [json.loads(line) for line in (tmp_path / "out/email.jsonl").read_text().splitlines()]
    assert {m["customer_id"] for m in lines} == expected_eligible()
    assert lines[0]["subject"] == "Hi gold"
    assert lines[0]["body"].startswith(f"Hello {lines[0]['customer_id']}. Unsubscribe: https://test.example/u?t=")
    link = lines[0]["body"].split("Unsubscribe: ")[1].split(" ")[0]
    assert lines[0]["headers"] == {"List-Unsubscribe": f"<{link}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}
    with engine.connect() as c:
        sent = c.execute(sa.select(sa.func.count()).select_from(outbox).where(outbox.c.status == "sent")).scalar_one()
        orphan = c.execute(
            sa.select(sa.func.count()).select_from(outbox.outerjoin(decisions, decisions.c.id == outbox.c.decision_id)).where(decisions.c.id.is_(None))
        ).scalar_one()
        audits = c.execute(sa.select(audit_log.c.action)).scalars().all()
    assert sent == len(expected_eligible()) and orphan == 0
    assert "decided" in audits


def test_manual_stage_sends_nothing_and_queues_for_review(engine: Engine, tmp_path: Path) -> None:
    load_customers(engine)
    pb = playbook(stage=0)
    clock = FixedClock(AT)
    report = run_cycle(engine, pb, clock, transports(pb, tmp_path))
    clock.set(AT + timedelta(days=1))
    dispatch_due(engine, pb, clock, transports(pb, tmp_path))
    assert report.agents["mailer"].queued == len(expected_eligible())
    with engine.connect() as c:
        assert c.execute(sa.select(sa.func.count()).select_from(outbox)).scalar_one() == 0
        assert c.execute(sa.select(sa.func.count()).select_from(review_items).where(review_items.c.status == "open")).scalar_one() == len(expected_eligible())
    # The transport checks its file can be written before a cycle (creating it empty): nothing is in it.
    written = tmp_path / "out/email.jsonl"
    assert not written.exists() or written.read_text(encoding="utf-8") == ""


def test_frequency_cap_drops_the_next_day_and_lifts_after_the_window(engine: Engine, tmp_path: Path) -> None:
    load_customers(engine)
    pb = playbook(stage=3)
    clock = FixedClock(AT)
    sinks = transports(pb, tmp_path)
    run_cycle(engine, pb, clock, sinks)
    clock.set(AT + timedelta(days=1, hours=2))  # 10:00: yesterday's messages go, inside the window
    second = run_cycle(engine, pb, clock, sinks)
    assert second.agents["mailer"].scheduled == 0
    assert second.agents["mailer"].suppressed["frequency_cap:email 1 per 3 days"] == len(expected_eligible())
    clock.set(AT + timedelta(days=4, hours=2))
    fourth = run_cycle(engine, pb, clock, sinks)
    assert fourth.agents["mailer"].scheduled == len(expected_eligible())


def test_holdout_and_budget(engine: Engine, tmp_path: Path) -> None:
    load_customers(engine, n=400)
    pb = playbook(stage=2, holdout=0.25, budget="{daily_sends: 50}")
    report = run_cycle(engine, pb, FixedClock(AT), transports(pb, tmp_path))
    agent = report.agents["mailer"]
    assert 40 <= agent.holdout <= 110  # 300 in the audience, a quarter held out
    assert agent.scheduled == 50
    assert agent.suppressed["budget:daily_sends"] > 0
    with engine.connect() as c:
        held = c.execute(sa.select(sa.func.count()).select_from(decisions).where(decisions.c.holdout.is_(True), decisions.c.status == "holdout")).scalar_one()
    assert held == agent.holdout


def test_same_time_same_decisions(engine: Engine, tmp_path: Path, database_url: str) -> None:
    load_customers(engine, n=100)
    pb = playbook(stage=2, holdout=0.2)
    run_cycle(engine, pb, FixedClock(AT), transports(pb, tmp_path))
    first = statuses(engine)
    with engine.begin() as c:
        for table in (review_items, outbox, decisions):
            c.execute(sa.delete(table))
    run_cycle(engine, pb, FixedClock(AT), transports(pb, tmp_path))
    assert statuses(engine) == first


def test_events_feed_traits_used_by_the_audience(engine: Engine, tmp_path: Path) -> None:
    load_customers(engine, n=8)
    events = pa.table(
        {
            "id": ["e1", "e2"],
            "customer_id": ["c001", "c002"],
            "type": ["purchase", "purchase"],
            "occurred_at": ["2024-03-01T10:00:00Z", "2023-01-01T10:00:00Z"],
            "revenue": [120.0, 80.0],
        }
    )
    import_events(engine, events, clock=FixedClock(AT))
    text = PLAYBOOK.replace("STAGE", "2").replace("HOLDOUT", "0").replace("BUDGET", "{}")
    text = text.replace("""audience: 'tier in ("gold", "silver")'""", "audience: 'days_since_last_purchase < 30'")
    pb = parse_playbook(text)
    report = run_cycle(engine, pb, FixedClock(AT), transports(pb, tmp_path))
    assert report.agents["mailer"].audience == 1
    assert set(statuses(engine)) == {"c001"}


def test_content_guardrails_block_or_escalate_variants(engine: Engine, tmp_path: Path) -> None:
    load_customers(engine, n=40)
    urgent = PLAYBOOK.replace("STAGE", "3").replace("HOLDOUT", "0").replace("BUDGET", "{}").replace(
        'body: "Hello {{ customer.id }}.', 'body: "Hurry, this ends tonight! Hello {{ customer.id }}.'
    )
    report = run_cycle(engine, parse_playbook(urgent), FixedClock(AT), transports(parse_playbook(urgent), tmp_path))
    agent = report.agents["mailer"]
    assert agent.scheduled == 0
    assert agent.suppressed["content:compliance.fake_urgency"] == len(expected_eligible())


def test_escalating_claim_waits_for_review_even_when_autonomous(engine: Engine, tmp_path: Path) -> None:
    load_customers(engine, n=40)
    claim = PLAYBOOK.replace("STAGE", "3").replace("HOLDOUT", "0").replace("BUDGET", "{}").replace(
        'body: "Hello {{ customer.id }}.', 'body: "Results guaranteed. Hello {{ customer.id }}.'
    )
    pb = parse_playbook(claim)
    report = run_cycle(engine, pb, FixedClock(AT), transports(pb, tmp_path))
    assert report.agents["mailer"].queued == len(expected_eligible())
    with engine.connect() as c:
        reasons = set(c.execute(sa.select(review_items.c.reason)).scalars())
    assert reasons == {"content_escalation"}


def test_dispatch_blocks_personal_data_that_personalization_brings_in(engine: Engine, tmp_path: Path) -> None:
    """The variant is clean, but one customer's attribute puts someone else's e-mail in the text."""
    load_customers(engine, n=8)
    import_customers(engine, pa.table({"id": ["c001"], "nickname": ["write to other.person@elsewhere.example"]}), clock=FixedClock(AT))
    text = PLAYBOOK.replace("STAGE", "2").replace("HOLDOUT", "0").replace("BUDGET", "{}")
    pb = parse_playbook(text.replace('subject: "Hi {{ customer.tier }}"', "subject: \"Hi {{ customer.nickname | default('there') }}\""))
    clock = FixedClock(AT)
    sinks = transports(pb, tmp_path)
    run_cycle(engine, pb, clock, sinks)
    clock.set(AT + timedelta(hours=3))
    report = dispatch_due(engine, pb, clock, sinks)
    assert report.failed["mailer"] == 1
    assert "content guardrails blocked" in report.errors[0] and "personal_data" in report.errors[0]
    # A blocking finding reached dispatch: the agent is demoted to Manual at once, and why is recorded.
    assert report.demoted == ["mailer"]
    with engine.connect() as c:
        assert c.execute(sa.select(agents.c.trust_stage)).scalar_one() == 0
        (detail,) = c.execute(sa.select(audit_log.c.detail).where(audit_log.c.action == "compliance_breach")).scalars()
    assert detail["from"] == 2 and detail["rules"] == ["personal_data.email_address"]
    sent = [json.loads(line)["customer_id"] for line in (tmp_path / "out/email.jsonl").read_text().splitlines()]
    assert "c001" not in sent and len(sent) == report.sent["mailer"]


def test_pages_cover_the_audience_exactly_once(engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import legato.cycle.run

    monkeypatch.setattr(legato.cycle.run, "PAGE", 7)
    load_customers(engine, n=100)
    pb = playbook(stage=2)
    report = run_cycle(engine, pb, FixedClock(AT), transports(pb, tmp_path))
    with engine.connect() as c:
        decided = c.execute(sa.select(decisions.c.customer_id)).scalars().all()
    audience = {f"c{i:03d}" for i in range(100) if i % 4 != 3}
    assert len(decided) == len(set(decided)) == report.agents["mailer"].audience == len(audience)
    assert set(decided) == audience
    assert report.agents["mailer"].scheduled == len(expected_eligible(100))


def test_existing_customer_exception_is_a_soft_opt_in(engine: Engine, tmp_path: Path) -> None:
    load_customers(engine, n=20)  # c005 and c015 have no consent statement at all; c015 is bronze
    import_events(engine, pa.table({"id": ["p5"], "customer_id": ["c005"], "type": ["purchase"], "occurred_at": ["2024-02-01T00:00:00Z"], "revenue": [30.0]}), clock=FixedClock(AT))
    strict = playbook(stage=2)
    soft = parse_playbook(
        PLAYBOOK.replace("STAGE", "2").replace("HOLDOUT", "0").replace("BUDGET", "{}").replace(
            "    - {channel: email, purpose: marketing}", "    - {channel: email, purpose: marketing, existing_customer_exception: true}"
        )
    )
    assert run_cycle(engine, strict, FixedClock(AT), transports(strict, tmp_path)).agents["mailer"].suppressed["no_consent:email"] == 1
    with engine.begin() as c:
        for table in (review_items, outbox, decisions):
            c.execute(sa.delete(table))
    report = run_cycle(engine, soft, FixedClock(AT), transports(soft, tmp_path))
    assert "no_consent:email" not in report.agents["mailer"].suppressed  # c005 bought before
    assert report.agents["mailer"].suppressed["consent_revoked:email"] == 2  # an objection still wins


def test_transactional_messages_skip_marketing_rules_but_need_a_contact_point(engine: Engine, tmp_path: Path) -> None:
    load_customers(engine, n=20)  # c000/c010 revoked, c005 no consent
    text = PLAYBOOK.replace("STAGE", "2").replace("HOLDOUT", "0").replace("BUDGET", "{}").replace(
        "  - {id: hello, channel: email,", "  - {id: hello, channel: email, purpose: transactional,"
    )
    text = text.replace("  frequency_caps:", '  quiet_hours:\n    - {channel: email, start: "00:00", end: "23:59"}\n  frequency_caps:')
    pb = parse_playbook(text.replace('body: "Hello {{ customer.id }}. Unsubscribe: {{ unsubscribe_url }} {{ brand.postal_address }}"', 'body: "Your order {{ customer.id }} has shipped."'))
    clock = FixedClock(AT)
    sinks = transports(pb, tmp_path)
    first = run_cycle(engine, pb, clock, sinks).agents["mailer"]
    audience = sum(1 for i in range(20) if i % 4 != 3)
    assert first.scheduled == audience and not first.suppressed  # no consent, cap or quiet-hour blocks
    clock.set(AT + timedelta(hours=2))
    assert dispatch_due(engine, pb, clock, sinks).sent["mailer"] == audience


def test_suppression_list_blocks_marketing_everywhere(engine: Engine, tmp_path: Path) -> None:
    from legato.guard.contact import add_suppression

    load_customers(engine, n=8)
    add_suppression(engine, "email", "C001@Test.Example", "asked by phone", AT)  # stored lower-case
    add_suppression(engine, "customer", "c002", "legal hold", AT)
    add_suppression(engine, "customer", "c002", "legal hold", AT)  # twice: no change
    pb = playbook(stage=2)
    report = run_cycle(engine, pb, FixedClock(AT), transports(pb, tmp_path))
    assert report.agents["mailer"].suppressed["do_not_contact"] == 2
    # Listed after the decision: the dispatcher still does not send.
    add_suppression(engine, "email", "c004@test.example", "complaint", AT)
    clock = FixedClock(AT + timedelta(hours=3))
    sent = dispatch_due(engine, pb, clock, transports(pb, tmp_path))
    assert sent.failed["mailer"] == 1 and "do-not-contact" in sent.errors[0]


def test_caps_can_count_one_tag_only(engine: Engine, tmp_path: Path) -> None:
    load_customers(engine, n=8)
    text = PLAYBOOK.replace("STAGE", "3").replace("HOLDOUT", "0").replace("BUDGET", "{}")
    text = text.replace("  - {id: hello, channel: email,", "  - {id: hello, channel: email, tags: [promo],")
    text = text.replace("    - {channel: email, max: 1, days: 3, on_block: drop}\n", "    - {channel: email, tag: promo, max: 1, days: 3}\n")
    pb = parse_playbook(text)
    run_cycle(engine, pb, FixedClock(AT), transports(pb, tmp_path))
    second = run_cycle(engine, pb, FixedClock(AT + timedelta(days=1)), transports(pb, tmp_path)).agents["mailer"]
    assert second.scheduled == 0 and second.suppressed["frequency_cap:email tagged promo 1 per 3 days"] == len(expected_eligible(8))
    # Two creatives, one tagged promo: the promo cap blocks only the promo creative.
    both = parse_playbook(
        text.replace(
            "creatives:\n  - {id: hello,",
            'creatives:\n  - {id: bye, channel: email, tags: [news], subject: "News", body: "News. Unsubscribe: {{ unsubscribe_url }} {{ brand.postal_address }}"}\n  - {id: hello,',
        ).replace("actions: {creatives: [hello],", "actions: {creatives: [hello, bye],")
    )
    load_customers(engine, n=60)
    for day in (10, 11):
        run_cycle(engine, both, FixedClock(AT + timedelta(days=day)), transports(both, tmp_path))
    with engine.connect() as c:
        capped = c.execute(
            sa.select(decisions.c.creative_id).where(
                decisions.c.decided_at == AT + timedelta(days=11), sa.cast(decisions.c.findings, sa.Text).like("%frequency_cap:email tagged promo 1 per 3 days%")
            )
        ).scalars().all()
    assert capped and set(capped) == {"hello"}
    with pytest.raises(PlaybookError, match="no creative carries the tag 'promo'"):
        parse_playbook(text.replace("tags: [promo],", "tags: [news],"))


def test_whatsapp_outside_the_service_window_needs_an_approved_template(engine: Engine, tmp_path: Path) -> None:
    from legato.trust.inbound import receive

    load_customers(engine, n=8)
    ids = [f"c{i:03d}" for i in range(8)]
    import_customers(engine, pa.table({"id": ids, "phone": [f"+1212555{i:04d}" for i in range(8)], "consent_whatsapp_marketing": ["express"] * 8}), clock=FixedClock(AT))
    text = PLAYBOOK.replace("STAGE", "2").replace("HOLDOUT", "0").replace("BUDGET", "{}").replace("  email: {kind: file, path: out/email.jsonl}", "  email: {kind: file, path: out/email.jsonl}\n  whatsapp: {kind: file, path: out/wa.jsonl}")
    text = text.replace(
        "creatives:\n  - {id: hello,",
        'creatives:\n  - {id: chat, channel: whatsapp, body: "Test Co: new arrivals are in. Reply STOP to opt out."}\n  - {id: hello,',
    ).replace("actions: {creatives: [hello],", "actions: {creatives: [chat],").replace("    - {channel: email, purpose: marketing}", "    - {channel: email, purpose: marketing}\n    - {channel: whatsapp, purpose: marketing}")
    pb = parse_playbook(text)
    receive(engine, pb, "c001", "whatsapp", "hi, do you have boots in size 9?", AT - timedelta(hours=2))  # opens c001's window
    report = run_cycle(engine, pb, FixedClock(AT), transports(pb, tmp_path)).agents["mailer"]
    assert report.scheduled == 1  # only c001 wrote within 24 hours
    assert report.suppressed == {"whatsapp_outside_service_window": report.audience - 1}
    approved = parse_playbook(text.replace('  - {id: chat, channel: whatsapp,', '  - {id: chat, channel: whatsapp, approved_template: true,'))
    later = run_cycle(engine, approved, FixedClock(AT + timedelta(days=4)), transports(approved, tmp_path)).agents["mailer"]
    assert "whatsapp_outside_service_window" not in later.suppressed


def test_calendar_day_cap_resets_at_local_midnight(engine: Engine, tmp_path: Path) -> None:
    load_customers(engine, n=8)
    text = PLAYBOOK.replace("STAGE", "3").replace("HOLDOUT", "0").replace("BUDGET", "{}").replace('send_windows: ["09:00-17:00"]', 'send_windows: ["09:00-23:00"]')
    for on_block in ("drop", "delay"):
        pb = parse_playbook(text.replace("    - {channel: email, max: 1, days: 3, on_block: drop}\n", f"    - {{channel: email, max: 1, calendar: day, on_block: {on_block}}}\n"))
        with engine.begin() as c:
            for table in (review_items, outbox, decisions):
                c.execute(sa.delete(table))
        run_cycle(engine, pb, FixedClock(AT), transports(pb, tmp_path))  # sends at 09:00 UTC
        same_day = run_cycle(engine, pb, FixedClock(AT + timedelta(hours=10)), transports(pb, tmp_path)).agents["mailer"]
        next_day = run_cycle(engine, pb, FixedClock(AT + timedelta(hours=23)), transports(pb, tmp_path)).agents["mailer"]
        eligible = len(expected_eligible(8))
        if on_block == "drop":
            assert same_day.scheduled == 0 and same_day.suppressed["frequency_cap:email 1 per calendar day"] == eligible
        else:  # moved to the next local day
            assert same_day.scheduled == eligible and same_day.delayed == eligible
            assert same_day.delayed_by == {"frequency_cap:email 1 per calendar day": eligible}
            with engine.connect() as c:
                moved = set(
                    c.execute(
                        sa.select(decisions.c.send_at).where(decisions.c.decided_at == AT + timedelta(hours=10), decisions.c.route == "scheduled")
                    ).scalars()
                )
            assert moved == {AT + timedelta(hours=16)}  # midnight UTC after 2024-03-04
        # 23 hours after the first send: a rolling day would still block; a new calendar day does not.
        assert next_day.scheduled + next_day.suppressed.get("frequency_cap:email 1 per calendar day", 0) == eligible
        if on_block == "drop":
            assert next_day.scheduled == eligible
    with pytest.raises(PlaybookError, match="give either days"):
        parse_playbook(text.replace("max: 1, days: 3, on_block: drop}", "max: 1, days: 3, calendar: day}"))


def test_the_budget_says_which_limit_a_send_hit(engine: Engine, tmp_path: Path) -> None:
    load_customers(engine, n=400)
    text = PLAYBOOK.replace("STAGE", "3").replace("HOLDOUT", "0").replace("BUDGET", "{daily_sends: 20, daily_offer_cost: 30}")
    text = text.replace("channels:\n", "offers:\n  - {id: ship, kind: free_shipping, value: 8, cost: 3}\nchannels:\n")
    pb = parse_playbook(text.replace("actions: {creatives: [hello],", "actions: {creatives: [hello], offers: [ship],"))
    agent = run_cycle(engine, pb, FixedClock(AT), transports(pb, tmp_path)).agents["mailer"]
    assert agent.scheduled == 10  # 30 / 3: the offer budget binds before the 20 sends
    assert set(agent.suppressed) >= {"budget:daily_offer_cost"} and "budget:daily_sends" not in agent.suppressed
