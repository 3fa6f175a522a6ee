"""What customers write back: opt-outs and help requests handled at once, the rest routed.

Every inbound message is classified (keywords and VADER sentiment, Hutto & Gilbert 2014) and
then, in one transaction:

- an opt-out, read by :mod:`legato.trust.optout` (keywords in any case, spacing or Unicode
  form, in English, French and Spanish and the common ones of German, Italian and
  Portuguese, and plain requests to stop: "any reasonable means", FCC 2024 TCPA order),
  revokes marketing consent at once on the channel it came in on and on every channel it
  names ("no more emails" by text revokes e-mail too; "STOPALL" every channel), cancels the
  customer's pending marketing messages there, and yields one confirmation that says exactly
  what was revoked and what is still allowed;
- a reply that may be an opt-out but does not say so clearly ("too many emails", "wrong
  number") goes to a person (reason ``possible_opt_out``); marketing to the customer pauses
  until the person decides: ``legato inbound opt-out ITEM`` revokes, ``legato review resolve``
  keeps consent;
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
Card numbers and other personal data in the text are masked (:mod:`legato.guard.redact`)
before anything is stored: the message, the queue's excerpt and the audit log.

An opt-out is never lost: its transaction is tried again while the store is locked or
unreachable (:func:`legato.trust.pending_optouts.retrying`, ``LEGATO_OPTOUT_WAIT`` seconds),
and if it still cannot be written it is kept in the durable file of pending opt-outs that the
cycle and the dispatcher honour, and the command fails saying so
(:class:`~legato.trust.pending_optouts.OptOutSaved`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy import Engine
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from legato.audience.fields import StoreResolver, audience_from
from legato.deliver import outbox as outbox_writer
from legato.errors import Invalid, LegatoError, NotFound, StoreError
from legato.guard import consent as consent_history
from legato.guard.normalize import normalize
from legato.guard.redact import mask
from legato.playbook.models import ChannelKind, Playbook
from legato.store import receipts
from legato.store.audit import record
from legato.store.receipts import Receipt
from legato.store.schema import audit_log, consents, customers, decisions, inbound_messages, outbox, review_items
from legato.store.status import InboundStatus, OutboxStatus, ReviewKind
from legato.trust import pending_optouts
from legato.trust.pending_optouts import OptOutLost, OptOutSaved, PendingOptOut
from legato.trust.escalation import INBOUND_FIELDS, RuleSet, inbound_facts, inbound_rules
from legato.trust.optout import POSSIBLE_OPT_OUT, OptOut, Verdict, detect, fold
from legato.trust.review import CONVERSATION_SLA_HOURS, due_at_for, resolve
from legato.trust.review.items import NewItem, open_item

HELP = ("help", "info", "aide", "ayuda", "hilfe", "aiuto", "ajuda")
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
# A reply that may be an opt-out waits for a person above complaints and requests for one:
# until it is decided, no marketing reaches the customer.
POSSIBLE_OPT_OUT_PRIORITY = 85
_ANALYZER = SentimentIntensityAnalyzer()


@dataclass(frozen=True)
class Classification:
    intents: list[str]
    sentiment: float
    evidence: list[str]
    opt_out: OptOut = OptOut(Verdict.none)


@dataclass(frozen=True)
class Handled:
    message_id: int
    action: str  # opted_out | helped | escalated | recorded | duplicate (the provider sent it before: nothing done)
    intents: list[str]
    reason: str | None
    reply: str | None  # the text to send back, where the rules call for one
    review_item_id: int | None = None  # where an escalated conversation waits in the queue
    duplicate: bool = False  # the provider sent this text before and it was handled then: nothing done now

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


@dataclass(frozen=True)
class _Match:
    reason: str
    priority: int
    role: str | None
    rule: str  # "built-in: <intent>" or "inbound.escalation[i]: <expression>"


def classify(text: str) -> Classification:
    intents: list[str] = []
    evidence: list[str] = []
    opt_out = detect(text)
    if opt_out.verdict is Verdict.revoke:
        intents.append("opt_out")
        evidence.append(opt_out.evidence or text.strip())
    elif opt_out.verdict is Verdict.unclear:
        intents.append(POSSIBLE_OPT_OUT)
        evidence.append(opt_out.evidence or text.strip())
    elif fold(text) in HELP:
        intents.append("help")
        evidence.append(text.strip())
    normal = normalize(text)
    for intent, _, pattern in ESCALATIONS:
        # The written form and the normal one: a threat in full-width letters is a threat.
        match = pattern.search(text) or pattern.search(normal)
        if match:
            intents.append(intent)
            evidence.append(match.group(0))
    sentiment = float(_ANALYZER.polarity_scores(normal)["compound"])
    if sentiment <= NEGATIVE:
        intents.append("negative_sentiment")
        evidence.append(f"sentiment {sentiment:+.2f}")
    return Classification(intents, sentiment, [mask(e) for e in evidence], opt_out)


def receive(engine: Engine, playbook: Playbook, customer_id: str, channel: str, text: str, now: datetime,
            *, receipt: Receipt | None = None) -> Handled:
    """Record, classify and act on one inbound message. ``receipt``, the provider's id of the
    text, makes it once: a text whose receipt this customer's handling took already (the
    provider delivered it again) changes nothing and answers nothing (``duplicate``)."""
    if not text.strip():
        raise LegatoError("an inbound message needs text")
    found = classify(text)
    text = mask(text)  # classified as written; stored and shown with personal data masked
    rules = RuleSet(inbound_rules(playbook), INBOUND_FIELDS, StoreResolver(playbook, now, engine.dialect.name), engine.dialect.name)
    if "opt_out" not in found.intents and POSSIBLE_OPT_OUT not in found.intents:
        return _receive(engine, playbook, customer_id, channel, text, now, found, rules, receipt)
    # A "no" (or what may be one) waits for a locked or unreachable store, and is kept in a
    # durable file if it still cannot be written: the command fails, and no marketing goes
    # out until it is.
    try:
        return pending_optouts.retrying(lambda: _receive(engine, playbook, customer_id, channel, text, now, found, rules, receipt))
    except StoreError as error:
        raise _kept_for_later(engine, customer_id, channel, text, now, found, error) from error


def _receive(engine: Engine, playbook: Playbook, customer_id: str, channel: str, text: str, now: datetime, found: Classification, rules: RuleSet,
             receipt: Receipt | None = None) -> Handled:
    """One attempt: the message recorded and acted on in one transaction."""
    reply: str | None = None
    reason: str | None = None
    item_id: int | None = None
    with engine.begin() as connection:
        _bounded_wait(connection)
        # The receipt first: a second delivery of the same text waits here for the first to
        # commit, then finds its receipt and does nothing (store.receipts).
        if receipt is not None and not receipts.take(connection, receipt, customer_id, now):
            earlier = receipts.recorded(connection, receipt, customer_id)
            return Handled(earlier or 0, "duplicate", found.intents, None, None, duplicate=True)
        if connection.execute(sa.select(customers.c.id).where(customers.c.id == customer_id)).first() is None:
            raise NotFound(f"unknown customer '{customer_id}'", hint="import the customer first; nothing was recorded")
        if "opt_out" in found.intents:
            action = "opted_out"
            revoked = revoked_channels(found.opt_out, channel)
            for each in sorted(revoked):
                _revoke(connection, customer_id, each, now, source="inbound:opt_out")
            reply = confirmation(playbook, revoked, _still_allowed(connection, playbook, customer_id), found.opt_out.language)
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
                priority=chosen.priority if chosen else 0, status=InboundStatus.OPEN if chosen else InboundStatus.CLOSED, due_at=due_at,
            )
            .returning(inbound_messages.c.id)
        ).scalar_one()
        if receipt is not None:
            receipts.note(connection, receipt, customer_id, message_id)
        if chosen is not None:
            item_id = open_item(
                connection,
                NewItem(
                    kind=ReviewKind.CONVERSATION, reason=chosen.reason, priority=chosen.priority, created_at=now,
                    agent_id=_last_sender(connection, customer_id), inbound_message_id=message_id, assigned_role=chosen.role,
                    evidence=_evidence(text, found, matches),
                ),
                playbook.review.sla_hours,
            )
        record(
            connection, now, f"customer:{customer_id}", f"inbound_{action}", "inbound_message", str(message_id),
            {"channel": channel, "intents": found.intents, "evidence": found.evidence, "reason": reason, "review_item": item_id},
        )
    return Handled(message_id, action, found.intents, reason, reply, item_id)


def _bounded_wait(connection: Any) -> None:
    """PostgreSQL: wait for another transaction's row locks no longer than SQLite waits for its
    lock (``LEGATO_BUSY_TIMEOUT``), so a held lock is retried and, in the end, reported."""
    if connection.dialect.name == "postgresql":
        from legato.store.db import busy_seconds

        connection.exec_driver_sql(f"SET LOCAL lock_timeout = '{max(1, int(busy_seconds() * 1000))}ms'")


def _kept_for_later(engine: Engine, customer_id: str, channel: str, text: str, now: datetime, found: Classification, error: StoreError) -> LegatoError:
    """The opt-out the store could not take, appended to the pending file: the error that says so."""
    certain = "opt_out" in found.intents
    revoked = sorted(revoked_channels(found.opt_out, channel)) if certain else []
    escalate = [{"reason": intent, "priority": priority} for intent, priority, _ in ESCALATIONS if intent in found.intents and intent in ALWAYS_A_PERSON]
    if not certain:  # it may be an opt-out: a person decides, and marketing waits for them
        escalate = sorted([*escalate, {"reason": POSSIBLE_OPT_OUT, "priority": POSSIBLE_OPT_OUT_PRIORITY}], key=lambda e: -int(e["priority"]))
    entry = PendingOptOut(
        customer_id=customer_id, channel=channel, channels=revoked, received_at=now.isoformat(), text=text,
        language=found.opt_out.language, escalate=escalate, why=error.message,
        intents=found.intents, evidence=found.evidence, sentiment=found.sentiment,
    )
    if _known_not_to_exist(engine, customer_id):
        return NotFound(f"unknown customer '{customer_id}'", hint="import the customer first; nothing was recorded")
    path = pending_optouts.path_for(engine)
    names = ", ".join(revoked)
    try:
        pending_optouts.save(path, entry)
    except OSError as exc:
        return OptOutLost(
            f"the opt-out of customer {customer_id} ({names or 'possible'}) could not be written to the database ({error.message}) "
            f"nor to {path} ({exc.strerror or exc}): it is NOT recorded",
            hint="run the command again once the database or that folder can be written; "
            f"{pending_optouts.PATH_VARIABLE} chooses another file",
        )
    what = f"the opt-out of customer {customer_id} ({names})" if certain else f"the reply of customer {customer_id}, which may be an opt-out,"
    return OptOutSaved(
        f"{what} could not be written to the database ({error.message}); "
        f"it is kept in {path} and no marketing goes out until it is written, which the next command "
        "that can write the database does" + ("" if certain else " (then it waits for a person)"),
        hint=f"{error.hint or 'make the database writable'}; then `legato inbound pending` writes it now",
    )


def _known_not_to_exist(engine: Engine, customer_id: str) -> bool:
    """True only when the store answers that there is no such customer (SQLite reads while another
    process writes); when it cannot answer, the opt-out is kept and checked when written back."""
    try:
        with engine.connect() as connection:
            return connection.execute(sa.select(customers.c.id).where(customers.c.id == customer_id)).first() is None
    except StoreError:
        return False


def apply_pending(engine: Engine, entry: PendingOptOut, *, wait: float | None = None) -> str:
    """Write one opt-out from the pending file into the store, once; returns what was done.

    ``revoked``; ``queued`` (a reply that may be an opt-out, now waiting for a person, which
    pauses marketing to the customer); ``already`` (an earlier replay wrote it);
    ``unknown_customer``. A consent the customer gave explicitly, dated after the opt-out was
    received, is newer: it stands on its channel (guard.consent.change; an undated one does not).
    """

    def once() -> str:
        with engine.begin() as connection:
            _bounded_wait(connection)
            done = connection.execute(
                sa.select(audit_log.c.id).where(audit_log.c.entity == pending_optouts.ENTITY, audit_log.c.entity_id == entry.id).limit(1)
            ).first()
            if done is not None:
                return "already"
            detail = {"customer": entry.customer_id, "channels": entry.channels, "received_at": entry.received_at,
                      "saved_at": entry.saved_at, "why": entry.why}
            written = datetime.now(timezone.utc)
            if connection.execute(sa.select(customers.c.id).where(customers.c.id == entry.customer_id)).first() is None:
                record(connection, written, "engine", pending_optouts.REJECTED_ACTION, pending_optouts.ENTITY, entry.id, detail | {"outcome": "unknown customer"})
                return "unknown_customer"
            at = entry.at
            kept = []
            for each in entry.channels:
                # The consent history decides (guard.consent.change): an express consent the
                # customer gave after the opt-out was received stands; anything else is revoked.
                if not _revoke(connection, entry.customer_id, each, at, source=f"{entry.source} (written late)"):
                    kept.append(each)
            chosen = entry.escalate[0] if entry.escalate else None
            due_at = due_at_for(chosen["reason"], at, {}, default=CONVERSATION_SLA_HOURS) if chosen else None
            message_id = connection.execute(
                sa.insert(inbound_messages)
                .values(
                    customer_id=entry.customer_id, channel=entry.channel, received_at=at, text=entry.text, sentiment=entry.sentiment,
                    intents={"intents": entry.intents, "evidence": entry.evidence}, action="opted_out" if entry.channels else "escalated",
                    reason=chosen["reason"] if chosen else None, priority=chosen["priority"] if chosen else 0,
                    status=InboundStatus.OPEN if chosen else InboundStatus.CLOSED, due_at=due_at,
                )
                .returning(inbound_messages.c.id)
            ).scalar_one()
            item_id = None
            if chosen is not None:
                _cancel_pending(connection, entry.customer_id, None)
                item_id = open_item(
                    connection,
                    NewItem(
                        kind=ReviewKind.CONVERSATION, reason=chosen["reason"], priority=chosen["priority"], created_at=at,
                        agent_id=_last_sender(connection, entry.customer_id), inbound_message_id=message_id,
                        evidence={"excerpt": entry.text[:EXCERPT_CHARS], "intents": entry.intents, "phrases": entry.evidence,
                                  "matched": {"rule": f"built-in: {chosen['reason']}", "reason": chosen["reason"], "priority": chosen["priority"]}},
                    ),
                    {},
                )
            record(
                connection, at, f"customer:{entry.customer_id}", "inbound_opted_out" if entry.channels else "inbound_escalated", "inbound_message", str(message_id),
                {"channel": entry.channel, "intents": entry.intents, "evidence": entry.evidence, "reason": chosen["reason"] if chosen else None,
                 "review_item": item_id, "pending_opt_out": entry.id},
            )
            record(connection, written, "engine", pending_optouts.APPLIED_ACTION, pending_optouts.ENTITY, entry.id,
                   detail | {"inbound_message": message_id, "consent_kept": kept, "review_item": item_id})
            return "revoked" if entry.channels else "queued"

    return pending_optouts.retrying(once, wait=wait)


def _matches(connection: Any, rules: RuleSet, customer_id: str, found: Classification) -> list[_Match]:
    """Every built-in and playbook reason the message gives, most pressing first (built-ins win ties)."""
    matches = [_Match(intent, priority, None, f"built-in: {intent}") for intent, priority, _ in ESCALATIONS if intent in found.intents]
    if POSSIBLE_OPT_OUT in found.intents:
        matches.append(_Match(POSSIBLE_OPT_OUT, POSSIBLE_OPT_OUT_PRIORITY, None, f"built-in: possible opt-out ({found.opt_out.evidence})"))
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
        .where(outbox.c.customer_id == customer_id, outbox.c.status == OutboxStatus.SENT)
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


def revoked_channels(opt_out: OptOut, channel: str) -> frozenset[str]:
    """What an opt-out revokes: the channel it came in on, every channel it names, or all of them."""
    if opt_out.every_channel:
        return frozenset(kind.value for kind in ChannelKind)
    return opt_out.channels | {channel}


_CHANNEL_NAMES = {
    "en": {"sms": "text message (SMS)", "email": "e-mail", "whatsapp": "WhatsApp", "push": "push notification", "webhook": "webhook"},
    "fr": {"sms": "SMS", "email": "e-mail", "whatsapp": "WhatsApp", "push": "notification push", "webhook": "webhook"},
    "es": {"sms": "SMS", "email": "correo electrónico", "whatsapp": "WhatsApp", "push": "notificación push", "webhook": "webhook"},
}
_CONFIRMATIONS = {
    # (every marketing channel is now off, some are still allowed)
    "en": ("{brand}: you are unsubscribed and will get no more marketing messages. Reply HELP for help.",
           "{brand}: you will get no more marketing by {revoked}. You may still get marketing by {allowed}; reply STOPALL to stop everything. Reply HELP for help."),
    "fr": ("{brand} : vous êtes désabonné(e) et ne recevrez plus de messages marketing. Répondez AIDE pour de l'aide.",
           "{brand} : vous ne recevrez plus de marketing par {revoked}. Vous pouvez encore en recevoir par {allowed} ; répondez STOPALL pour tout arrêter."),
    "es": ("{brand}: se ha dado de baja y no recibirá más mensajes de marketing. Responda AYUDA para obtener ayuda.",
           "{brand}: no recibirá más marketing por {revoked}. Aún puede recibirlo por {allowed}; responda STOPALL para detener todo."),
}


def confirmation(playbook: Playbook, revoked: frozenset[str], allowed: list[str], language: str = "en") -> str:
    """The one reply to an opt-out: exactly what was revoked, and what is still allowed if anything is."""
    language = language if language in _CONFIRMATIONS else "en"
    everything, partly = _CONFIRMATIONS[language]
    if not allowed:
        return everything.format(brand=playbook.brand.name)
    names = _CHANNEL_NAMES[language]
    in_playbook = [c.value for c in playbook.channels]
    shown = [c for c in in_playbook if c in revoked] or sorted(revoked)
    return partly.format(brand=playbook.brand.name, revoked=_join(names, shown, language), allowed=_join(names, allowed, language))


def _join(names: dict[str, str], channels: list[str], language: str) -> str:
    words = [names.get(c, c) for c in channels]
    conjunction = {"en": "and", "fr": "et", "es": "y"}[language]
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} {conjunction} {words[-1]}"


def _still_allowed(connection: Any, playbook: Playbook, customer_id: str) -> list[str]:
    """The playbook's channels on which the customer has not revoked marketing."""
    revoked = set(
        connection.execute(
            sa.select(consents.c.channel).where(
                consents.c.customer_id == customer_id, consents.c.purpose == "marketing", consents.c.status == "revoked"
            )
        ).scalars()
    )
    return [c.value for c in playbook.channels if c.value not in revoked]


