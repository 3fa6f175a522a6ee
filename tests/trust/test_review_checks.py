"""The review queue checks a message with the one check: purpose, channel and brand come from
the creative, and approval is bound to the content hash and to what the dispatcher will ask."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pytest
from sqlalchemy import Engine

from legato.clock import FixedClock
from legato.deliver.dispatch import transports
from legato.cycle import run_cycle
from legato.validation import parse_playbook
from legato.playbook.models import Playbook
from legato.store.ingest import import_customers
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


def test_a_transactional_receipt_is_not_judged_as_marketing(engine: Engine, tmp_path: Path) -> None:
    pb = make_playbook()
    item = queue_one(engine, tmp_path, pb)
    detail = show_item(engine, item, playbook=pb)
    rules = {f["rule"] for f in detail.findings}
    assert "compliance.unsubscribe_missing" not in rules and "compliance.postal_address_missing" not in rules
    assert all(f["severity"] != "block" for f in detail.findings)
    _, findings = edit(engine, item, "ana", playbook=pb, body="Thank you for your order. It ships on Monday.", now=AT + timedelta(minutes=1))
    assert all(f.severity != "block" for f in findings)


def test_the_queue_says_whether_the_customer_could_be_sent_it_now(engine: Engine, tmp_path: Path) -> None:
    pb = make_playbook()
    item = queue_one(engine, tmp_path, pb)
    assert show_item(engine, item, playbook=pb, now=AT).standing is None  # a receipt needs no marketing consent
    as_marketing = make_playbook("marketing")
    assert show_item(engine, item, playbook=as_marketing, now=AT).standing == "no_consent:email"


def test_the_same_text_as_marketing_is_blocked_in_review(engine: Engine, tmp_path: Path) -> None:
    pb = make_playbook("marketing")
    # The cycle itself refuses a marketing e-mail with no opt-out, so the item comes from a receipt...
    item = queue_one(engine, tmp_path, make_playbook(), consent="express")
    # ...and a reviewer who edits it under a playbook where it is marketing cannot save it.
    with pytest.raises(ReviewError, match="unsubscribe_missing"):
        edit(engine, item, "ana", playbook=pb, body="Thank you for your order. It ships on Monday.", now=AT + timedelta(minutes=1))


def test_approval_asks_what_the_dispatcher_will_ask(engine: Engine, tmp_path: Path) -> None:
    pb = make_playbook()
    item = queue_one(engine, tmp_path, pb)
    changed = parse_playbook(PLAYBOOK.replace("PURPOSE", "transactional").replace("It ships tomorrow.", "It ships today."))
    with pytest.raises(ReviewError, match="not the one this decision was made with"):
        approve(engine, item, "ana", now=AT + timedelta(minutes=2), playbook=changed)
    done = approve(engine, item, "ana", now=AT + timedelta(minutes=2), playbook=pb)
    assert done.status == "approved"
