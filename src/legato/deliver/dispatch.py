"""The dispatcher: send what is due from the outbox, exactly once per message.

A message is rendered when it is sent (so personal data is read fresh), checked for personal
data with the recipient's own address allowed (the variant itself was checked whole when the
agent chose it), written to its channel's transport, and
marked sent in the same transaction that read it. Messages that cannot be rendered, or whose
rendered text a content guardrail blocks, are marked failed with the reason and never sent.
"""

from __future__ import annotations

import base64
import hashlib
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine, bindparam, select, update

from legato.clock import Clock
from legato.deliver.channels import ConsoleTransport, FileTransport, Transport
from legato.deliver.render import CreativeTemplate, RenderError, variant_hash
from legato.guard.contact import in_region, on_suppression_list, region_code
from legato.guard.defaults import guardrails_in_force
from legato.guard.content import ContentChecker, Message, verdict
from legato.guard.quiet_hours import candidate_zones, quiet_between
from legato.playbook.models import Creative, Offer, Playbook
from legato.store.schema import agents, audit_log, consents, customers, decisions, outbox

CHUNK = 5_000


@dataclass
class DispatchReport:
    sent: Counter[str] = field(default_factory=Counter)  # by agent
    failed: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    demoted: list[str] = field(default_factory=list)  # agents a blocking compliance finding demoted


def transports(playbook: Playbook, base_dir: Path) -> dict[str, Transport]:
    made: dict[str, Transport] = {}
    for channel, spec in playbook.channels.items():
        if spec.kind == "file":
            assert spec.path is not None
            made[channel.value] = FileTransport(base_dir / spec.path)
        else:
            made[channel.value] = ConsoleTransport()
    return made


def dispatch_due(
    engine: Engine, playbook: Playbook, clock: Clock, channel_transports: dict[str, Transport]
) -> DispatchReport:
    """Send every pending message whose time has come."""
    now = clock.now()
    report = DispatchReport()
    templates = {c.id: CreativeTemplate(c) for c in playbook.creatives}
    offers = {o.id: o for o in playbook.offers}
    checker = ContentChecker.for_playbook(playbook)
    consent = consents.alias("consent")
    query = (
        select(
            outbox.c.id,
            outbox.c.channel,
            outbox.c.decision_id,
            decisions.c.agent_id,
            decisions.c.creative_id,
            decisions.c.offer_id,
            decisions.c.content_override,
            decisions.c.content_hash,
            decisions.c.approved_by,
            customers.c.id.label("customer_id"),
            customers.c.email,
            customers.c.phone,
            customers.c.attributes,
            customers.c.time_zone,
            customers.c.country,
            customers.c.region,
            consent.c.status.label("consent_status"),
            consent.c.kind.label("consent_kind"),
            consent.c.expires_at.label("consent_expires_at"),
            on_suppression_list().label("do_not_contact"),
        )
        .join(decisions, decisions.c.id == outbox.c.decision_id)
        .join(customers, customers.c.id == outbox.c.customer_id)
        .outerjoin(
            consent,
            sa.and_(consent.c.customer_id == outbox.c.customer_id, consent.c.channel == outbox.c.channel, consent.c.purpose == "marketing"),
        )
        .where(outbox.c.status == "pending", outbox.c.send_at <= now)
        .order_by(outbox.c.send_at, outbox.c.id)
        .limit(CHUNK)
    )
    if engine.dialect.name == "postgresql":
        # Two dispatchers, or a reviewer withdrawing an approval, never work on the same row.
        query = query.with_for_update(skip_locked=True, of=outbox)
    while True:
        with engine.begin() as connection:
            rows = connection.execute(query).all()
            if not rows:
                return report
            by_channel: dict[str, list[dict[str, Any]]] = defaultdict(list)
            sent: list[dict[str, Any]] = []
            failed: list[dict[str, Any]] = []
            later: list[dict[str, Any]] = []
            breaches: dict[str, dict[str, Any]] = {}
            for row in rows:
                try:
                    creative = templates.get(row.creative_id)
                    marketing = creative is None or creative.creative.purpose == "marketing"
                    resume = quiet_until(playbook, row, now) if marketing else None
                    if resume is not None:  # dispatched late into the night: wait for the morning
                        later.append({"o_id": row.id, "resume": resume})
                        continue
                    check_contact_now(playbook, row, now, marketing=marketing)
                    if row.channel not in channel_transports:
                        raise RenderError(f"no transport for channel '{row.channel}' in the playbook")
                    message = _message(row, playbook, templates, offers, checker, now)
                except (RenderError, KeyError) as exc:
                    reason = f"creative '{exc.args[0]}' is no longer in the playbook" if isinstance(exc, KeyError) else str(exc)
                    if isinstance(exc, BlockedContent):
                        breaches.setdefault(row.agent_id, {"message": row.id, "decision": row.decision_id, "rules": exc.rules})
                    failed.append({"o_id": row.id, "d_id": row.decision_id, "error": reason})
                    report.failed[row.agent_id] += 1
                    report.errors.append(f"message {row.id} (decision {row.decision_id}): {reason}")
                    continue
                by_channel[row.channel].append(message)
                sent.append({"o_id": row.id, "d_id": row.decision_id, "error": None})
                report.sent[row.agent_id] += 1
            _mark(connection, sent, "sent", now)
            _mark(connection, failed, "failed", now)
            for agent_id, detail in breaches.items():
                _demote_for_compliance(connection, agent_id, detail, now)
                report.demoted.append(agent_id)
            if later:
                connection.execute(update(outbox).where(outbox.c.id == bindparam("o_id")).values(send_at=bindparam("resume")), later)
            # Transports are written last, inside the transaction: if one fails the marks roll
            # back and the messages stay pending; if the process dies after writing, the file
            # transport recognises the message ids it already holds.
            for channel, messages in by_channel.items():
                channel_transports[channel].send(messages)


