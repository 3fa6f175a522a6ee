"""The review queue on both databases, with a queue built by a real stage-0 cycle."""

from __future__ import annotations

import importlib.util
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from legato.clock import FixedClock
from legato.deliver.channels import Transport
from legato.deliver.outbox import schedule_message
from legato.deliver.dispatch import dispatch_due, transports
from legato.cycle import run_cycle
from legato.validation import parse_playbook
from legato.playbook.models import Playbook
from legato.store.schema import audit_log, decisions, outbox, review_items
from legato.trust.review import (
    ReviewError,
    approve,
    assign_due_dates,
    due_at_for,
    edit,
    escalate,
    expire_overdue,
    list_items,
    reject,
    show_item,
    withdraw,
)


def _engine_tests() -> Any:
    """tests/test_engine.py's playbook and customers (the suite imports test files by path)."""
    spec = importlib.util.spec_from_file_location("legato_tests_engine_helpers", Path(__file__).parents[1] / "test_engine.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


helpers = _engine_tests()
AT: datetime = helpers.AT  # 08:00 UTC; the send window opens at 09:00
load_customers = helpers.load_customers
expected_eligible = helpers.expected_eligible


def stage0_playbook_text(holdout: float = 0.0) -> str:
    return helpers.PLAYBOOK.replace("STAGE", "0").replace("HOLDOUT", str(holdout)).replace("BUDGET", "{}")


def stage0_playbook() -> Playbook:
    return parse_playbook(stage0_playbook_text())


def stage0_queue(engine: Engine, tmp_path: Path, n: int = 40) -> tuple[Playbook, FixedClock, dict[str, Transport]]:
    """Customers and one stage-0 cycle at AT: every proposed send waits in the queue."""
    load_customers(engine, n)
    pb = stage0_playbook()
    clock = FixedClock(AT)
    sinks = transports(pb, tmp_path)
    run_cycle(engine, pb, clock, sinks)
    return pb, clock, sinks


def sent_lines(tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "out/email.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def snapshot(engine: Engine) -> dict[str, Any]:
    """Everything a review action may change, to show that a refused one changed nothing."""
    with engine.connect() as c:
        return {
            "items": c.execute(sa.select(review_items).order_by(review_items.c.id)).all(),
            "decisions": c.execute(
                sa.select(decisions.c.id, decisions.c.status, decisions.c.approved_by, decisions.c.content_hash, decisions.c.content_override)
                .order_by(decisions.c.id)
            ).all(),
            "outbox": c.execute(sa.select(outbox).order_by(outbox.c.id)).all(),
            "audit": c.execute(sa.select(sa.func.count()).select_from(audit_log)).scalar_one(),
        }


def audits(engine: Engine, action: str) -> list[Any]:
    with engine.connect() as c:
        return c.execute(sa.select(audit_log).where(audit_log.c.action == action).order_by(audit_log.c.id)).all()


# --- the main path ---------------------------------------------------------------------------


def test_stage0_sends_nothing_until_approved_then_exactly_what_was_approved(engine: Engine, tmp_path: Path) -> None:
    pb, clock, sinks = stage0_queue(engine, tmp_path)
    clock.set(AT + timedelta(hours=2))
    assert sum(dispatch_due(engine, pb, clock, sinks).sent.values()) == 0
    assert sent_lines(tmp_path) == []

    items = list_items(engine)
    assert len(items) == len(expected_eligible())
    assert {i.customer_id for i in items} == expected_eligible()
    first = items[0]
    seen = show_item(engine, first.id, playbook=pb)
    assert seen.content is not None and seen.content["subject"] == "Hi gold"
    assert seen.content["body"].startswith(f"Hello {first.customer_id}. Unsubscribe: https://test.example/u?t=preview")
    assert seen.matches_playbook is True and seen.decision["status"] == "queued"

    done = approve(engine, first.id, "ana", content_hash=seen.content_hash, now=AT + timedelta(hours=2))
    assert done.status == "approved" and done.decided_by == "ana"
    with engine.connect() as c:
        decision = c.execute(sa.select(decisions).where(decisions.c.id == first.decision_id)).one()
        box = c.execute(sa.select(outbox).where(outbox.c.decision_id == first.decision_id)).one()
    assert (decision.status, decision.approved_by) == ("scheduled", "ana")
    assert box.status == "pending" and box.send_at == AT + timedelta(hours=2)  # 09:00 had passed

    # After approval the preview uses the real message's token: it is the message to the byte.
    final = show_item(engine, first.id, playbook=pb)
    report = dispatch_due(engine, pb, clock, sinks)
    assert report.sent == {"mailer": 1}
    [line] = sent_lines(tmp_path)
    assert line["customer_id"] == first.customer_id
    assert final.content is not None
    assert (line["subject"], line["body"]) == (final.content["subject"], final.content["body"])
    assert len(list_items(engine)) == len(expected_eligible()) - 1
    [row] = audits(engine, "review_approved")
    assert (row.actor, row.entity, row.entity_id) == ("ana", "review_item", str(first.id))
    assert row.before_hash == row.after_hash == seen.content_hash


def test_edited_content_is_what_goes_out_and_voids_an_earlier_approval(engine: Engine, tmp_path: Path) -> None:
    pb, clock, sinks = stage0_queue(engine, tmp_path)
    item = list_items(engine)[0]
    approve(engine, item.id, "ana", content_hash=item.content_hash, now=AT)

    edited, findings = edit(engine, item.id, "bob", playbook=pb, subject="A note for {{ customer.tier }} members", now=AT)
    assert edited.status == "open" and edited.edited and edited.content_hash != item.content_hash
    assert all(f.severity != "block" for f in findings)
    with engine.connect() as c:
        assert c.execute(sa.select(outbox.c.status).where(outbox.c.decision_id == item.decision_id)).scalar_one() == "cancelled"
        decision = c.execute(sa.select(decisions).where(decisions.c.id == item.decision_id)).one()
    assert (decision.status, decision.approved_by, decision.content_hash) == ("queued", None, edited.content_hash)
    [row] = audits(engine, "review_edited")
    assert (row.before_hash, row.after_hash) == (item.content_hash, edited.content_hash)
    assert row.detail["approval_withdrawn_from"] == "ana"

    clock.set(AT + timedelta(hours=2))
    assert sum(dispatch_due(engine, pb, clock, sinks).sent.values()) == 0  # the approval is void

    with pytest.raises(ReviewError, match="content changed since you looked; review again"):
        approve(engine, item.id, "ana", content_hash=item.content_hash, now=clock.now())
    shown = show_item(engine, item.id, playbook=pb)
    assert shown.content is not None and shown.content["subject"] == "A note for gold members"
    approve(engine, item.id, "ana", content_hash=shown.content_hash, now=clock.now())
    dispatch_due(engine, pb, clock, sinks)
    [line] = sent_lines(tmp_path)
    assert line["subject"] == "A note for gold members"
    assert line["body"].startswith(f"Hello {item.customer_id}. Unsubscribe: https://test.example/u?t=")


def test_an_edit_a_guardrail_blocks_is_refused_and_nothing_is_saved(engine: Engine, tmp_path: Path) -> None:
    pb, _, _ = stage0_queue(engine, tmp_path)
    item = list_items(engine)[0]
    before = snapshot(engine)
    with pytest.raises(ReviewError) as caught:
        edit(engine, item.id, "bob", playbook=pb, body="Only 2 left! Hello {{ customer.id }}. 1 Main St", now=AT)
    message = str(caught.value)
    assert "content guardrails block this edit" in message
    assert "compliance.false_scarcity" in message and "compliance.unsubscribe_missing" in message
    assert "nothing was saved" in message
    assert snapshot(engine) == before
    with pytest.raises(ReviewError, match="cannot be rendered"):
        edit(engine, item.id, "bob", playbook=pb, body="Hello {{ customer.nickname }}", now=AT)
    with pytest.raises(ReviewError, match="nothing to edit"):
        edit(engine, item.id, "bob", playbook=pb, now=AT)
    assert snapshot(engine) == before


def test_self_approval_of_an_edit_is_refused_when_disallowed(engine: Engine, tmp_path: Path) -> None:
    pb, _, _ = stage0_queue(engine, tmp_path)
    item = list_items(engine)[0]
    edited, _ = edit(engine, item.id, "bob", playbook=pb, subject="Hello again", now=AT)
    before = snapshot(engine)
    with pytest.raises(ReviewError, match="bob edited this content and cannot also approve it"):
        approve(engine, item.id, "bob", content_hash=edited.content_hash, now=AT, allow_self_approval=False)
    assert snapshot(engine) == before
    assert approve(engine, item.id, "ana", content_hash=edited.content_hash, now=AT, allow_self_approval=False).status == "approved"


# --- expiry ------------------------------------------------------------------------------------


def test_due_dates_follow_the_sla_per_reason() -> None:
    created = datetime(2024, 1, 1, tzinfo=timezone.utc)
    assert due_at_for("trust_stage_0", created, {}) == created + timedelta(hours=48)
    assert due_at_for("content_escalation", created, {"content_escalation": 4}) == created + timedelta(hours=4)
    assert due_at_for("trust_stage_0", created, {"content_escalation": 4}) == created + timedelta(hours=48)


def test_an_expired_item_is_never_sent(engine: Engine, tmp_path: Path) -> None:
    pb, clock, sinks = stage0_queue(engine, tmp_path)
    assert {i.due_at for i in list_items(engine)} == {AT + timedelta(hours=48)}  # the cycle's default SLA
    with engine.begin() as c:
        c.execute(sa.update(review_items).values(due_at=None))  # as if the playbook said 24 h
        assert assign_due_dates(c, {"trust_stage_0": 24}) == len(expected_eligible())
    items = list_items(engine)
    assert {i.due_at for i in items} == {AT + timedelta(hours=24)}
    late = AT + timedelta(hours=25)
    before = snapshot(engine)
    with pytest.raises(ReviewError, match="expired at 2024-03-05 08:00 UTC and will not be sent"):
        approve(engine, items[0].id, "ana", content_hash=items[0].content_hash, now=late)  # overdue even before the sweep ran
    assert snapshot(engine) == before

    assert expire_overdue(engine, AT + timedelta(hours=23)) == 0
    assert expire_overdue(engine, late) == len(items)
    assert expire_overdue(engine, late) == 0
    assert list_items(engine) == []
    assert len(list_items(engine, status="expired")) == len(items)
    with engine.connect() as c:
        assert set(c.execute(sa.select(decisions.c.status).where(decisions.c.route == "queued")).scalars()) == {"expired"}
    assert len(audits(engine, "review_expired")) == len(items)
    before = snapshot(engine)
    with pytest.raises(ReviewError, match="already expired by sla"):
        approve(engine, items[0].id, "ana", content_hash=items[0].content_hash, now=late)
    assert snapshot(engine) == before
    clock.set(late + timedelta(days=1))
    assert sum(dispatch_due(engine, pb, clock, sinks).sent.values()) == 0
    assert sent_lines(tmp_path) == []


def test_expiry_cancels_a_pending_message_of_an_open_item(engine: Engine, tmp_path: Path) -> None:
    """An item reviewed after the fact (its message already scheduled) expires with it unsent."""
    pb, clock, sinks = stage0_queue(engine, tmp_path)
    item = list_items(engine)[0]
    with engine.begin() as c:
        schedule_message(c, item.decision_id, item.customer_id, "email", AT + timedelta(days=5))
    assert expire_overdue(engine, AT + timedelta(hours=48)) == len(expected_eligible())  # default SLA: 48 h
    with engine.connect() as c:
        assert c.execute(sa.select(outbox.c.status).where(outbox.c.decision_id == item.decision_id)).scalar_one() == "cancelled"
    clock.set(AT + timedelta(days=6))
    assert sum(dispatch_due(engine, pb, clock, sinks).sent.values()) == 0


# --- refusals change nothing ---------------------------------------------------------------------


def test_approving_twice_or_an_unknown_item_is_refused_and_changes_nothing(engine: Engine, tmp_path: Path) -> None:
    stage0_queue(engine, tmp_path)
    item = list_items(engine)[0]
    approve(engine, item.id, "ana", content_hash=item.content_hash, now=AT)
    before = snapshot(engine)
    with pytest.raises(ReviewError, match=f"cannot approve review item {item.id}: it is already approved by ana"):
        approve(engine, item.id, "bob", content_hash=item.content_hash, now=AT)
    with pytest.raises(ReviewError, match="there is no review item 99999"):
        approve(engine, 99999, "bob", content_hash="0" * 64, now=AT)
    with pytest.raises(ReviewError, match="the reviewer name is empty"):
        approve(engine, list_items(engine)[0].id, "  ", content_hash=list_items(engine)[0].content_hash, now=AT)
    with pytest.raises(ReviewError, match="already approved"):
        reject(engine, item.id, "bob", "off_brand", now=AT)
    assert snapshot(engine) == before


def test_reject_keeps_the_reason_and_the_message_never_goes(engine: Engine, tmp_path: Path) -> None:
    pb, clock, sinks = stage0_queue(engine, tmp_path)
    item = list_items(engine)[0]
    before = snapshot(engine)
    with pytest.raises(ReviewError, match="'rude' is not a rejection reason"):
        reject(engine, item.id, "ana", "rude", now=AT)
    assert snapshot(engine) == before
    done = reject(engine, item.id, "ana", "off_brand", note="too pushy", now=AT)
    assert done.status == "rejected"
    with engine.connect() as c:
        assert c.execute(sa.select(decisions.c.status).where(decisions.c.id == item.decision_id)).scalar_one() == "rejected"
    [row] = audits(engine, "review_rejected")
    assert row.detail["reason"] == "off_brand" and row.detail["note"] == "too pushy" and row.detail["agent"] == "mailer"
    with pytest.raises(ReviewError, match="already rejected"):
        approve(engine, item.id, "bob", content_hash=item.content_hash, now=AT)
    clock.set(AT + timedelta(hours=3))
    assert sum(dispatch_due(engine, pb, clock, sinks).sent.values()) == 0


def test_escalation_raises_priority_and_assigns_a_role(engine: Engine, tmp_path: Path) -> None:
    stage0_queue(engine, tmp_path)
    items = list_items(engine)
    last = items[-1]
    with pytest.raises(ReviewError, match="needs a note"):
        escalate(engine, last.id, "ana", to_role="legal", note=" ", now=AT)
    done = escalate(engine, last.id, "ana", to_role="legal", note="claims?", now=AT)
    assert (done.priority, done.assigned_role, done.status) == (last.priority + 25, "legal", "open")
    assert list_items(engine)[0].id == last.id
    assert [i.id for i in list_items(engine, role="legal")] == [last.id]
    assert list_items(engine, agent="nobody") == []
    [row] = audits(engine, "review_escalated")
    assert row.detail["to_role"] == "legal" and row.detail["priority"] == [50, 75]


def test_withdraw_cancels_before_dispatch_and_is_refused_after(engine: Engine, tmp_path: Path) -> None:
    pb, clock, sinks = stage0_queue(engine, tmp_path)
    first, second = list_items(engine)[:2]
    with pytest.raises(ReviewError, match="not approved; there is nothing to withdraw"):
        withdraw(engine, first.id, "ana", AT)
    approve(engine, first.id, "ana", content_hash=first.content_hash, now=AT)
    reopened = withdraw(engine, first.id, "ana", AT)
    assert reopened.status == "open" and reopened.decided_by is None
    with engine.connect() as c:
        assert c.execute(sa.select(outbox.c.status).where(outbox.c.decision_id == first.decision_id)).scalar_one() == "cancelled"
        assert c.execute(sa.select(decisions.c.status).where(decisions.c.id == first.decision_id)).scalar_one() == "queued"
    clock.set(AT + timedelta(hours=2))
    assert sum(dispatch_due(engine, pb, clock, sinks).sent.values()) == 0

    approve(engine, first.id, "ana", content_hash=first.content_hash, now=clock.now())  # approving again reuses the decision's outbox row
    approve(engine, second.id, "ana", content_hash=second.content_hash, now=clock.now())
    assert dispatch_due(engine, pb, clock, sinks).sent == {"mailer": 2}
    before = snapshot(engine)
    with pytest.raises(ReviewError, match="already sent; an approval can only be withdrawn before it is sent"):
        withdraw(engine, first.id, "ana", clock.now())
    with pytest.raises(ReviewError, match="already sent; it can no longer be edited"):
        edit(engine, first.id, "ana", playbook=pb, subject="x", now=clock.now())
    assert snapshot(engine) == before
    assert sorted(line["customer_id"] for line in sent_lines(tmp_path)) == sorted([first.customer_id, second.customer_id])


def test_a_changed_playbook_file_changes_neither_what_is_shown_nor_what_is_approved_and_sent(engine: Engine, tmp_path: Path) -> None:
    """Review renders from the playbook version the decision was made with; a file edited
    since is flagged, never rendered in its place, and approval needs no playbook at all."""
    _, clock, sinks = stage0_queue(engine, tmp_path)
    item = list_items(engine)[0]
    changed = parse_playbook(stage0_playbook_text().replace('subject: "Hi {{ customer.tier }}"', 'subject: "Hey {{ customer.tier }}"'))
    shown = show_item(engine, item.id, playbook=changed)
    assert shown.matches_playbook is False
    assert shown.content is not None and shown.content["subject"] == "Hi gold"  # the decision's own
    plain = show_item(engine, item.id)  # no playbook needed
    assert plain.matches_playbook is True and plain.content == shown.content and plain.content_hash == item.content_hash
    edited, _ = edit(engine, item.id, "bob", playbook=changed, subject="Hello {{ customer.tier }}", now=AT)
    assert show_item(engine, item.id, playbook=changed).content["subject"] == "Hello gold"
    approve(engine, item.id, "ana", content_hash=edited.content_hash, now=AT)
    clock.set(AT + timedelta(hours=2))
    assert dispatch_due(engine, changed, clock, sinks).sent == {"mailer": 1}
    assert [line["subject"] for line in sent_lines(tmp_path)] == ["Hello gold"]


# --- speed -------------------------------------------------------------------------------------


def test_the_queue_is_read_off_its_index(tmp_path: Path) -> None:
    """SQLite's plan (EXPLAIN QUERY PLAN) reads the queue off its index without sorting."""
    from legato.store.db import connect
    from legato.trust import review

    engine = connect(f"sqlite:///{tmp_path / 'plan.db'}")

    query = review.queue_query(status="open", limit=100)
    sql = str(query.compile(engine, compile_kwargs={"literal_binds": True}))
    with engine.connect() as c:
        plan = " | ".join(str(row[-1]) for row in c.exec_driver_sql("EXPLAIN QUERY PLAN " + sql))
    assert "USING INDEX ix_review_items_queue" in plan
    assert "TEMP B-TREE" not in plan, plan


def test_after_the_fact_audit_samples_can_be_approved_or_rejected(engine: Engine, tmp_path: Path) -> None:
    """Stage 2 shows a sample of what it scheduled: review items with status "audit" and a pending message.

    The engine writes these; here two stage-0 items are turned into such samples by hand.
    """
    pb, clock, sinks = stage0_queue(engine, tmp_path)
    first, second = list_items(engine)[:2]
    with engine.begin() as c:
        for item in (first, second):
            schedule_message(c, item.decision_id, item.customer_id, "email", AT + timedelta(hours=1))
            c.execute(sa.update(decisions).where(decisions.c.id == item.decision_id).values(status="scheduled", route="scheduled"))
            c.execute(sa.update(review_items).where(review_items.c.id == item.id).values(status="audit"))
    assert [i.id for i in list_items(engine, status="audit")] == [first.id, second.id]
    with pytest.raises(ReviewError, match="after-the-fact audit sample"):
        edit(engine, first.id, "bob", playbook=pb, subject="x", now=AT)
    assert approve(engine, first.id, "ana", content_hash=first.content_hash, now=AT).status == "approved"
    rejected = reject(engine, second.id, "ana", "wrong_audience", now=AT)
    assert rejected.status == "rejected"
    with engine.connect() as c:
        boxes = dict(c.execute(sa.select(outbox.c.decision_id, outbox.c.status)).all())
        statuses = dict(c.execute(sa.select(decisions.c.id, decisions.c.status).where(decisions.c.id.in_([first.decision_id, second.decision_id]))).all())
    assert boxes == {first.decision_id: "pending", second.decision_id: "cancelled"}  # approving adds no second message
    assert statuses == {first.decision_id: "scheduled", second.decision_id: "rejected"}
    assert audits(engine, "review_rejected")[0].detail["stopped_message"] is True
    clock.set(AT + timedelta(hours=2))
    assert dispatch_due(engine, pb, clock, sinks).sent == {"mailer": 1}


# --- conversations and findings share the queue ----------------------------------------------


def conversation(engine: Engine, tmp_path: Path, *, caps: bool = True) -> tuple[Playbook, Any]:
    """A stage-2 mailer sends to everyone eligible; then c001 answers angrily."""
    from legato.trust.inbound import receive

    load_customers(engine, 40)
    text = helpers.PLAYBOOK.replace("STAGE", "2").replace("HOLDOUT", "0").replace("BUDGET", "{}")
    if not caps:
        text = text.replace("  frequency_caps:\n    - {channel: email, max: 1, days: 3, on_block: drop}\n", "  frequency_caps: []\n")
    pb = parse_playbook(text)
    clock, sinks = FixedClock(AT), transports(pb, tmp_path)
    run_cycle(engine, pb, clock, sinks)
    clock.set(AT + timedelta(hours=2))
    dispatch_due(engine, pb, clock, sinks)
    handled = receive(engine, pb, "c001", "email", "This is unacceptable, I want a refund!", AT + timedelta(hours=3))
    assert handled.action == "escalated" and handled.reason == "complaint"
    return pb, handled


def with_messages(engine: Engine) -> dict[str, Any]:
    from legato.store.schema import inbound_messages

    with engine.connect() as c:
        return snapshot(engine) | {"messages": c.execute(sa.select(inbound_messages).order_by(inbound_messages.c.id)).all()}


def test_a_conversation_waits_in_the_same_queue_and_is_resolved_not_approved(engine: Engine, tmp_path: Path) -> None:
    from legato.store.schema import inbound_messages
    from legato.trust.review import resolve

    pb, handled = conversation(engine, tmp_path)
    (item,) = list_items(engine)  # the stage-2 sends were not queued: the reply is the whole queue
    assert (item.kind, item.decision_id, item.inbound_message_id) == ("conversation", None, handled.message_id)
    assert (item.agent_id, item.customer_id, item.channel) == ("mailer", "c001", "email")  # the agent whose message c001 got
    assert item.evidence["excerpt"] == "This is unacceptable, I want a refund!" and "complaint" in item.evidence["intents"]
    detail = show_item(engine, item.id, playbook=pb)
    assert detail.decision is None and detail.message["text"] == "This is unacceptable, I want a refund!"
    assert detail.to_dict()["message"]["received_at"] == (AT + timedelta(hours=3)).isoformat()

    before = with_messages(engine)
    for act, verb in (
        (lambda: approve(engine, item.id, "ana", content_hash=item.content_hash, now=AT), "approve"),
        (lambda: reject(engine, item.id, "ana", "other", now=AT), "reject"),
        (lambda: edit(engine, item.id, "ana", playbook=pb, body="x", now=AT), "edit"),
        (lambda: withdraw(engine, item.id, "ana", AT), "withdraw"),
    ):
        with pytest.raises(ReviewError, match=f"cannot {verb} review item {item.id}: it is a customer's reply, not a proposed message"):
            act()
    with pytest.raises(ReviewError, match="resolving needs a note"):
        resolve(engine, item.id, "ana", note="  ", now=AT + timedelta(hours=4))
    with pytest.raises(ReviewError, match="there is no review item 99999"):
        resolve(engine, 99999, "ana", note="x", now=AT + timedelta(hours=4))
    assert with_messages(engine) == before

    escalated = escalate(engine, item.id, "ana", to_role="customer_care", note="wants money back", now=AT + timedelta(hours=4))
    assert (escalated.assigned_role, escalated.priority) == ("customer_care", 100)
    done = resolve(engine, item.id, "bo", note="refunded, apologised", now=AT + timedelta(hours=5))
    assert (done.status, done.decided_by) == ("resolved", "bo")
    with engine.connect() as c:
        message = c.execute(sa.select(inbound_messages).where(inbound_messages.c.id == handled.message_id)).one()
    assert (message.status, message.handled_by, message.note) == ("resolved", "bo", "refunded, apologised")
    [row] = audits(engine, "review_resolved")
    assert row.detail == {"kind": "conversation", "about_agent": "mailer", "inbound_message": handled.message_id, "note": "refunded, apologised"}
    before = with_messages(engine)
    with pytest.raises(ReviewError, match=f"cannot resolve review item {item.id}: it is already resolved by bo"):
        resolve(engine, item.id, "ana", note="again", now=AT + timedelta(hours=6))
    assert with_messages(engine) == before
    # A reply does not count in the agent's track record, and a proposed message is not resolved.
    from legato.trust.track_record import track_record

    assert track_record(engine, "mailer", now=AT + timedelta(days=1)).escalations == 0


def test_a_decision_is_approved_or_rejected_not_resolved(engine: Engine, tmp_path: Path) -> None:
    from legato.trust.review import resolve

    stage0_queue(engine, tmp_path)
    item = list_items(engine)[0]
    before = snapshot(engine)
    with pytest.raises(ReviewError, match=f"review item {item.id} is a proposed message: approve or reject it"):
        resolve(engine, item.id, "ana", note="done", now=AT)
    assert snapshot(engine) == before


def test_an_unanswered_conversation_expires_on_its_sla_and_that_is_recorded(engine: Engine, tmp_path: Path) -> None:
    from legato.store.schema import inbound_messages
    from legato.trust.review import resolve

    pb, handled = conversation(engine, tmp_path)
    (item,) = list_items(engine)
    assert item.due_at == AT + timedelta(hours=3 + 24)
    late = AT + timedelta(hours=28)
    before = with_messages(engine)
    with pytest.raises(ReviewError, match="it expired unhandled at 2024-03-05 11:00 UTC"):
        resolve(engine, item.id, "ana", note="too late", now=late)
    assert with_messages(engine) == before
    assert expire_overdue(engine, late) == 1
    assert list_items(engine, status="expired")[0].id == item.id
    with engine.connect() as c:
        assert c.execute(sa.select(inbound_messages.c.status).where(inbound_messages.c.id == handled.message_id)).scalar_one() == "expired"
    [row] = audits(engine, "review_expired")
    assert row.detail["kind"] == "conversation" and row.detail["inbound_message"] == handled.message_id
    with pytest.raises(ReviewError, match="already expired by sla"):
        resolve(engine, item.id, "ana", note="too late", now=late)


def test_agents_leave_a_customer_alone_only_while_the_conversation_is_open(engine: Engine, tmp_path: Path) -> None:
    from legato.trust.review import resolve

    pb, handled = conversation(engine, tmp_path, caps=False)
    sinks = transports(pb, tmp_path)
    waiting = run_cycle(engine, pb, FixedClock(AT + timedelta(hours=4)), sinks)
    assert waiting.agents["mailer"].suppressed["awaiting_review"] == 1  # c001 alone
    resolve(engine, handled.review_item_id, "ana", note="called back", now=AT + timedelta(hours=5))
    freed = run_cycle(engine, pb, FixedClock(AT + timedelta(hours=6)), sinks)
    assert "awaiting_review" not in freed.agents["mailer"].suppressed


def test_the_queue_of_one_kind_is_read_off_its_index_too(tmp_path: Path) -> None:
    from legato.store.db import connect
    from legato.trust import review

    engine = connect(f"sqlite:///{tmp_path / 'plan.db'}")
    for query in (review.queue_query(kind="conversation"), review.queue_query(kind="finding", role="legal")):
        sql = str(query.compile(engine, compile_kwargs={"literal_binds": True}))
        with engine.connect() as c:
            plan = " | ".join(str(row[-1]) for row in c.exec_driver_sql("EXPLAIN QUERY PLAN " + sql))
        assert "USING INDEX ix_review_items_queue" in plan and "TEMP B-TREE" not in plan, plan
        assert "LEFT-JOIN" in plan  # decisions and messages are looked up per item, not driving the scan
    with pytest.raises(ReviewError, match="unknown kind of review item 'reply'"):
        list_items(engine, kind="reply")


def test_a_qualified_reason_takes_its_familys_sla() -> None:
    created = datetime(2024, 1, 1, tzinfo=timezone.utc)
    assert due_at_for("value:honesty", created, {"value": 6}) == created + timedelta(hours=6)
    assert due_at_for("value:honesty", created, {"value": 6, "value:honesty": 2}) == created + timedelta(hours=2)
    assert due_at_for("value:honesty", created, {}) == created + timedelta(hours=48)