def confirm_opt_out(
    engine: Engine, playbook: Playbook, item_id: int, reviewer: str, now: datetime, *, channels: frozenset[str] | None = None
) -> tuple[frozenset[str], str]:
    """A person read a possible opt-out and decided it is one: revoke, then close the item.

    Revokes ``channels``, or by default what the reply itself would revoke (its channel and
    those it names), and returns them with the confirmation to send. The consent changes first,
    in its own transaction: if closing the item fails, the customer is still opted out.
    """

    def once() -> tuple[frozenset[str], str]:
        with engine.begin() as connection:
            _bounded_wait(connection)
            row = connection.execute(
                sa.select(inbound_messages.c.id, inbound_messages.c.customer_id, inbound_messages.c.channel, inbound_messages.c.text)
                .join(review_items, review_items.c.inbound_message_id == inbound_messages.c.id)
                .where(review_items.c.id == item_id)
            ).first()
            if row is None:
                raise NotFound(f"review item {item_id} is not a customer's reply", hint="list replies with `legato inbound list`")
            revoked = channels or revoked_channels(detect(row.text), row.channel)
            unknown = sorted(revoked - {kind.value for kind in ChannelKind})
            if unknown:
                raise Invalid(f"unknown channel '{unknown[0]}'", hint=f"channels: {', '.join(kind.value for kind in ChannelKind)}")
            for each in sorted(revoked):
                _revoke(connection, row.customer_id, each, now, source=f"review:{reviewer}")
            reply = confirmation(playbook, revoked, _still_allowed(connection, playbook, row.customer_id), detect(row.text).language)
            record(connection, now, f"reviewer:{reviewer}", "inbound_opted_out", "inbound_message", str(row.id),
                   {"channels": sorted(revoked), "review_item": item_id})
        return revoked, reply

    # Waits and retries like an opt-out reply; if the store still cannot take it the command
    # fails and the item stays open, which keeps marketing to the customer paused.
    revoked, reply = pending_optouts.retrying(once)
    resolve(engine, item_id, reviewer, note=f"opt-out confirmed: {', '.join(sorted(revoked))}", now=now)
    return revoked, reply


