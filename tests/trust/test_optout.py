"""Opt-outs by any reasonable means: what a reply revokes, what it says back, what waits for a person."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pytest
import sqlalchemy as sa
from sqlalchemy import Engine
from typer.testing import CliRunner

from legato.cli.app import app
from legato.clock import FixedClock
from legato.validation import parse_playbook
from legato.store.ingest import import_customers
from legato.store.schema import audit_log, consents, inbound_messages, review_items
from legato.trust.inbound import confirm_opt_out, receive
from legato.trust.optout import Verdict, detect, fold
from legato.trust.review import expire_overdue, list_items, resolve

from tests.world import AT

DEV_SET = Path(__file__).with_name("optout_dev.jsonl")
EXPECTED = {"opt_out": Verdict.revoke, "unclear": Verdict.unclear, "not": Verdict.none}

# Two channels, so that revoking one leaves the other allowed.
PLAYBOOK = """
brand:
  name: Test Co
  legal: {sender_name: Test Co, postal_address: "1 Main St", support_contact: "help@test.example", unsubscribe_url: "https://test.example/u"}
objectives:
  - {id: grow, goal: engagement, why: testing, stages: [any], kpis: [{metric: visit_rate, target: 0.1}]}
lifecycle:
  - {stage: any, when: "true"}
channels:
  email: {kind: file, path: out/email.jsonl}
  sms: {kind: file, path: out/sms.jsonl}
creatives:
  - {id: hello, channel: email, subject: "Hi", body: "Hello. Unsubscribe: {{ unsubscribe_url }} {{ brand.postal_address }}"}
agents:
  - id: mailer
    objective: grow
    audience: "true"
    actions: {creatives: [hello], send_windows: ["09:00-17:00"], do_nothing: false}
    policy: {name: uniform_random}
    trust_stage: 2
guardrails:
  consent:
    - {channel: email, purpose: marketing}
    - {channel: sms, purpose: marketing}
