"""The dispatcher: send what is due from the outbox, exactly once per message.

Each message is asked the same questions the cycle asked when it was decided, as they stand
at send time: the consent rule (:mod:`legato.guard.consent`), the contact point (the
channel registry, :mod:`legato.channels`), quiet hours, and the one check of its content
(:mod:`legato.guard.message`), bound to the content hash the decision recorded: content
that changed since is not sent. It is rendered when it is sent (so personal data is read
fresh) from the playbook version its decision was made with
(:mod:`legato.store.playbook_versions`: editing the file later changes no message already
decided; retiring its creative or offer stops it), written to its channel's transport, and
marked sent in the same transaction that read it. Messages that fail any of these are marked failed with the reason and never sent.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, bindparam, select, update

from legato.clock import Clock
from legato.channels import REGISTRY
from legato.deliver import outbox as outbox_writer
from legato.deliver.channels import ConsoleTransport, FileTransport, Transport
from legato.deliver.render import (  # noqa: F401 - re-exported: what a template sees is render's
    RenderError,
    customer_context,
    edited_creative,
    message_context,
    unsubscribe_link,
)
from legato.deliver.tokens import KeyRing, message_token, ring_for
from legato.errors import LegatoError
from legato.guard.consent import MARKETING
from legato.guard.contact import in_region, region_code
from legato.guard.standing import explain, standing_columns, standing_joins, standing_reason
from legato.guard.defaults import guardrails_in_force
from legato.guard.message import ContentChanged, MessageChecker, Recipient, Variant
from legato.guard.quiet_hours import candidate_zones, quiet_between
from legato.playbook.models import Playbook
from legato.store.playbook_versions import Versions
from legato.store.schema import customers, decisions, outbox
from legato.store.status import DecisionStatus, OutboxStatus
from legato.trust.agent_state import StageCause, change_stage
from legato.trust.pending_optouts import settle as settle_opt_outs
from legato.trust.ladder import Stage

CHUNK = 5_000


@dataclass
class DispatchReport:
    sent: Counter[str] = field(default_factory=Counter)  # by agent
    failed: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    demoted: list[str] = field(default_factory=list)  # agents a blocking compliance finding demoted


def transports(playbook: Playbook, base_dir: Path) -> dict[str, Transport]:
    """One transport per channel of the playbook; a file that cannot be written fails here (OutboxUnwritable)."""
    made: dict[str, Transport] = {}
    for channel, spec in playbook.channels.items():
        if spec.kind == "file":
            assert spec.path is not None
            file = FileTransport(base_dir / spec.path, channel.value)
            file.check()  # before anything is decided: an outbox that cannot be written is named here
            made[channel.value] = file
        else:
            made[channel.value] = ConsoleTransport()
    return made


def dispatch_due(
    engine: Engine, playbook: Playbook, clock: Clock, channel_transports: dict[str, Transport]
) -> DispatchReport:
    """Send every pending message whose time has come."""
    now = clock.now()
    report = DispatchReport()
    ring = ring_for(engine)  # read once: the key does not change during a run
    kits = _Kits(playbook)
    offered = {c.id for c in playbook.creatives}, {o.id for o in playbook.offers}
    query = (
        select(
            outbox.c.id,
            outbox.c.message_id,
            outbox.c.channel,
            outbox.c.decision_id,
            decisions.c.agent_id,
            decisions.c.creative_id,
            decisions.c.offer_id,
            decisions.c.content_override,
            decisions.c.content_hash,
            decisions.c.approved_by,
            decisions.c.playbook_version_id,
            customers.c.id.label("customer_id"),
            customers.c.email,
            customers.c.phone,
            customers.c.attributes,
            customers.c.time_zone,
            customers.c.country,
            customers.c.region,
            *standing_columns(outbox.c.channel),
        )
        .select_from(standing_joins(outbox.join(decisions, decisions.c.id == outbox.c.decision_id).join(customers, customers.c.id == outbox.c.customer_id), outbox.c.channel))
        .where(outbox.c.status == OutboxStatus.PENDING, outbox.c.send_at <= now)
        .order_by(outbox.c.send_at, outbox.c.id)
        .limit(CHUNK)
    )
    if engine.dialect.name == "postgresql":
        # Two dispatchers, or a reviewer withdrawing an approval, never work on the same row.
        query = query.with_for_update(skip_locked=True, of=outbox)
    while True:
        # An opt-out the store could not take yet (kept in the pending file) is written before
        # each batch, or nothing more is sent (OptOutsWaiting).
        settle_opt_outs(engine)
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
                    # The message is the decision's: rendered from the playbook version it was
                    # made with. When and whether it may go is decided by the rules in force now.
                    kit = kits.of(connection, row.playbook_version_id)
                    purpose = kit.purposes.get(row.creative_id, MARKETING)
                    resume = quiet_until(playbook, row, now) if purpose == MARKETING else None
                    if resume is not None:  # dispatched late into the night: wait for the morning
                        later.append({"o_id": row.id, "resume": resume})
                        continue
                    check_contact_now(playbook, row, now, purpose=purpose)
                    _check_still_offered(row, *offered)
                    if row.channel not in channel_transports:
                        raise RenderError(f"no transport for channel '{row.channel}' in the playbook")
                    message = _message(row, kit, now, ring)
                except (RenderError, LegatoError) as exc:
                    reason = str(exc) if isinstance(exc, RenderError) else exc.message
                    if isinstance(exc, BlockedContent):
                        breaches.setdefault(row.agent_id, {"message": row.message_id, "decision": row.decision_id, "rules": exc.rules})
                    failed.append({"o_id": row.id, "d_id": row.decision_id, "error": reason})
                    report.failed[row.agent_id] += 1
                    report.errors.append(f"message {row.message_id} (decision {row.decision_id}): {reason}")
                    continue
                by_channel[row.channel].append(message)
                sent.append({"o_id": row.id, "d_id": row.decision_id, "error": None})
                report.sent[row.agent_id] += 1
            _mark(connection, sent, OutboxStatus.SENT, now)
            _mark(connection, failed, OutboxStatus.FAILED, now)
            for agent_id, detail in breaches.items():
                demote_for_compliance(connection, agent_id, detail, now)
                report.demoted.append(agent_id)
            outbox_writer.postpone(connection, later)
            # Transports are written last, inside the transaction: if one fails the marks roll
            # back and the messages stay pending; if the process dies after writing, the file
            # transport recognises the message ids it already holds (UUIDs: no other database's
            # messages share them).
            for channel, messages in by_channel.items():
                channel_transports[channel].send(messages)


class BlockedContent(RenderError):
    """A blocking content finding that reached dispatch: the message stays unsent and the
    agent that chose it loses its autonomy."""

    def __init__(self, rules: list[str]) -> None:
        super().__init__(f"content guardrails blocked the rendered message ({', '.join(rules)})")
        self.rules = rules


def demote_for_compliance(connection: Any, agent_id: str, detail: dict[str, Any], now: datetime) -> None:
    """Back to stage 0 (Manual) at once, recorded; a person decides when it earns trust again."""
    reason = f"blocking content at send time: {', '.join(detail.get('rules', [])) or 'content guardrails'}"
    change_stage(connection, agent_id, Stage.MANUAL, cause=StageCause.COMPLIANCE, actor="dispatcher", reason=reason, now=now, detail=detail)


def _check_still_offered(row: Any, creatives: set[str], offers: set[str]) -> None:
    """A creative or offer the marketer retired from the playbook since the decision stops its
    pending messages (what a message says comes from the decision's version; whether it may
    still go out is the playbook's of today)."""
    if row.creative_id not in creatives:
        raise RenderError(f"creative '{row.creative_id}' is no longer in the playbook; not sent")
    if row.offer_id is not None and row.offer_id not in offers:
        raise RenderError(f"offer '{row.offer_id}' is no longer in the playbook; not sent")


def check_contact_now(playbook: Playbook, row: Any, now: datetime, *, purpose: str = MARKETING) -> None:
    """The suppression list, the contact point and the consent rule as they stand at send
    time, not at decision time: the very rules the cycle applied when it decided."""
    reason = standing_reason(playbook.guardrails, row, row.channel, purpose, now)
    if reason is not None:
        raise RenderError(f"{explain(reason)} at send time ({reason}); not sent")


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


@dataclass
class _Kit:
    """The one check of a message for one playbook version, and what it has built so far."""

    playbook: Playbook
    checker: MessageChecker
    purposes: dict[str, str]
    variants: dict[tuple[str, str | None], Variant] = field(default_factory=dict)

    @classmethod
    def of(cls, playbook: Playbook) -> _Kit:
        return cls(playbook, MessageChecker(playbook), {c.id: c.purpose for c in playbook.creatives})


class _Kits:
    """One kit per playbook version met in a dispatch run; decisions made before versions
    were stored (no version) are rendered from the playbook given."""

    def __init__(self, given: Playbook) -> None:
        self._given = given
        self._versions = Versions()
        self._kits: dict[int | None, _Kit] = {}

    def of(self, connection: Any, version_id: int | None) -> _Kit:
        kit = self._kits.get(version_id)
        if kit is None:
            try:
                source = self._versions.for_decision(connection, version_id, self._given)
            except LegatoError as exc:  # that message fails with the reason; the others go on
                raise RenderError(exc.message) from None
            assert source is not None
            kit = self._kits[version_id] = _Kit.of(source)
        return kit


def _message(row: Any, kit: _Kit, now: datetime, ring: KeyRing) -> dict[str, Any]:
    """The message of one outbox row, through the one check bound to the decision's content hash."""
    playbook, checker, variants = kit.playbook, kit.checker, kit.variants
    if row.content_override:  # a reviewer's edit, approved as it stands: send it, not the creative
        variant = checker.variant(row.creative_id, row.offer_id, row.content_override)
    else:
        key = (row.creative_id, row.offer_id)
        variant = variants.get(key) or variants.setdefault(key, checker.variant(row.creative_id, row.offer_id))
    token = message_token(row.message_id, row.customer_id, ring)
    recipient = Recipient(row.customer_id, row.email, row.phone, row.attributes)
    try:
        check = checker.check(variant, expected_hash=row.content_hash, recipient=recipient, token=token)
    except ContentChanged:
        # Content nobody decided on or approved is neither checked nor sent: the check is bound to the hash.
        who = f"{row.approved_by} approved it; review it again" if row.approved_by else "the decision; not sent, the agent decides again"
        raise RenderError(f"the creative '{row.creative_id}' changed after {who}") from None
    if check.render_error is not None:
        raise RenderError(check.render_error)
    if check.verdict == "block":
        raise BlockedContent(check.blocking_rules)
    rendered = check.rendered
    assert rendered is not None
    return {
        "message_id": row.message_id,  # a UUID: the provider's idempotency key
        "decision_id": row.decision_id,
        "agent_id": row.agent_id,
        "channel": row.channel,
        "to": REGISTRY[row.channel].address(row.customer_id, row.email, row.phone),
        "customer_id": row.customer_id,
        "subject": rendered.subject,
        "title": rendered.title,
        "body": rendered.body,
        "headers": _headers(playbook, row, variant.purpose, token),
        "sent_at": now.isoformat(),
    }


def _headers(playbook: Playbook, row: Any, purpose: str, token: str) -> dict[str, str]:
    """Marketing e-mail carries one-click unsubscribe headers (RFC 8058; Gmail and Yahoo
    require them of bulk senders): the same link as in the body, and the POST marker."""
    if row.channel != "email" or purpose != "marketing":
        return {}
    return {"List-Unsubscribe": f"<{unsubscribe_link(playbook, token)}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}


def _mark(connection: Any, rows: list[dict[str, Any]], status: OutboxStatus, now: datetime) -> None:
    """The outbox row and its decision take the same status (sent or failed): one spelling in both."""
    if not rows:
        return
    outbox_writer.record_results(connection, rows, status, now)
    connection.execute(
        update(decisions).where(decisions.c.id == bindparam("d_id")).values(status=DecisionStatus(status.value)),
        [{"d_id": r["d_id"]} for r in rows],
    )
