"""The review queue checks a message with the one check: purpose, channel and brand come from
the creative, and approval is bound to the content hash and to what the dispatcher will ask."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from legato.clock import FixedClock
from legato.deliver.dispatch import transports
from legato.cycle import run_cycle
from legato.validation import parse_playbook
from legato.playbook.models import Playbook
from legato.store.ingest import import_customers
from legato.store.schema import decisions
from legato.trust.review import ReviewError, approve, edit, list_items, show_item

AT = datetime(2024, 3, 4, 8, 0, tzinfo=timezone.utc)

PLAYBOOK = """
brand:
  name: Receipt Co
  legal: {sender_name: Receipt Co, postal_address: "4 Quay Lane", support_contact: "help@receipt.example", unsubscribe_url: "https://receipt.example/u"}
objectives:
  - {id: serve, goal: retention, why: testing, stages: [any], kpis: [{metric: visit_rate, target: 0.1}]}
lifecycle:
  - {stage: any, when: "true"}
channels:
  email: {kind: file, path: out/email.jsonl}
creatives:
  - {id: receipt, channel: email, purpose: PURPOSE, subject: "Your order", body: "Thank you for your order. It ships tomorrow."}
agents:
  - id: clerk
    objective: serve
    audience: "true"
    actions: {creatives: [receipt], send_windows: ["09:00-17:00"], do_nothing: false}
    policy: {name: uniform_random}
    holdout: 0
    trust_stage: 0
guardrails:
  consent:
    - {channel: email, purpose: marketing}
"""


def make_playbook(purpose: str = "transactional") -> Playbook:
    return parse_playbook(PLAYBOOK.replace("PURPOSE", purpose))


def queue_one(engine: Engine, tmp_path: Path, pb: Playbook, consent: str = "") -> int:
    import_customers(
        engine,
        pa.table({"id": ["c1"], "email": ["c1@people.example"], "time_zone": ["UTC"], "consent_email_marketing": [consent]}),
        clock=FixedClock(AT),
    )
    run_cycle(engine, pb, FixedClock(AT), transports(pb, tmp_path))
    [item] = list_items(engine)
    return item.id


def seen_hash(engine: Engine, item_id: int) -> str:
    """The content hash a reviewer is shown for the item (what an approval must name)."""
    return show_item(engine, item_id, now=AT).content_hash


def test_a_transactional_receipt_is_not_judged_as_marketing(engine: Engine, tmp_path: Path) -> None:
    pb = make_playbook()
    item = queue_one(engine, tmp_path, pb)
    detail = show_item(engine, item, playbook=pb)
    rules = {f["rule"] for f in detail.findings}
    assert "compliance.unsubscribe_missing" not in rules and "compliance.postal_address_missing" not in rules
    assert all(f["severity"] != "block" for f in detail.findings)
    _, findings = edit(engine, item, "ana", playbook=pb, body="Thank you for your order. It ships on Monday.", now=AT + timedelta(minutes=1))
    assert all(f.severity != "block" for f in findings)


MARKETING_BODY = "Thank you for your order. Unsubscribe: {{ unsubscribe_url }} {{ brand.postal_address }}"


def marketing_playbook() -> Playbook:
    return parse_playbook(PLAYBOOK.replace("PURPOSE", "marketing").replace("Thank you for your order. It ships tomorrow.", MARKETING_BODY))


def test_the_queue_says_whether_the_customer_could_be_sent_it_now(engine: Engine, tmp_path: Path) -> None:
    pb = make_playbook()
    item = queue_one(engine, tmp_path, pb)
    assert show_item(engine, item, now=AT).standing is None  # a receipt needs no marketing consent
    # A playbook file that now calls the creative marketing changes neither what was decided nor its purpose.
    assert show_item(engine, item, playbook=make_playbook("marketing"), now=AT).standing is None


def test_a_marketing_message_stands_by_the_consent_of_now(engine: Engine, tmp_path: Path) -> None:
    pb = marketing_playbook()
    item = queue_one(engine, tmp_path, pb, consent="express")
    assert show_item(engine, item, now=AT).standing is None
    import_customers(
        engine,
        pa.table({"id": ["c1"], "email": ["c1@people.example"], "time_zone": ["UTC"], "consent_email_marketing": ["revoked"]}),
        clock=FixedClock(AT),
    )
    assert show_item(engine, item, now=AT).standing == "consent_revoked:email"
    with pytest.raises(ReviewError, match="cannot be sent now"):
        approve(engine, item, "ana", content_hash=seen_hash(engine, item), now=AT + timedelta(minutes=2))


def test_an_edit_that_drops_the_opt_out_of_a_marketing_message_is_blocked(engine: Engine, tmp_path: Path) -> None:
    item = queue_one(engine, tmp_path, marketing_playbook(), consent="express")
    with pytest.raises(ReviewError, match="unsubscribe_missing"):
        edit(engine, item, "ana", body="Thank you for your order. It ships on Monday.", now=AT + timedelta(minutes=1))


def test_approval_checks_the_decisions_own_message_whatever_file_is_given(engine: Engine, tmp_path: Path) -> None:
    """The one check runs on the decision's version: a changed file neither blocks nor changes
    the approval; a decision without a stored version is checked against the file given."""
    pb = make_playbook()
    first = queue_one(engine, tmp_path, pb)
    changed = parse_playbook(PLAYBOOK.replace("PURPOSE", "transactional").replace("It ships tomorrow.", "It ships today."))
    assert approve(engine, first, "ana", content_hash=seen_hash(engine, first), now=AT + timedelta(minutes=2), playbook=changed).status == "approved"
    run_cycle(engine, pb, FixedClock(AT + timedelta(days=1)), transports(pb, tmp_path))
    [second] = [i.id for i in list_items(engine)]
    with engine.begin() as c:  # as migration 0010 leaves a decision made before it
        c.execute(sa.update(decisions).values(playbook_version_id=None).where(decisions.c.id == next(i.decision_id for i in list_items(engine))))
    with pytest.raises(ReviewError, match="not the one this decision was made with"):
        approve(engine, second, "ana", content_hash=seen_hash(engine, second), now=AT + timedelta(days=1, minutes=2), playbook=changed)
    assert approve(engine, second, "ana", content_hash=seen_hash(engine, second), now=AT + timedelta(days=1, minutes=2), playbook=pb).status == "approved"
