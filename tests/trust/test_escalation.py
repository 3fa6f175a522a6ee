"""Playbook escalation beyond an agent's rules: replies (inbound rules) and declared company values."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from legato.clock import FixedClock
from legato.deliver.dispatch import transports
from legato.cycle import run_cycle
from legato.validation import PlaybookError, parse_playbook
from legato.store.ingest import import_customers, import_events
from legato.store.schema import decisions, review_items
from legato.trust.escalation import inbound_facts
from legato.trust.inbound import receive
from legato.trust.review import list_items, show_item

from tests.world import AT, PLAYBOOK, load_customers

INBOUND = """
inbound:
  escalation:
    - {when: 'tier = "gold" and sentiment < -0.2', reason: unhappy_gold, priority: 85, role: vip_care}
    - {when: 'intent = "complaint"', reason: plain_complaint, priority: 60}
    - {when: 'intent_human_request and lifetime_spend >= 1000', reason: vip_wants_a_person, priority: 88, role: account_manager}
"""

VALUES = """
values:
  - id: no_pressure
    statement: "We never push incentives on customers in financial hardship."
    conflicts_when: "hardship and offer_value > 0"
review:
  sla_hours: {value: 6}
"""


def playbook(extra: str = "", stage: int = 2, base: str = PLAYBOOK):  # type: ignore[no-untyped-def]
    return parse_playbook(base.replace("STAGE", str(stage)).replace("HOLDOUT", "0").replace("BUDGET", "{}") + extra)


def with_offer(text: str) -> str:
    text = text.replace("attributes: {tier: string}", "attributes: {tier: string, hardship: boolean}")
    text = text.replace("channels:\n", "offers:\n  - {id: ship, kind: free_shipping, value: 8, cost: 3}\nchannels:\n")
    return text.replace("actions: {creatives: [hello],", "actions: {creatives: [hello], offers: [ship],")


# --- replies ---------------------------------------------------------------------------------


def test_message_facts_give_each_intent_and_the_most_pressing_one() -> None:
    facts = inbound_facts(["human_request", "complaint", "negative_sentiment"], -0.7)
    assert facts["intent"][0] == "human_request"  # more pressing than the complaint
    assert bool(facts["intent_complaint"][0]) and bool(facts["intent_human_request"][0]) and not bool(facts["intent_distress"][0])
    assert facts["sentiment"][0] == -0.7
    assert inbound_facts([], 0.3)["intent"][0] == "none"


def test_a_playbook_rule_on_customer_fields_and_sentiment_routes_a_reply_to_its_role(engine: Engine) -> None:
    load_customers(engine, n=8)  # c001 is gold
    pb = playbook(INBOUND)
    handled = receive(engine, pb, "c001", "email", "Not happy with the quality this time.", AT)
    assert handled.action == "escalated" and handled.reason == "unhappy_gold"
    (item,) = list_items(engine)
    assert (item.kind, item.reason, item.priority, item.assigned_role) == ("conversation", "unhappy_gold", 85, "vip_care")
    assert item.evidence["matched"]["rule"] == "inbound.escalation[0]: " + 'tier = "gold" and sentiment < -0.2'
    assert item.evidence["sentiment"] < -0.2 and item.evidence["excerpt"].startswith("Not happy with")
    assert item.due_at == AT + timedelta(hours=24)  # a conversation's default SLA
    # The same words from a bronze customer are nobody's business but the record's.
    assert receive(engine, pb, "c003", "email", "Not happy with the quality this time.", AT).action == "recorded"


def test_the_highest_priority_wins_and_built_in_reasons_cannot_be_silenced(engine: Engine) -> None:
    load_customers(engine, n=8)
    import_events(engine, pa.table({"id": ["e"], "customer_id": ["c002"], "type": ["purchase"], "occurred_at": ["2024-02-01T00:00:00Z"], "revenue": [2000.0]}), clock=FixedClock(AT))
    pb = playbook(INBOUND)
    # A plain complaint: the built-in reason (75) outranks the playbook's lower rule (60), which is kept as evidence.
    complaint = receive(engine, pb, "c003", "email", "My parcel never arrived.", AT)
    assert complaint.reason == "complaint"
    item = next(i for i in list_items(engine) if i.id == complaint.review_item_id)
    assert item.evidence["matched"]["rule"] == "built-in: complaint"
    assert 'inbound.escalation[1]: intent = "complaint"' in item.evidence["also_matched"]
    # A valuable customer asking for a person: the playbook's rule (88) takes over from the built-in one (80).
    vip = receive(engine, pb, "c002", "email", "Can I talk to a real person please?", AT)
    assert vip.reason == "vip_wants_a_person"
    # A legal threat (95) outranks every rule here.
    assert receive(engine, pb, "c001", "email", "I am going to sue you.", AT).reason == "legal_threat"
    # STOP is answered at once, whatever the rules would say.
    stop = receive(engine, pb, "c001", "sms", "STOP", AT)
    assert stop.action == "opted_out" and stop.review_item_id is None


def test_inbound_rules_are_validated_with_their_place_and_a_hint() -> None:
    bad = INBOUND.replace("sentiment < -0.2", "mood < -0.2").replace('intent = "complaint"', 'intent = "complaints"')
    with pytest.raises(PlaybookError) as caught:
        playbook(bad)
    text = str(caught.value)
    assert "<playbook>:" in text and "inbound.escalation[0].when: unknown field or segment 'mood'" in text
    assert "besides customer fields, this rule can read sentiment, intent, intent_opt_out" in text
    assert "inbound.escalation[1].when: 'complaints' is not an intent the classifier gives" in text and "did you mean 'complaint'?" in text
    # A decision fact means nothing for a reply.
    with pytest.raises(PlaybookError, match=r"inbound.escalation\[0\].when: unknown field or segment 'offer_value'"):
        playbook("inbound:\n  escalation:\n    - {when: 'offer_value > 1', reason: x}\n")


# --- company values ----------------------------------------------------------------------------


def test_a_decision_that_conflicts_with_a_company_value_goes_to_a_person(engine: Engine, tmp_path: Path) -> None:
    load_customers(engine, n=8)
    import_customers(engine, pa.table({"id": ["c001", "c002"], "hardship": [True, False]}), attribute_types={"hardship": "boolean"}, clock=FixedClock(AT))
    pb = playbook(VALUES, stage=3, base=with_offer(PLAYBOOK))
    report = run_cycle(engine, pb, FixedClock(AT), transports(pb, tmp_path))
    assert report.agents["mailer"].queued == 1  # stage 3 executes everything else
    (item,) = list_items(engine)
    assert (item.kind, item.customer_id, item.reason, item.priority) == ("decision", "c001", "value:no_pressure", 60)
    assert item.due_at == AT + timedelta(hours=6)  # the SLA of the reason's family, "value"
    detail = show_item(engine, item.id, playbook=pb)
    assert detail.evidence == {
        "value": "no_pressure",
        "statement": "We never push incentives on customers in financial hardship.",
        "conflicts_when": "hardship and offer_value > 0",
    }
    with engine.connect() as c:
        findings = c.execute(sa.select(decisions.c.findings).where(decisions.c.customer_id == "c001")).scalar_one()
    assert "escalate:value:no_pressure" in findings
    # The statement is written into the item itself.
    assert list_items(engine)[0].evidence == detail.evidence
    assert show_item(engine, item.id).evidence == detail.evidence  # no playbook needed any more


def test_an_agent_rule_of_higher_priority_names_the_case_before_a_value(engine: Engine, tmp_path: Path) -> None:
    load_customers(engine, n=8)
    import_customers(engine, pa.table({"id": ["c001"], "hardship": [True]}), attribute_types={"hardship": "boolean"}, clock=FixedClock(AT))
    rule = "    escalation:\n      - {when: 'tier = \"gold\" and offer_value > 0', reason: gold_offer, priority: 90}\n"
    text = with_offer(PLAYBOOK).replace("    trust_stage:", rule + "    trust_stage:", 1)
    pb = playbook(VALUES, stage=3, base=text)
    run_cycle(engine, pb, FixedClock(AT), transports(pb, tmp_path))
    with engine.connect() as c:
        reasons = dict(c.execute(sa.select(decisions.c.customer_id, review_items.c.reason).join(review_items, review_items.c.decision_id == decisions.c.id)).all())
    assert reasons["c001"] == "gold_offer" and set(reasons.values()) == {"gold_offer"}


def test_values_are_validated_like_escalation_rules() -> None:
    with pytest.raises(PlaybookError) as caught:
        playbook(VALUES.replace("hardship and", "hardshp and"), base=with_offer(PLAYBOOK))
    text = str(caught.value)
    assert "<playbook>:" in text and "values[0].conflicts_when: unknown field or segment 'hardshp'" in text and "did you mean 'hardship'?" in text
    with pytest.raises(PlaybookError, match=r"values\[1\].id: 'no_pressure' is already used by values\[0\]"):
        playbook(
            "values:\n  - {id: no_pressure, statement: a, conflicts_when: 'offer_value > 1'}\n  - {id: no_pressure, statement: b, conflicts_when: 'offer_value > 2'}\n",
            base=with_offer(PLAYBOOK),
        )
