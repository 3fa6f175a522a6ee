"""The dispatcher asks at send time what the cycle asked when it decided, on both databases.

Defects this file holds fixed: a soft opt-in the cycle honoured was refused at send time
(the dispatcher had a consent check of its own), and a creative edited between decision
and send went out unchecked (the content hash was compared for approved decisions only).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy import Engine

from legato.clock import FixedClock
from legato.deliver.dispatch import dispatch_due, transports
from legato.cycle import run_cycle
from legato.validation import parse_playbook
from legato.playbook.models import Playbook
from legato.store.ingest import import_customers, import_events
from legato.store.schema import agents, decisions, outbox

AT = datetime(2024, 3, 4, 8, 0, tzinfo=timezone.utc)
SEND = AT + timedelta(hours=2)  # the send window opens at 09:00 UTC

PLAYBOOK = """
brand:
  name: Dispatch Co
  legal: {sender_name: Dispatch Co, postal_address: "9 Harbour Road", support_contact: "help@dispatch.example", unsubscribe_url: "https://dispatch.example/u"}
attributes: {nickname: string}
objectives:
  - {id: grow, goal: engagement, why: testing, stages: [any], kpis: [{metric: visit_rate, target: 0.1}]}
lifecycle:
  - {stage: any, when: "true"}
channels:
  email: {kind: file, path: out/email.jsonl}
  sms: {kind: file, path: out/sms.jsonl}
creatives:
  - {id: note, channel: email, subject: "News for you", body: "BODY"}
  - {id: text, channel: sms, body: "Dispatch Co: new arrivals this week. Reply STOP to opt out."}
agents:
  - id: mailer
    objective: grow
    audience: "true"
    actions: {creatives: [CREATIVE], send_windows: ["09:00-17:00"], do_nothing: false}
    policy: {name: uniform_random}
    holdout: 0
    trust_stage: 3
guardrails:
  consent:
    - {channel: email, purpose: marketing, existing_customer_exception: SOFT}
