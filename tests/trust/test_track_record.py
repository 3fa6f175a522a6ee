"""Track records, promotion criteria and stage changes, on both databases."""

from __future__ import annotations

import importlib.util
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from legato.monitor.lift import Lift
from legato.store.schema import agents, audit_log
from legato.trust.review import approve, edit, escalate, list_items, reject
from legato.trust.track_record import (
    PromotionCriteria,
    TrustError,
    TrustInvalid,
    demote,
    list_agents,
    pause,
    promote,
    promotion_check,
    resume,
    track_record,
)


def _review_tests() -> Any:
    spec = importlib.util.spec_from_file_location("legato_tests_review_helpers", Path(__file__).with_name("test_review.py"))
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


review = _review_tests()
AT = review.AT
LATER = AT + timedelta(hours=1)
EASY = PromotionCriteria(min_reviewed=5, min_unedited_approval_rate=0.5, require_lift=False)


def stage(engine: Engine) -> tuple[int, str]:
    with engine.connect() as c:
        row = c.execute(sa.select(agents.c.trust_stage, agents.c.status).where(agents.c.id == "mailer")).one()
    return row.trust_stage, row.status


def agent_audits(engine: Engine) -> list[Any]:
    with engine.connect() as c:
        return c.execute(sa.select(audit_log).where(audit_log.c.entity == "agent", audit_log.c.entity_id == "mailer").order_by(audit_log.c.id)).all()


def reviewed_queue(engine: Engine, tmp_path: Path) -> None:
    """6 approved unedited, 1 edited then approved, 2 rejected, 1 escalated, the rest open."""
    pb, _, _ = review.stage0_queue(engine, tmp_path)
    items = list_items(engine)
    for item in items[:6]:
        approve(engine, item.id, "ana", content_hash=item.content_hash, now=AT)
    edited, _ = edit(engine, items[6].id, "bob", playbook=pb, subject="Hello there", now=AT)
    approve(engine, edited.id, "ana", content_hash=edited.content_hash, now=AT)
    reject(engine, items[7].id, "ana", "off_brand", now=AT)
    reject(engine, items[8].id, "ana", "timing", note="Sunday", now=AT)
    escalate(engine, items[9].id, "ana", to_role="legal", note="check", now=AT)


def test_track_record_counts_what_reviewers_did(engine: Engine, tmp_path: Path) -> None:
    reviewed_queue(engine, tmp_path)
    record = track_record(engine, "mailer", now=LATER, window_days=30)
    assert (record.reviewed, record.approved, record.approved_unedited, record.edited, record.rejected) == (9, 7, 6, 1, 2)
    assert record.approval_rate == pytest.approx(7 / 9)
    assert record.unedited_approval_rate == pytest.approx(6 / 9)
    assert record.edit_rate == pytest.approx(1 / 9)
    assert record.rejection_reasons == {"off_brand": 1, "timing": 1}
    assert record.escalations == 1
    assert record.open == len(review.expected_eligible()) - 9
    # The cycle's contact guardrails: c000..c030 revoked, c005/c025 without consent (bronze excluded).
    assert record.findings_by_rule == {"consent_revoked:email": 4, "no_consent:email": 2}
    assert record.guardrail_findings == 6
    assert record.decisions == 30
    empty = track_record(engine, "mailer", now=AT - timedelta(days=1), window_days=30)
    assert (empty.reviewed, empty.approval_rate, empty.escalations) == (0, None, 0)


def test_promotion_is_refused_while_criteria_are_unmet(engine: Engine, tmp_path: Path) -> None:
    reviewed_queue(engine, tmp_path)
    record = track_record(engine, "mailer", now=LATER)
    ok, unmet = promotion_check(record, PromotionCriteria())
    assert not ok
    assert "9 reviewed items, needs at least 200" in unmet
    assert "66.7% approved unedited, needs at least 95%" in unmet
    assert any("no lift measurement" in u for u in unmet)
    before = agent_audits(engine)
    with pytest.raises(TrustError, match="does not qualify for stage 1: 9 reviewed items, needs at least 200"):
        promote(engine, "mailer", 1, "ana", now=LATER)
    assert stage(engine) == (0, "active") and agent_audits(engine) == before


def test_promotion_with_an_override_is_recorded(engine: Engine, tmp_path: Path) -> None:
    reviewed_queue(engine, tmp_path)
    change = promote(engine, "mailer", 1, "ana", override_reason="pilot week, CMO sign-off", now=LATER)
    assert (change.from_stage, change.to_stage) == (0, 1) and change.unmet
    assert stage(engine) == (1, "active")
    row = agent_audits(engine)[-1]
    assert (row.actor, row.action) == ("ana", "trust_promoted")
    assert row.detail["override_reason"] == "pilot week, CMO sign-off"
    assert row.detail["unmet"] == change.unmet and row.detail["record"]["reviewed"] == 9