"""


def _customers(engine: Engine, n: int = 4) -> None:
    ids = [f"c{i}" for i in range(n)]
    table = pa.table(
        {
            "id": ids, "email": [f"{c}@test.example" for c in ids], "phone": [f"+1415555010{i}" for i in range(n)],
            "time_zone": ["UTC"] * n, "consent_email_marketing": ["express"] * n, "consent_sms_marketing": ["express"] * n,
        }
    )
    import_customers(engine, table, clock=FixedClock(AT))


def _consent(engine: Engine, customer: str) -> dict[str, str]:
    with engine.connect() as c:
        rows = c.execute(sa.select(consents.c.channel, consents.c.status).where(consents.c.customer_id == customer, consents.c.purpose == "marketing"))
        return dict(rows.all())


@pytest.mark.parametrize("line", DEV_SET.read_text(encoding="utf-8").splitlines(), ids=lambda line: json.loads(line)["text"][:40])
def test_development_set(line: str) -> None:
    """Every example the patterns were written against reads as labeled, scope included."""
    item = json.loads(line)
    got = detect(item["text"])
    assert got.verdict is EXPECTED[item["label"]], (item, got, fold(item["text"]))
    if "channels" in item:
        assert set(got.channels) == set(item["channels"])
    if item.get("every"):
        assert got.every_channel


@pytest.mark.parametrize("text", ["Please stop", "arrêtez", "ARRET", "S T O P", "ＳＴＯＰ", "Remove me from your list", "ЅТОР", "S\u200bT\u00adOP"])
def test_the_disguised_opt_outs_of_the_issue_revoke(text: str) -> None:
    assert detect(text).verdict is Verdict.revoke


def test_fold_sees_through_the_form() -> None:
    assert fold("ＳＴＯＰ") == fold("S T O P") == fold("s.t.o.p") == fold("5T0P") == fold("stooop") == "stop"
    assert fold("Désabonnez-moi !") == "desabonnez moi"
    assert fold("order 12345 arrived") == "order 12345 arrived"  # digits alone stay digits


def test_a_reply_revokes_its_channel_and_the_confirmation_says_what_is_still_allowed(engine: Engine) -> None:
    _customers(engine)
    pb = parse_playbook(PLAYBOOK)
    handled = receive(engine, pb, "c0", "sms", "STOP", AT)
    assert handled.action == "opted_out"
    assert _consent(engine, "c0") == {"email": "granted", "sms": "revoked"}
    assert "no more marketing by text message (SMS)" in handled.reply and "still get marketing by e-mail" in handled.reply
    assert "no more marketing messages" not in handled.reply  # e-mail is still allowed: never say otherwise


def test_a_reply_revokes_every_channel_it_names(engine: Engine) -> None:
    _customers(engine)
    pb = parse_playbook(PLAYBOOK)
    handled = receive(engine, pb, "c1", "sms", "no more emails please", AT)  # by text, about e-mail
    assert handled.action == "opted_out"
    assert _consent(engine, "c1") == {"email": "revoked", "sms": "revoked"}
    assert handled.reply == "Test Co: you are unsubscribed and will get no more marketing messages. Reply HELP for help."
    french = receive(engine, pb, "c2", "email", "STOPALL", AT)
    assert _consent(engine, "c2") == {"email": "revoked", "sms": "revoked", "push": "revoked", "whatsapp": "revoked", "webhook": "revoked"}
    assert "no more marketing messages" in french.reply
    spanish = receive(engine, pb, "c3", "sms", "Dejen de enviarme mensajes", AT)
    assert _consent(engine, "c3") == {"email": "granted", "sms": "revoked"}
    assert spanish.reply.startswith("Test Co: no recibirá más marketing por SMS") and "correo electrónico" in spanish.reply


def test_an_unclear_reply_waits_for_a_person_and_pauses_marketing_until_decided(engine: Engine, tmp_path: Path, database_url: str) -> None:
    _customers(engine)
    pb = parse_playbook(PLAYBOOK)
    handled = receive(engine, pb, "c0", "email", "way too many emails lately", AT)
    assert handled.action == "escalated" and handled.reason == "possible_opt_out" and handled.reply is None
    assert _consent(engine, "c0") == {"email": "granted", "sms": "granted"}  # nothing decided yet
    # The clock does not decide it: a day, a month later it still waits (and the customer is left alone).
    assert expire_overdue(engine, AT + timedelta(days=30)) == 0
    # An open conversation is what holds the customer's pending messages and keeps the agents away
    # (the same pause as any escalated reply: tests/trust/test_inbound.py shows it on a cycle).
    (waiting,) = list_items(engine, kind="conversation")
    assert waiting.reason == "possible_opt_out" and waiting.priority == 85 and waiting.status == "open"
    # A person decides it is an opt-out, from the command line.
    path = tmp_path / "pb.yaml"
    path.write_text(PLAYBOOK)
    got = CliRunner().invoke(app, ["inbound", "opt-out", str(waiting.id), "--playbook", str(path), "--reviewer", "ana", "-d", database_url, "--json"])
    assert got.exit_code == 0, got.output
    assert json.loads(got.stdout)["revoked"] == ["email"]
    assert _consent(engine, "c0") == {"email": "revoked", "sms": "granted"}
    assert list_items(engine, kind="conversation") == []
    # Another, decided not to be one: consent stays and the pause ends with the item.
    other = receive(engine, pb, "c1", "sms", "not interested in boots", AT)
    assert other.reason == "possible_opt_out"
    resolve(engine, other.review_item_id, "ana", note="asked about sandals instead", now=AT)
    assert _consent(engine, "c1") == {"email": "granted", "sms": "granted"}
    with pytest.raises(Exception, match="not a customer's reply"):
        confirm_opt_out(engine, pb, 9999, "ana", AT)


def test_personal_data_in_a_reply_is_masked_before_it_is_stored(engine: Engine) -> None:
    _customers(engine)
    pb = parse_playbook(PLAYBOOK)
    text = "I want a refund to card 4111 1111 1111 1111 cvv 123, call +1 (415) 555-0100"
    handled = receive(engine, pb, "c0", "email", text, AT)
    assert handled.action == "escalated"
    with engine.connect() as c:
        stored = c.execute(sa.select(inbound_messages.c.text).where(inbound_messages.c.id == handled.message_id)).scalar_one()
        evidence = c.execute(sa.select(review_items.c.evidence).where(review_items.c.id == handled.review_item_id)).scalar_one()
        audit = c.execute(sa.select(audit_log.c.detail).where(audit_log.c.entity_id == str(handled.message_id))).scalar_one()
    assert stored == "I want a refund to card [card ••••1111] cvv [code], call [phone ••••00]"
    everything = json.dumps([stored, evidence, audit])
    for secret in ("4111 1111 1111 1111", "cvv 123", "555-0100"):
        assert secret not in everything


def test_a_reply_stored_before_masking_is_masked_when_listed(engine: Engine, database_url: str) -> None:
    _customers(engine)
    pb = parse_playbook(PLAYBOOK)
    handled = receive(engine, pb, "c0", "email", "I want a refund", AT)
    with engine.begin() as c:  # as an older version stored it: the text as written
        evidence = c.execute(sa.select(review_items.c.evidence).where(review_items.c.id == handled.review_item_id)).scalar_one()
        c.execute(sa.update(review_items).where(review_items.c.id == handled.review_item_id).values(evidence={**evidence, "excerpt": "refund to 4111 1111 1111 1111"}))
    listed = CliRunner().invoke(app, ["inbound", "list", "-d", database_url, "--json"])
    assert listed.exit_code == 0, listed.output
    assert json.loads(listed.stdout)["items"][0]["evidence"]["excerpt"] == "refund to [card ••••1111]"
