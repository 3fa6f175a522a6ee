"""The audit log read back on SQLite and PostgreSQL: newest first a page at a time by id (no gap
or repeat while rows are appended), filtered by action, entity, actor and agent (an agent's own
rows, those naming it in their detail, those it wrote), every action and entity kind listed,
and a customer's words in a row's evidence masked."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import Engine

from legato.errors import Invalid
from legato.service import audit
from legato.store.audit import AuditFilter, record
from tests.world import AT


def _write(engine: Engine) -> None:
    with engine.begin() as c:
        record(c, AT, "ana", "agent_paused", "agent", "winback", {"from": "active", "to": "paused", "reason": "check"})
        record(c, AT, "agent:winback", "decided", "cycle", "7", {"decisions": 3})
        record(c, AT, "rev", "review_approved", "review_item", "11", {"agent": "winback", "decision": 5})
        record(c, AT, "rev", "review_approved", "review_item", "12", {"agent": "welcome", "decision": 6})
        record(c, AT, "customer:c9", "inbound_escalated", "inbound_message", "3",
               {"about_agent": "winback", "evidence": {"excerpt": "write to jo.smith@example.com", "rule": "x"}})
        record(c, AT, "bo", "playbook_uploaded", "playbook_version", "2", {"hash": "ab"})


def test_pages_newest_first_without_gap_or_repeat_while_rows_are_appended(engine: Engine) -> None:
    _write(engine)
    first = audit.search(engine, AuditFilter(), limit=4)
    assert [r.action for r in first.items] == ["playbook_uploaded", "inbound_escalated", "review_approved", "review_approved"]
    with engine.begin() as c:  # written while someone reads the pages: it joins the top, not the next page
        record(c, AT + timedelta(minutes=1), "ana", "agent_resumed", "agent", "winback", {"reason": "ok"})
    rest = audit.search(engine, AuditFilter(), limit=4, before=first.next_before)
    assert rest.next_before is None
    seen = [r.id for r in first.items + rest.items]
    assert len(seen) == len(set(seen)) == 6 and seen == sorted(seen, reverse=True)
    assert audit.search(engine, AuditFilter(), limit=7).items[0].action == "agent_resumed"


def test_filters_by_action_entity_actor_and_agent(engine: Engine) -> None:
    _write(engine)

    def found(**where: str) -> list[tuple[str, str]]:
        return [(r.action, r.entity_id) for r in audit.search(engine, AuditFilter(**where)).items]

    assert found(action="review_approved") == [("review_approved", "12"), ("review_approved", "11")]
    assert found(entity="agent") == [("agent_paused", "winback")]
    assert found(actor="bo") == [("playbook_uploaded", "2")]
    assert found(agent="winback") == [("inbound_escalated", "3"), ("review_approved", "11"), ("decided", "7"), ("agent_paused", "winback")]
    assert found(agent="welcome") == [("review_approved", "12")]
    assert found(agent="welcome", action="decided") == []
    kinds = audit.kinds(engine)
    assert kinds.actions == ["agent_paused", "decided", "inbound_escalated", "playbook_uploaded", "review_approved"]
    assert kinds.entities == ["agent", "cycle", "inbound_message", "playbook_version", "review_item"]


def test_a_customers_words_in_the_evidence_are_masked(engine: Engine) -> None:
    _write(engine)
    (row,) = audit.search(engine, AuditFilter(action="inbound_escalated")).items
    assert "jo.smith" not in row.detail["evidence"]["excerpt"] and "example.com" in row.detail["evidence"]["excerpt"]
    assert row.detail["evidence"]["rule"] == "x" and row.detail["about_agent"] == "winback"


def test_an_empty_log_and_bad_pages(engine: Engine) -> None:
    assert audit.search(engine, AuditFilter()).items == [] and audit.kinds(engine).actions == []
    with pytest.raises(Invalid, match="out of range"):
        audit.search(engine, AuditFilter(), limit=0)
    with pytest.raises(Invalid, match="cursor"):
        audit.search(engine, AuditFilter(), before=2**31)