@dataclass(frozen=True)
class Unsubscribed:
    message_id: str
    customer_id: str
    channel: str  # the message's channel
    channels: tuple[str, ...] = ()  # what the customer asked to stop: the message's channel, or every channel
    changed: bool = True  # False: marketing there was revoked already; nothing changed now

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "channels": list(self.channels)}


@dataclass(frozen=True)
class UnsubscribeLink:
    """What a verified unsubscribe token names (nothing changed yet)."""

    message_id: str
    customer_id: str
    channel: str


def _refused(what: str = "the unsubscribe link") -> Invalid:
    return Invalid(
        f"{what} is not valid (altered, made up, or signed with a key retired since)",
        hint="use the link exactly as the message gave it, from a recent message; nothing was changed",
    )


def verified_message(connection: Any, token: str, ring: Any, *, what: str = "the unsubscribe link") -> Any:
    """The outbox row (message_id, customer_id, channel) a message token was signed for, or
    :class:`Invalid`: the token was altered, made up, or signed by a key no longer accepted."""
    from legato.deliver.tokens import token_message_id, verify_token

    message_id = token_message_id(token)
    if message_id is None or len(message_id) > 36:
        raise _refused(what)
    row = connection.execute(sa.select(outbox.c.message_id, outbox.c.customer_id, outbox.c.channel).where(outbox.c.message_id == message_id)).first()
    if row is None or not verify_token(token, message_id, row.customer_id, ring):
        raise _refused(what)
    return row