def test_promotion_when_the_record_qualifies_one_stage_at_a_time(engine: Engine, tmp_path: Path) -> None:
    reviewed_queue(engine, tmp_path)
    with pytest.raises(TrustError, match=r"one stage at a time \(0 → 1\)"):
        promote(engine, "mailer", 2, "ana", criteria=EASY, now=LATER)
    assert promote(engine, "mailer", 1, "ana", criteria=EASY, now=LATER).unmet == []
    assert stage(engine) == (1, "active")
    with pytest.raises(TrustError, match="promoting to 1 is not up"):
        promote(engine, "mailer", 1, "ana", criteria=EASY, now=LATER)


def test_an_override_never_skips_a_stage(engine: Engine, tmp_path: Path) -> None:
    """`promote --to 3 --override` from stage 1 once jumped two stages; an override lifts unmet criteria, not the ladder."""
    reviewed_queue(engine, tmp_path)
    promote(engine, "mailer", 1, "ana", override_reason="pilot", now=LATER)
    with pytest.raises(TrustInvalid, match=r"one stage at a time \(1 → 2\), an override included"):
        promote(engine, "mailer", 3, "ana", override_reason="CMO says so", now=LATER)
    assert stage(engine) == (1, "active")
    assert [row.action for row in agent_audits(engine)].count("trust_promoted") == 1


def test_a_recent_stop_loss_breach_blocks_promotion(engine: Engine, tmp_path: Path) -> None:
    reviewed_queue(engine, tmp_path)
    with engine.begin() as c:
        c.execute(sa.insert(audit_log).values(at=AT - timedelta(days=10), actor="monitor", action="stop_loss_breach",
                                              entity="agent", entity_id="mailer", detail={"metric": "unsubscribe_rate"}))
    ok, unmet = promotion_check(track_record(engine, "mailer", now=LATER), EASY)
    assert not ok and unmet[0].startswith("stop-loss breached at 2024-02-23")
    ok, _ = promotion_check(track_record(engine, "mailer", now=LATER + timedelta(days=25)), EASY)
    assert ok  # 35 days later the breach is out of the 30-day window


def test_lift_must_not_be_negative() -> None:
    from datetime import datetime, timezone

    from legato.trust.track_record import TrackRecord

    now = datetime(2024, 3, 1, tzinfo=timezone.utc)
    base = TrackRecord("a", 0, "active", now - timedelta(days=90), now, reviewed=300, approved=295, approved_unedited=290)
    criteria = PromotionCriteria()
    down = Lift("reward_per_customer", 0.1, 0.12, -0.02, -0.03, -0.01, 500, 100)
    up = replace(down, difference=0.01, low=-0.005, high=0.025)
    assert promotion_check(replace(base, lift=[up]), criteria) == (True, [])
    ok, unmet = promotion_check(replace(base, lift=[down]), criteria)
    assert not ok and unmet == ["lift of reward_per_customer is -0.02 (95% CI -0.03 to -0.01), needs at least +0"]


def test_demotion_pause_and_resume_are_recorded(engine: Engine, tmp_path: Path) -> None:
    reviewed_queue(engine, tmp_path)
    promote(engine, "mailer", 1, "ana", criteria=EASY, now=LATER)
    with pytest.raises(TrustError, match="needs a reason"):
        demote(engine, "mailer", 0, "ana", " ", LATER)
    with pytest.raises(TrustError, match="demoting to 1 is not down"):
        demote(engine, "mailer", 1, "ana", "x", LATER)
    with pytest.raises(TrustError, match="there is no trust stage 7"):
        promote(engine, "mailer", 7, "ana", criteria=EASY, now=LATER)
    change = demote(engine, "mailer", 0, "ana", "complaints spiked", LATER)
    assert (change.from_stage, change.to_stage) == (1, 0) and stage(engine) == (0, "active")
    row = agent_audits(engine)[-1]
    assert (row.action, row.actor, row.detail) == ("trust_demoted", "ana", {"from": 1, "to": 0, "reason": "complaints spiked"})

    assert pause(engine, "mailer", "ana", "holiday freeze", LATER).status == "paused"
    with pytest.raises(TrustError, match="already paused"):
        pause(engine, "mailer", "ana", "again", LATER)
    assert resume(engine, "mailer", "bob", LATER).status == "active"
    assert [r.action for r in agent_audits(engine)][-2:] == ["agent_paused", "agent_resumed"]
    [state] = list_agents(engine)
    assert (state.id, state.trust_stage, state.status, state.open_items) == ("mailer", 0, "active", len(review.expected_eligible()) - 9)


def test_unknown_agent_names_the_known_ones(engine: Engine, tmp_path: Path) -> None:
    review.stage0_queue(engine, tmp_path, n=8)
    with pytest.raises(TrustError, match="there is no agent 'mailr'") as caught:
        pause(engine, "mailr", "ana", "x", LATER)
    assert "agents: mailer" in str(caught.value)