"""
BODY = "Hello {{ customer.nickname }}, our spring range is in. Unsubscribe: {{ unsubscribe_url }} Dispatch Co, {{ brand.postal_address }}"


def make_playbook(*, soft: bool = False, body: str = BODY, creative: str = "note") -> Playbook:
    text = PLAYBOOK.replace("SOFT", "true" if soft else "false").replace("CREATIVE", creative)
    return parse_playbook(text.replace('"BODY"', json.dumps(body)))


def customers(engine: Engine, rows: dict[str, str], *, phone: bool = False) -> None:
    """One customer per id with the given e-mail marketing consent cell ("" for none)."""
    ids = list(rows)
    table = {
        "id": ids,
        "email": [f"{c}@people.example" for c in ids],
        "time_zone": ["UTC"] * len(ids),
        "consent_email_marketing": list(rows.values()),
        "nickname": ["Sam"] * len(ids),
    }
    if phone:
        table["phone"] = ["+12125550100"] * len(ids)
    import_customers(engine, pa.table(table), attribute_types={"nickname": "string"}, clock=FixedClock(AT))


def purchase(engine: Engine, customer: str) -> None:
    import_events(
        engine,
        pa.table({"id": [f"p-{customer}"], "customer_id": [customer], "type": ["purchase"], "occurred_at": ["2024-02-01T00:00:00Z"], "revenue": [40.0]}),
        clock=FixedClock(AT),
    )


def written(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def outbox_rows(engine: Engine) -> dict[str, tuple[str, str | None]]:
    with engine.connect() as c:
        return {r.customer_id: (r.status, r.error) for r in c.execute(sa.select(outbox.c.customer_id, outbox.c.status, outbox.c.error))}


def test_a_soft_opt_in_the_cycle_honoured_is_honoured_at_send_time(engine: Engine, tmp_path: Path) -> None:
    customers(engine, {"buyer": "", "stranger": ""})
    purchase(engine, "buyer")
    pb = make_playbook(soft=True)
    sinks = transports(pb, tmp_path)
    report = run_cycle(engine, pb, FixedClock(AT), sinks)
    assert report.agents["mailer"].scheduled == 1 and report.agents["mailer"].suppressed == {"no_consent:email": 1}
    sent = dispatch_due(engine, pb, FixedClock(SEND), sinks)
    assert (sent.sent["mailer"], sent.failed["mailer"], sent.errors) == (1, 0, [])
    assert [m["customer_id"] for m in written(tmp_path / "out/email.jsonl")] == ["buyer"]


def test_a_revocation_after_the_decision_wins_over_the_soft_opt_in(engine: Engine, tmp_path: Path) -> None:
    customers(engine, {"buyer": ""})
    purchase(engine, "buyer")
    pb = make_playbook(soft=True)
    sinks = transports(pb, tmp_path)
    run_cycle(engine, pb, FixedClock(AT), sinks)
    import_customers(engine, pa.table({"id": ["buyer"], "consent_email_marketing": ["revoked"]}), clock=FixedClock(AT + timedelta(minutes=5)))
    report = dispatch_due(engine, pb, FixedClock(SEND), sinks)
    assert report.failed["mailer"] == 1 and "consent_revoked:email" in report.errors[0]
    assert written(tmp_path / "out/email.jsonl") == []


def test_a_creative_edited_between_decision_and_send_is_not_sent(engine: Engine, tmp_path: Path) -> None:
    """Defect 3: the edited text never goes out. What goes out is what the decision named and
    the cycle checked, rendered from the decision's playbook version; a decision with no
    stored version (made before migration 0010) whose creative changed is not sent at all."""
    customers(engine, {"a": "express", "b": "express"})
    decided = make_playbook()
    run_cycle(engine, decided, FixedClock(AT), transports(decided, tmp_path))
    edited = make_playbook(body="ACT NOW!!!! LAST CHANCE!!!! Hello {{ customer.nickname }}")
    with engine.begin() as c:
        c.execute(sa.update(decisions).where(decisions.c.customer_id == "b").values(playbook_version_id=None))
    report = dispatch_due(engine, edited, FixedClock(SEND), transports(edited, tmp_path))
    assert (report.sent["mailer"], report.failed["mailer"]) == (1, 1)
    assert len(report.errors) == 1 and "changed after the decision" in report.errors[0]
    [message] = written(tmp_path / "out/email.jsonl")
    assert message["customer_id"] == "a" and "ACT NOW" not in str(message["body"])
    assert str(message["body"]).startswith("Hello Sam, our spring range is in.")
    assert sorted(status for status, _ in outbox_rows(engine).values()) == ["dead", "sent"]


def test_the_content_the_decision_named_goes_out_rendered_for_each_customer(engine: Engine, tmp_path: Path) -> None:
    customers(engine, {"a": "express"})
    pb = make_playbook()
    sinks = transports(pb, tmp_path)
    run_cycle(engine, pb, FixedClock(AT), sinks)
    assert sum(dispatch_due(engine, pb, FixedClock(AT + timedelta(minutes=30)), sinks).sent.values()) == 0  # not due yet
    dispatch_due(engine, pb, FixedClock(SEND), sinks)
    [message] = written(tmp_path / "out/email.jsonl")
    assert message["to"] == "a@people.example" and message["subject"] == "News for you"
    assert str(message["body"]).startswith("Hello Sam, our spring range is in.")
    token = str(message["headers"]["List-Unsubscribe"]).split("?t=")[1].rstrip(">")  # type: ignore[index]
    assert f"https://dispatch.example/u?t={token}" in str(message["body"])  # the same link in the header and the body
    assert message["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"  # type: ignore[index]
    again = dispatch_due(engine, pb, FixedClock(SEND + timedelta(hours=1)), sinks)
    assert sum(again.sent.values()) == 0 and len(written(tmp_path / "out/email.jsonl")) == 1


def test_personal_data_a_customer_attribute_brings_in_blocks_the_copy_and_demotes_the_agent(engine: Engine, tmp_path: Path) -> None:
    customers(engine, {"a": "express"})
    import_customers(engine, pa.table({"id": ["a"], "nickname": ["sam.other@people.example"]}), attribute_types={"nickname": "string"}, clock=FixedClock(AT))
    pb = make_playbook()
    sinks = transports(pb, tmp_path)
    run_cycle(engine, pb, FixedClock(AT), sinks)
    report = dispatch_due(engine, pb, FixedClock(SEND), sinks)
    assert report.failed["mailer"] == 1 and "personal_data.email_address" in report.errors[0]
    assert report.demoted == ["mailer"]
    with engine.connect() as c:
        assert c.execute(sa.select(agents.c.trust_stage).where(agents.c.id == "mailer")).scalar_one() == 0


def test_a_customer_who_lost_their_contact_point_is_not_sent(engine: Engine, tmp_path: Path) -> None:
    customers(engine, {"a": ""}, phone=True)
    pb = make_playbook(creative="text")
    sinks = transports(pb, tmp_path)
    run_cycle(engine, pb, FixedClock(AT), sinks)
    with engine.begin() as c:
        c.execute(sa.text("UPDATE customers SET phone = NULL"))
    report = dispatch_due(engine, pb, FixedClock(SEND), sinks)
    assert report.failed["mailer"] == 1 and "no_contact_point:sms" in report.errors[0]
    with engine.connect() as c:
        assert c.execute(sa.select(decisions.c.status)).scalar_one() == "failed"
