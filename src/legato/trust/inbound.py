"""What customers write back: opt-outs and help requests handled at once, the rest routed.

Every inbound message is classified (keywords and VADER sentiment, Hutto & Gilbert 2014) and
then, in one transaction:

- an opt-out keyword (STOP, QUIT, END, REVOKE, OPT OUT, CANCEL, UNSUBSCRIBE — TCPA and the
  CTIA Messaging Principles) revokes marketing consent on that channel at once, cancels the
  customer's pending marketing messages on it, and yields one confirmation text with no
  marketing in it;
- HELP yields the CTIA help reply: brand, message frequency, "Msg & data rates may apply",
  support contact and how to stop;
- a complaint, a legal threat, distress, a request for a person or strongly negative
  sentiment is escalated (built in, whatever the playbook says), and so is a message that
  matches one of the playbook's ``inbound.escalation`` rules (customer fields, ``sentiment``
  and the intents; see :mod:`legato.trust.escalation`). The customer's pending messages are
  held, agents leave the customer alone, and the conversation waits in the review queue
  (``legato review list``, kind "conversation") with its reason, priority, role, due date
  (the playbook's SLA for the reason, a day by default) and evidence until a person
  resolves it (``legato review resolve``) or it expires;
- anything else is recorded.

The highest-priority match names the reason; a playbook rule can therefore take over a
built-in reason (say ``complaint`` at priority 85 for role ``support``) but not silence it.
The ``inbound_messages`` row stays the record of the message; its status follows the item.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy import Engine
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from legato.audience.fields import StoreResolver, audience_from
from legato.errors import LegatoError, NotFound
from legato.playbook.models import Playbook
from legato.store.schema import audit_log, consents, customers, decisions, inbound_messages, outbox, review_items
from legato.trust.escalation import INBOUND_FIELDS, RuleSet, inbound_facts, inbound_rules
from legato.trust.review import CONVERSATION, CONVERSATION_SLA_HOURS, OPEN, due_at_for

OPT_OUT = ("STOP", "STOPALL", "QUIT", "END", "REVOKE", "OPT OUT", "OPTOUT", "CANCEL", "UNSUBSCRIBE")
OPENING_OPT_OUT = ("STOP", "STOPALL", "UNSUBSCRIBE", "OPTOUT")
HELP = ("HELP", "INFO")
# Revocation by "any reasonable means" (FCC 2024 TCPA order): a sentence asking to stop counts too.
OPT_OUT_PHRASE = re.compile(
    r"\b(unsubscribe|opt ?out|revoke)\b|\b(stop|quit|no more|remove me)\b.{0,30}\b(text|messag|email|mail|send|contact)", re.I
)
NEGATIVE = -0.5  # VADER compound at or below which a message reads as strongly negative
NEGATIVE_PRIORITY = 70
EXCERPT_CHARS = 280  # enough to judge a reply in the queue; the whole text stays on the message
# (intent, priority, pattern): the first matching escalation intent names the reason.
ESCALATIONS: tuple[tuple[str, int, re.Pattern[str]], ...] = (
    ("legal_threat", 95, re.compile(r"\b(lawyer|attorney|lawsuit|sue|suing|court|legal action|report you to)\b", re.I)),
    ("distress", 90, re.compile(r"\b(suicid\w*|can'?t cope|desperate|passed away|funeral|grieving|lost my job|bereave\w*)\b", re.I)),
    ("human_request", 80, re.compile(r"\b(speak|talk) (to|with) (a |an )?(real )?(person|human|agent|someone|manager)\b|\bcall me\b", re.I)),
    ("complaint", 75, re.compile(r"\b(complain\w*|refund|unacceptable|never (arrived|received|came)|broken|scam|rip-?off|disgust\w*|worst)\b", re.I)),
)
# Built-in reasons that reach a person even alongside STOP or HELP. Not a request for a
# person: beside STOP, "don't call me" is no such request.
ALWAYS_A_PERSON = frozenset({"legal_threat", "distress"})
_ANALYZER = SentimentIntensityAnalyzer()


@dataclass(frozen=True)
class Classification:
    intents: list[str]
    sentiment: float
    evidence: list[str]


@dataclass(frozen=True)
class Handled:
    message_id: int
    action: str  # opted_out | helped | escalated | recorded
    intents: list[str]
    reason: str | None
    reply: str | None  # the text to send back, where the rules call for one
    review_item_id: int | None = None  # where an escalated conversation waits in the queue

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


@dataclass(frozen=True)
class _Match:
    reason: str
    priority: int
    role: str | None
    rule: str  # "built-in: <intent>" or "inbound.escalation[i]: <expression>"


def classify(text: str) -> Classification:
    normalized = re.sub(r"[^A-Z ]", "", text.strip().upper())
    intents: list[str] = []
    evidence: list[str] = []
    phrase = OPT_OUT_PHRASE.search(text)
    # A message that opens with an unambiguous keyword ("STOP or I'll call my lawyer") is an
    # opt-out too; "Cancel my order" or "End of story" are not.
    first_word = normalized.split(" ", 1)[0] if normalized else ""
    if normalized in OPT_OUT or first_word in OPENING_OPT_OUT or phrase:
        intents.append("opt_out")
        evidence.append(phrase.group(0) if phrase else text.strip())
    elif normalized in HELP:
        intents.append("help")
        evidence.append(text.strip())
    for intent, _, pattern in ESCALATIONS:
        match = pattern.search(text)
        if match:
            intents.append(intent)
            evidence.append(match.group(0))
    sentiment = float(_ANALYZER.polarity_scores(text)["compound"])
    if sentiment <= NEGATIVE:
        intents.append("negative_sentiment")
        evidence.append(f"sentiment {sentiment:+.2f}")
    return Classification(intents, sentiment, evidence)


def receive(engine: Engine, playbook: Playbook, customer_id: str, channel: str, text: str, now: datetime) -> Handled:
    """Record, classify and act on one inbound message."""
    if not text.strip():
        raise LegatoError("an inbound message needs text")
    found = classify(text)
    rules = RuleSet(inbound_rules(playbook), INBOUND_FIELDS, StoreResolver(playbook, now, engine.dialect.name), engine.dialect.name)
    reply: str | None = None
    reason: str | None = None
    item_id: int | None = None
    with engine.begin() as connection:
        if connection.execute(sa.select(customers.c.id).where(customers.c.id == customer_id)).first() is None:
            raise NotFound(f"unknown customer '{customer_id}'", hint="import the customer first; nothing was recorded")
        if "opt_out" in found.intents:
            action = "opted_out"
            _revoke(connection, customer_id, channel, now)
            reply = f"{playbook.brand.name}: you are unsubscribed and will get no more marketing messages. Reply HELP for help."
        elif "help" in found.intents:
            action = "helped"
            reply = help_reply(playbook)
        else:
            action = "recorded"
        # STOP and HELP are answered at once; only a message that asks for nothing the law
        # settles goes on to the escalation rules. An opt-out or HELP that also carries a legal
        # threat, distress or a request for a person still reaches a person, after the
        # opt-out took effect.
        if action == "recorded":
            matches = _matches(connection, rules, customer_id, found)
        else:
            matches = [m for m in _matches(connection, rules, customer_id, found) if m.reason in ALWAYS_A_PERSON]
        chosen = matches[0] if matches else None
        due_at = None
        if chosen is not None:
            action = "escalated" if action == "recorded" else action
            reason = chosen.reason
            due_at = due_at_for(reason, now, playbook.review.sla_hours, default=CONVERSATION_SLA_HOURS)
            # Nobody should get a promotion an hour after complaining: hold what is pending.
            # The agents leave the customer alone while the conversation is open (see the engine).
            _cancel_pending(connection, customer_id, None)
        message_id = connection.execute(
            sa.insert(inbound_messages)
            .values(
                customer_id=customer_id, channel=channel, received_at=now, text=text, sentiment=found.sentiment,
                intents={"intents": found.intents, "evidence": found.evidence}, action=action, reason=reason,
                priority=chosen.priority if chosen else 0, status=OPEN if chosen else "closed", due_at=due_at,
            )
            .returning(inbound_messages.c.id)
        ).scalar_one()
        if chosen is not None:
            item_id = connection.execute(
                sa.insert(review_items)
                .values(
                    kind=CONVERSATION, inbound_message_id=message_id, decision_id=None, agent_id=_last_sender(connection, customer_id),
                    reason=chosen.reason, priority=chosen.priority, status=OPEN, created_at=now, due_at=due_at,
                    assigned_role=chosen.role, evidence=_evidence(text, found, matches),
                )
                .returning(review_items.c.id)
            ).scalar_one()
        connection.execute(
            sa.insert(audit_log).values(
                at=now, actor=f"customer:{customer_id}", action=f"inbound_{action}", entity="inbound_message", entity_id=str(message_id),
                detail={"channel": channel, "intents": found.intents, "evidence": found.evidence, "reason": reason, "review_item": item_id},
            )
        )
    return Handled(message_id, action, found.intents, reason, reply, item_id)


def _matches(connection: Any, rules: RuleSet, customer_id: str, found: Classification) -> list[_Match]:
    """Every built-in and playbook reason the message gives, most pressing first (built-ins win ties)."""
    matches = [_Match(intent, priority, None, f"built-in: {intent}") for intent, priority, _ in ESCALATIONS if intent in found.intents]
    if "negative_sentiment" in found.intents:
        matches.append(_Match("negative_sentiment", NEGATIVE_PRIORITY, None, f"built-in: sentiment {found.sentiment:+.2f} <= {NEGATIVE}"))
    if rules.rules:
        columns: dict[str, Any] = {}
        if rules.columns:
            row = connection.execute(
                sa.select(*rules.columns).select_from(audience_from()).where(customers.c.id == customer_id)
            ).mappings().one()
            columns = {name: np.array([value], dtype=object) for name, value in row.items()}
        facts = inbound_facts(found.intents, found.sentiment)
        matches += [_Match(r.reason, r.priority, r.role, f"inbound.escalation[{r.key}]: {r.when}") for r in rules.all_matches(columns, facts)]
    return sorted(matches, key=lambda m: -m.priority)  # stable: built-ins first among equals


def _evidence(text: str, found: Classification, matches: list[_Match]) -> dict[str, Any]:
    excerpt = text.strip()
    if len(excerpt) > EXCERPT_CHARS:
        excerpt = excerpt[: EXCERPT_CHARS - 1].rstrip() + "…"
    return {
        "excerpt": excerpt,
        "sentiment": round(found.sentiment, 4),
        "intents": found.intents,
        "phrases": found.evidence,
        "matched": {"rule": matches[0].rule, "reason": matches[0].reason, "priority": matches[0].priority},
        "also_matched": [m.rule for m in matches[1:]],
    }


def _last_sender(connection: Any, customer_id: str) -> str | None:
    """The agent whose message the customer last received: the reply is most likely about it."""
    return connection.execute(
        sa.select(decisions.c.agent_id)
        .join(outbox, outbox.c.decision_id == decisions.c.id)
        .where(outbox.c.customer_id == customer_id, outbox.c.status == "sent")
        .order_by(outbox.c.sent_at.desc(), outbox.c.id.desc())
        .limit(1)
    ).scalar_one_or_none()


def help_reply(playbook: Playbook) -> str:
    """The CTIA HELP answer: who, how often, what it costs, whom to ask, how to stop."""
    caps = [c for c in playbook.guardrails.frequency_caps if c.channel in ("sms", "any")]
    if not caps:
        frequency = "Recurring msgs"
    elif caps[0].calendar:
        frequency = f"Up to {caps[0].max} msgs per {caps[0].calendar}"
    else:
        frequency = f"Up to {caps[0].max} msgs every {caps[0].days:g} days"
    return (
        f"{playbook.brand.name}: {frequency}. Msg & data rates may apply. "
        f"Help: {playbook.brand.legal.support_contact}. Reply STOP to opt out."
    )


def _revoke(connection: Any, customer_id: str, channel: str, now: datetime) -> None:
    """Honour an opt-out at once (the legal limit is 10 business days; there is no reason to wait)."""
    key = (consents.c.customer_id == customer_id) & (consents.c.channel == channel) & (consents.c.purpose == "marketing")
    connection.execute(sa.delete(consents).where(key))
    connection.execute(
        sa.insert(consents).values(
            customer_id=customer_id, channel=channel, purpose="marketing", status="revoked", kind="express", source="inbound:opt_out", recorded_at=now
        )
    )
    _cancel_pending(connection, customer_id, channel)


def _cancel_pending(connection: Any, customer_id: str, channel: str | None) -> int:
    where = (outbox.c.customer_id == customer_id) & (outbox.c.status == "pending")
    if channel is not None:
        where = where & (outbox.c.channel == channel)
    return int(connection.execute(sa.update(outbox).where(where).values(status="cancelled")).rowcount or 0)