class BlockedContent(RenderError):
    """A blocking content finding that reached dispatch: the message stays unsent and the
    agent that chose it loses its autonomy."""

    def __init__(self, rules: list[str]) -> None:
        super().__init__(f"content guardrails blocked the rendered message ({', '.join(rules)})")
        self.rules = rules


def _demote_for_compliance(connection: Any, agent_id: str, detail: dict[str, Any], now: datetime) -> None:
    """Back to stage 0 (Manual) at once, recorded; a person decides when it earns trust again."""
    stage = connection.execute(select(agents.c.trust_stage).where(agents.c.id == agent_id)).scalar()
    if stage is None or stage == 0:
        return
    connection.execute(update(agents).where(agents.c.id == agent_id).values(trust_stage=0, updated_at=now))
    connection.execute(
        sa.insert(audit_log).values(
            at=now, actor="dispatcher", action="compliance_breach", entity="agent", entity_id=agent_id,
            detail={**detail, "from": int(stage), "to": 0},
        )
    )


def check_contact_now(playbook: Playbook, row: Any, now: datetime, *, marketing: bool = True) -> None:
    """Consent (marketing only) and contact point as they are at send time, not at decision time."""
    if marketing:
        _check_consent_now(playbook, row, now)
    point = {"email": row.email, "sms": row.phone, "whatsapp": row.phone}.get(row.channel, True)
    if not point:
        raise RenderError(f"the customer has no {row.channel} contact point at send time; not sent")


def _check_consent_now(playbook: Playbook, row: Any, now: datetime) -> None:
    if row.do_not_contact:
        raise RenderError("the customer is on the do-not-contact list; not sent")
    if row.consent_status == "revoked":
        raise RenderError("the customer revoked consent after the decision; not sent")
    rule = next((r for r in playbook.guardrails.consent if r.channel.value == row.channel and r.purpose.value == "marketing"), None)
    if rule is not None:
        expired = row.consent_expires_at is not None and row.consent_expires_at <= now
        wrong_kind = rule.require == "express" and row.consent_kind != "express"
        if row.consent_status != "granted" or expired or wrong_kind:
            raise RenderError("no valid consent at send time; not sent")


def quiet_until(playbook: Playbook, row: Any, now: datetime) -> datetime | None:
    """When a message due now falls in quiet hours (the dispatcher ran late), the instant it may go."""
    zones = candidate_zones(row.time_zone, row.phone, row.country)
    region = region_code(row.country, row.region)
    resume: datetime | None = None
    for rule in guardrails_in_force(playbook).quiet_hours:
        if rule.channel.value != row.channel or (rule.region and not in_region(region, rule.region)):
            continue
        is_quiet, until = quiet_between(rule.start, rule.end, zones, now)
        if is_quiet:
            resume = until if resume is None else max(resume, until)
    return resume


def customer_context(customer_id: str, email: str | None, phone: str | None, attributes: dict[str, Any] | None) -> dict[str, Any]:
    """What ``{{ customer.* }}`` holds in a template: contact points and every attribute."""
    return {"id": customer_id, "email": email, "phone": phone, **(attributes or {})}


