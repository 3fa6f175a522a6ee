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
  sentiment is escalated: the customer's pending messages are held, agents leave the
  customer alone, and the message waits in the inbound queue (``legato inbound list``) with
  its reason, priority and evidence until a person resolves it;
- anything else is recorded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from legato.errors import LegatoError
from legato.playbook.models import Playbook
from legato.store.schema import audit_log, consents, customers, inbound_messages, outbox

OPT_OUT = ("STOP", "STOPALL", "QUIT", "END", "REVOKE", "OPT OUT", "OPTOUT", "CANCEL", "UNSUBSCRIBE")
HELP = ("HELP", "INFO")
# Revocation by "any reasonable means" (FCC 2024 TCPA order): a sentence asking to stop counts too.
OPT_OUT_PHRASE = re.compile(
    r"\b(unsubscribe|opt ?out|revoke)\b|\b(stop|quit|no more|remove me)\b.{0,30}\b(text|messag|email|mail|send|contact)", re.I
)
NEGATIVE = -0.5  # VADER compound at or below which a message reads as strongly negative
SLA_HOURS = 24.0
# (intent, priority, pattern): the first matching escalation intent names the reason.
ESCALATIONS: tuple[tuple[str, int, re.Pattern[str]], ...] = (
    ("legal_threat", 95, re.compile(r"\b(lawyer|attorney|lawsuit|sue|suing|court|legal action|report you to)\b", re.I)),
    ("distress", 90, re.compile(r"\b(suicid\w*|can'?t cope|desperate|passed away|funeral|grieving|lost my job|bereave\w*)\b", re.I)),
    ("human_request", 80, re.compile(r"\b(speak|talk) (to|with) (a |an )?(real )?(person|human|agent|someone|manager)\b|\bcall me\b", re.I)),
    ("complaint", 75, re.compile(r"\b(complain\w*|refund|unacceptable|never (arrived|received|came)|broken|scam|rip-?off|disgust\w*|worst)\b", re.I)),
)
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

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def classify(text: str) -> Classification:
    normalized = re.sub(r"[^A-Z ]", "", text.strip().upper())
    intents: list[str] = []
    evidence: list[str] = []
    phrase = OPT_OUT_PHRASE.search(text)
    if normalized in OPT_OUT or phrase:
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
    reply: str | None = None
    reason: str | None = None
    priority = 0
    with engine.begin() as connection:
        if connection.execute(sa.select(customers.c.id).where(customers.c.id == customer_id)).first() is None:
            raise LegatoError(f"unknown customer '{customer_id}'", hint="import the customer first; nothing was recorded")
        if "opt_out" in found.intents:
            action = "opted_out"
            _revoke(connection, customer_id, channel, now)
            reply = f"{playbook.brand.name}: you are unsubscribed and will get no more marketing messages. Reply HELP for help."
        elif "help" in found.intents:
            action = "helped"
            reply = help_reply(playbook)
        else:
            action = "recorded"
        escalation = next(((i, p) for i, p, _ in ESCALATIONS if i in found.intents), None)
        if escalation is None and "negative_sentiment" in found.intents:
            escalation = ("negative_sentiment", 70)
        if escalation is not None and action == "recorded":
            action = "escalated"
            reason, priority = escalation
            # Nobody should get a promotion an hour after complaining: hold what is pending.
            # The agents leave the customer alone while the message is open (see the engine).
            _cancel_pending(connection, customer_id, None)
        message_id = connection.execute(
            sa.insert(inbound_messages)
            .values(
                customer_id=customer_id, channel=channel, received_at=now, text=text, sentiment=found.sentiment,
                intents={"intents": found.intents, "evidence": found.evidence}, action=action, reason=reason, priority=priority,
                status="open" if action == "escalated" else "closed", due_at=now + timedelta(hours=SLA_HOURS) if action == "escalated" else None,
            )
            .returning(inbound_messages.c.id)
        ).scalar_one()
        connection.execute(
            sa.insert(audit_log).values(
                at=now, actor=f"customer:{customer_id}", action=f"inbound_{action}", entity="inbound_message", entity_id=str(message_id),
                detail={"channel": channel, "intents": found.intents, "evidence": found.evidence, "reason": reason},
            )
        )
    return Handled(message_id, action, found.intents, reason, reply)


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


def open_messages(engine: Engine, *, limit: int = 100) -> list[dict[str, Any]]:
    """Escalated messages waiting for a person, highest priority first, then oldest."""
    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(inbound_messages)
            .where(inbound_messages.c.status == "open")
            .order_by(inbound_messages.c.priority.desc(), inbound_messages.c.received_at, inbound_messages.c.id)
            .limit(limit)
        ).mappings()
        return [dict(row) for row in rows]


def resolve(engine: Engine, message_id: int, by: str, note: str, now: datetime) -> None:
    """A person dealt with the message; the note says how."""
    if not by.strip() or not note.strip():
        raise LegatoError("resolving a message needs --by and --note", hint="say who answered and how")
    with engine.begin() as connection:
        done = connection.execute(
            sa.update(inbound_messages)
            .where(inbound_messages.c.id == message_id, inbound_messages.c.status == "open")
            .values(status="resolved", handled_by=by, handled_at=now, note=note)
        ).rowcount
        if not done:
            raise LegatoError(f"inbound message {message_id} is not open", hint="see `legato inbound list`")
        connection.execute(
            sa.insert(audit_log).values(at=now, actor=by, action="inbound_resolved", entity="inbound_message", entity_id=str(message_id), detail={"note": note})
        )
