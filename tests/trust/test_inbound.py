"""Customers' replies: STOP and HELP handled at once, an angry reply routed to a person."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import Engine
from typer.testing import CliRunner

from legato.cli.app import app
from legato.clock import FixedClock
from legato.deliver.dispatch import transports
from legato.cycle import run_cycle
from legato.validation import parse_playbook
from legato.store.schema import audit_log, consents, inbound_messages, outbox
from legato.trust.inbound import classify, receive
from legato.trust.review import list_items, resolve

from tests.world import AT, PLAYBOOK, load_customers


def playbook():  # type: ignore[no-untyped-def]
    return parse_playbook(PLAYBOOK.replace("STAGE", "2").replace("HOLDOUT", "0").replace("BUDGET", "{}"))


def test_classification() -> None:
    assert classify("stop").intents == ["opt_out"]
    assert classify(" Unsubscribe! ").intents == ["opt_out"]
    assert classify("please stop sending me these, it's getting old").intents[0] == "opt_out"  # any reasonable means
    assert "opt_out" not in classify("can I cancel my order?").intents
    assert "opt_out" not in classify("Cancel my order please").intents and "opt_out" not in classify("End of story: great boots").intents
    assert classify("HELP").intents == ["help"]
    angry = classify("This is the worst service ever, I want a refund and I will call my lawyer")
    assert {"legal_threat", "complaint", "negative_sentiment"} <= set(angry.intents)
    assert classify("Thanks, love the new collection").intents == []


def test_angry_reply_is_routed_to_a_person_with_its_reason(engine: Engine, tmp_path: Path) -> None:
    load_customers(engine, n=8)
    pb = playbook()
    run_cycle(engine, pb, FixedClock(AT), transports(pb, tmp_path))
    handled = receive(engine, pb, "c001", "email", "Disgusting. Third time my order never arrived, I want to speak to a manager", AT + timedelta(minutes=5))
    assert handled.action == "escalated" and handled.reason == "human_request" and handled.reply is None
    (waiting,) = list_items(engine, kind="conversation")
    assert waiting.id == handled.review_item_id and waiting.inbound_message_id == handled.message_id
    assert waiting.customer_id == "c001" and waiting.reason == "human_request" and waiting.priority == 80
    assert waiting.decision_id is None and waiting.agent_id is None  # nothing was sent to c001 yet
    assert "complaint" in waiting.evidence["intents"] and waiting.evidence["matched"]["rule"] == "built-in: human_request"
    assert waiting.due_at == AT + timedelta(minutes=5, hours=24)
    with engine.connect() as c:  # the pending message to the customer is held
        held = c.execute(sa.select(outbox.c.status).where(outbox.c.customer_id == "c001")).scalar_one()
    assert held == "cancelled"
    # While it waits (a day, the default SLA of a conversation), agents leave the customer alone.
    later = run_cycle(engine, pb, FixedClock(AT + timedelta(hours=20)), transports(pb, tmp_path))
    assert later.agents["mailer"].suppressed["awaiting_review"] == 1
    resolve(engine, waiting.id, "ana", note="called back, reshipped", now=AT + timedelta(hours=2))
    assert list_items(engine, kind="conversation") == []
    with engine.connect() as c:  # the message itself records how it was handled
        message = c.execute(sa.select(inbound_messages).where(inbound_messages.c.id == handled.message_id)).one()
    assert (message.status, message.handled_by, message.note) == ("resolved", "ana", "called back, reshipped")


def test_stop_revokes_at_once_and_help_answers(engine: Engine, tmp_path: Path) -> None:
    load_customers(engine, n=8)
    pb = playbook()
    run_cycle(engine, pb, FixedClock(AT), transports(pb, tmp_path))
    stopped = receive(engine, pb, "c002", "email", "STOP", AT + timedelta(minutes=1))
    assert stopped.action == "opted_out" and "no more marketing" in stopped.reply
    with engine.connect() as c:
        assert c.execute(sa.select(consents.c.status).where(consents.c.customer_id == "c002")).scalar_one() == "revoked"
        assert c.execute(sa.select(outbox.c.status).where(outbox.c.customer_id == "c002")).scalar_one() == "cancelled"
        assert c.execute(sa.select(sa.func.count()).select_from(audit_log).where(audit_log.c.action == "inbound_opted_out")).scalar_one() == 1
    again = run_cycle(engine, pb, FixedClock(AT + timedelta(days=4)), transports(pb, tmp_path))
    assert again.agents["mailer"].suppressed["consent_revoked:email"] == 2  # c000 from the import, c002 now
    helped = receive(engine, pb, "c004", "sms", "help", AT)
    for part in ("Test Co", "Msg & data rates may apply", "help@test.example", "Reply STOP"):
        assert part in helped.reply


def test_a_stop_that_threatens_legal_action_is_opted_out_and_reaches_a_person(engine: Engine, tmp_path: Path) -> None:
    load_customers(engine, n=8)
    pb = playbook()
    run_cycle(engine, pb, FixedClock(AT), transports(pb, tmp_path))
    handled = receive(engine, pb, "c003", "email", "Stop emailing me or I will call my lawyer", AT + timedelta(minutes=1))
    assert handled.action == "opted_out" and handled.reason == "legal_threat" and "no more marketing" in handled.reply
    (waiting,) = list_items(engine, kind="conversation")
    assert (waiting.customer_id, waiting.reason, waiting.priority) == ("c003", "legal_threat", 95)
    with engine.connect() as c:
        assert c.execute(sa.select(consents.c.status).where(consents.c.customer_id == "c003")).scalar_one() == "revoked"
    # A plain STOP with a complaint, or with "don't call me", stays automatic: the opt-out is the answer.
    plain = receive(engine, pb, "c004", "email", "STOP sending this rubbish, worst emails ever", AT + timedelta(minutes=2))
    assert plain.action == "opted_out" and plain.review_item_id is None
    calls = receive(engine, pb, "c006", "email", "Stop texting me and don't call me again", AT + timedelta(minutes=3))
    assert calls.action == "opted_out" and calls.review_item_id is None
    # A keyword first, then a threat: unsubscribed and handed to a person.
    keyword = receive(engine, pb, "c007", "email", "STOP or I will call my lawyer", AT + timedelta(minutes=4))
    assert keyword.action == "opted_out" and keyword.reason == "legal_threat" and keyword.review_item_id is not None


def test_inbound_cli(engine: Engine, tmp_path: Path, database_url: str) -> None:
    load_customers(engine, n=8)
    path = tmp_path / "pb.yaml"
    path.write_text(PLAYBOOK.replace("STAGE", "2").replace("HOLDOUT", "0").replace("BUDGET", "{}"))
    runner = CliRunner()
    got = runner.invoke(app, ["inbound", "receive", str(path), "--customer", "c001", "--text", "I'll sue you", "-d", database_url, "--json"])
    assert got.exit_code == 0, got.output
    assert json.loads(got.stdout)["reason"] == "legal_threat"
    listed = json.loads(runner.invoke(app, ["inbound", "list", "-d", database_url, "--json"]).stdout)
    assert [m["reason"] for m in listed["items"]] == ["legal_threat"]
    assert listed["items"][0]["kind"] == "conversation" and listed["items"][0]["evidence"]["excerpt"] == "I'll sue you"
    unknown = runner.invoke(app, ["inbound", "receive", str(path), "--customer", "nobody", "--text", "hi", "-d", database_url])
    assert unknown.exit_code == 3 and "unknown customer 'nobody'" in unknown.output