def message_context(playbook: Playbook, customer: dict[str, Any], offer: Offer | None, token: str) -> dict[str, Any]:
    """What a creative's template can use: the customer, the offer, the brand and the opt-out link."""
    return {
        "customer": customer,
        "offer": offer.model_dump(mode="json") if offer else None,
        "brand": {"name": playbook.brand.name, **playbook.brand.legal.model_dump()},
        "unsubscribe_url": unsubscribe_link(playbook, token),
    }


def message_token(message_id: int, customer_id: str) -> str:
    """The per-message token of the unsubscribe link (a preview without an outbox row has none).

    Base32 (RFC 4648: a-z and 2-7), not hex: in hex, one token in a few hundred holds a run of
    13+ digits that passes the Luhn check, and the content guard rightly blocks a message
    that seems to carry a payment card number.
    """
    digest = hashlib.sha256(f"{message_id}:{customer_id}".encode()).digest()
    return base64.b32encode(digest).decode("ascii").lower()[:24]


def edited_creative(creative: Creative, override: dict[str, Any]) -> Creative:
    """The creative with a reviewer's edited parts (``decisions.content_override``) in place."""
    return creative.model_copy(update={part: override[part] for part in ("subject", "title", "body") if part in override})


def _message(
    row: Any, playbook: Playbook, templates: dict[str, CreativeTemplate], offers: dict[str, Offer], checker: ContentChecker, now: datetime
) -> dict[str, Any]:
    creative = templates[row.creative_id]
    if row.content_override:  # a reviewer's edit, approved as it stands: send it, not the creative
        creative = CreativeTemplate(edited_creative(creative.creative, row.content_override))
    elif row.approved_by and row.content_hash != variant_hash(creative.creative, row.offer_id):
        # A person approved other content than the playbook holds now: approval is bound to content.
        raise RenderError(f"the creative '{row.creative_id}' changed after {row.approved_by} approved it; review it again")
    offer = offers.get(row.offer_id) if row.offer_id else None
    token = message_token(row.id, row.customer_id)
    customer = customer_context(row.customer_id, row.email, row.phone, row.attributes)
    rendered = creative.render(message_context(playbook, customer, offer, token))
    message = Message(channel=row.channel, body=rendered.body, subject=rendered.subject, title=rendered.title, purpose=creative.creative.purpose)
    allowed = [value for value in (row.email, row.phone) if value]
    if row.content_override:  # a reviewer's edit was checked whole when saved, but check it whole again
        findings = checker.check(message, offer_id=row.offer_id, allowed_personal=allowed)
    else:  # the variant was checked whole when the agent chose it
        findings = checker.check_personalized(message, allowed_personal=allowed)
    if verdict(findings) == "block":
        raise BlockedContent(sorted({f.rule for f in findings if f.severity == "block"}))
    return {
        "message_id": row.id,
        "decision_id": row.decision_id,
        "agent_id": row.agent_id,
        "channel": row.channel,
        "to": row.email if row.channel == "email" else row.phone if row.channel in ("sms", "whatsapp") else row.customer_id,
        "customer_id": row.customer_id,
        "subject": rendered.subject,
        "title": rendered.title,
        "body": rendered.body,
        "headers": _headers(playbook, row, creative.creative.purpose, token),
        "sent_at": now.isoformat(),
    }


def _headers(playbook: Playbook, row: Any, purpose: str, token: str) -> dict[str, str]:
    """Marketing e-mail carries one-click unsubscribe headers (RFC 8058; Gmail and Yahoo
    require them of bulk senders): the same link as in the body, and the POST marker."""
    if row.channel != "email" or purpose != "marketing":
        return {}
    return {"List-Unsubscribe": f"<{unsubscribe_link(playbook, token)}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}


def unsubscribe_link(playbook: Playbook, token: str) -> str:
    """The one-click opt-out link of one message."""
    return f"{playbook.brand.legal.unsubscribe_url}?t={token}"


def _mark(connection: Any, rows: list[dict[str, Any]], status: str, now: datetime) -> None:
    if not rows:
        return
    connection.execute(
        update(outbox)
        .where(outbox.c.id == bindparam("o_id"))
        .values(status=status, sent_at=now if status == "sent" else None, attempts=outbox.c.attempts + 1, error=bindparam("error")),
        rows,
    )
    connection.execute(
        update(decisions).where(decisions.c.id == bindparam("d_id")).values(status=status),
        [{"d_id": r["d_id"]} for r in rows],
    )