def unsubscribe_link(engine: Engine, token: str) -> UnsubscribeLink:
    """The message and customer a token names, verified, changing nothing (the confirmation page
    a GET on the link shows: a mail scanner that fetches every link unsubscribes nobody)."""
    from legato.deliver.tokens import ring_for

    ring = ring_for(engine)
    with engine.connect() as connection:
        row = verified_message(connection, token, ring)
    return UnsubscribeLink(row.message_id, row.customer_id, row.channel)


def unsubscribe(engine: Engine, token: str, now: datetime, *, every_channel: bool = False) -> Unsubscribed:
    """Honour the unsubscribe link of a message: verify its token, revoke marketing at once on
    the message's channel (``every_channel``: on all of them) and cancel what waits there.

    The token is an HMAC (:mod:`legato.deliver.tokens`) any accepted key signed for the
    message and its customer; a token that fails is refused and changes nothing. A link used
    again changes nothing and answers the same (``changed`` False): a channel whose marketing
    is revoked already is left as it is.
    """
    from legato.deliver.tokens import ring_for

    ring = ring_for(engine)
    everything = tuple(kind.value for kind in ChannelKind)

    def once() -> Unsubscribed:
        with engine.begin() as connection:
            _bounded_wait(connection)
            row = verified_message(connection, token, ring)
            asked = everything if every_channel else (row.channel,)
            revoked = []
            for each in asked:
                on_file = consent_history.stored(connection, row.customer_id, each, consent_history.MARKETING)
                if on_file is not None and on_file.status == consent_history.ConsentStatus.REVOKED.value:
                    continue  # revoked already: the second click is the first one's
                if _revoke(connection, row.customer_id, each, now, source="unsubscribe_link"):
                    revoked.append(each)
            if revoked:
                record(connection, now, f"customer:{row.customer_id}", "unsubscribed", "outbox", str(row.message_id),
                       {"channel": row.channel, "channels": revoked, "via": "unsubscribe link"})
        return Unsubscribed(row.message_id, row.customer_id, row.channel, asked, bool(revoked))

    # Waits and retries like an opt-out reply; if the store still cannot take it the command
    # fails (exit 6) and the link's caller must try again.
    return pending_optouts.retrying(once)


def _revoke(connection: Any, customer_id: str, channel: str, now: datetime, *, source: str) -> bool:
    """Honour an opt-out at once (the legal limit is 10 business days; there is no reason to wait),
    through the one writer of consent statements, dated ``now`` (when the customer said it).
    False when an express consent the customer gave after ``now`` stands: nothing is revoked."""
    outcome = consent_history.revoke(connection, customer_id, channel, now, source=source)
    if outcome is consent_history.Change.KEEP and consent_history.granted(connection, customer_id, channel):
        return False
    _cancel_pending(connection, customer_id, channel)
    return True


def _cancel_pending(connection: Any, customer_id: str, channel: str | None) -> int:
    return outbox_writer.cancel_for_customer(connection, customer_id, channel)
