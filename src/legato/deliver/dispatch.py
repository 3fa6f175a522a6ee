"""The dispatcher: send what is due from the outbox, each message once.

Each message is asked the same questions the cycle asked when it was decided, as they stand
at send time: the consent rule (:mod:`legato.guard.consent`), the contact point (the
channel registry, :mod:`legato.channels`), whether a reply of the customer's that may be an
opt-out waits for a person (:mod:`legato.guard.standing`), quiet hours, and the one check of
its content (:mod:`legato.guard.message`), bound to the content hash the decision recorded:
content that changed since is not sent. It is rendered when it is sent (so personal data is
read fresh) from the playbook version its decision was made with
(:mod:`legato.store.playbook_versions`: editing the file later changes no message already
decided; retiring its creative or offer stops it).

The outbox lifecycle (:mod:`legato.deliver.outbox`): a batch of due messages is claimed in
one short transaction (a lease held by this dispatcher's worker id), checked, rendered and
handed to the transports outside any transaction, and each message's result is recorded in
another transaction: sent (with the provider's id), retry (a transient error: due again
after an exponential backoff with jitter) or dead (a permanent error, a message that failed
a check or whose template fails for this customer, or the last attempt; the reason is kept).
The decision follows its message: sent, or failed when the message is dead. One message, or
one channel, failing stops nothing else. A dispatcher killed between the transport's write
and the record leaves its claim to lapse (at once when it ran on the same host); the
message is then claimed again and sent under the same message id, which the transport
recognises, so it is delivered once.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select, update
from sqlalchemy.exc import SQLAlchemyError

from legato.clock import Clock
from legato.channels import REGISTRY
from legato.decide.timing import next_open, window_of
from legato.deliver import outbox as outbox_writer
from legato.deliver.channels import ConsoleTransport, FileTransport, Outcome, Transport
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
    """What one dispatch did, by agent: sent, waiting to be retried, dead (never sent)."""

    sent: Counter[str] = field(default_factory=Counter)
    retry: Counter[str] = field(default_factory=Counter)
    dead: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)  # why each dead message is dead
    retry_errors: list[str] = field(default_factory=list)  # the transient errors of messages that wait
    demoted: list[str] = field(default_factory=list)  # agents a blocking compliance finding demoted
    late_moved: Counter[str] = field(default_factory=Counter)  # due after their send window: moved to the next one
    late_dropped: Counter[str] = field(default_factory=Counter)  # due after their send window: dropped (when_late: drop)

    @property
    def failed(self) -> Counter[str]:
        """The dead messages (the decision's status is "failed")."""
        return self.dead

    def totals(self) -> dict[str, int]:
        return {"sent": sum(self.sent.values()), "retry": sum(self.retry.values()), "dead": sum(self.dead.values())}

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.totals(),
            "by_agent": {a: {"sent": self.sent[a], "retry": self.retry[a], "dead": self.dead[a]} for a in sorted({*self.sent, *self.retry, *self.dead})},
            "errors": self.errors,
            "retry_errors": self.retry_errors,
            "demoted": self.demoted,
            "late": {"moved_to_next_window": sum(self.late_moved.values()), "dropped": sum(self.late_dropped.values())},
        }


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


def _due_query() -> Any:
    return (
        select(
            outbox.c.id,
            outbox.c.message_id,
            outbox.c.channel,
            outbox.c.decision_id,
            outbox.c.attempts,
            decisions.c.agent_id,
            decisions.c.action,
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
        .order_by(outbox.c.send_at, outbox.c.id)
    )


@dataclass
class _Batch:
    """One claimed batch on its way: what goes to which transport, and each message's result."""

    rows: dict[int, Any] = field(default_factory=dict)  # outbox id -> row
    by_message: dict[Any, Any] = field(default_factory=dict)  # message id -> row
    by_channel: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    sent: list[dict[str, Any]] = field(default_factory=list)
    transient: list[dict[str, Any]] = field(default_factory=list)
    dead: list[dict[str, Any]] = field(default_factory=list)
    later: list[dict[str, Any]] = field(default_factory=list)
    breaches: dict[str, dict[str, Any]] = field(default_factory=dict)
    late_moved: Counter[str] = field(default_factory=Counter)  # by agent: moved to the next send window
    late_dropped: Counter[str] = field(default_factory=Counter)  # by agent: dropped, the window had passed


def dispatch_due(
    engine: Engine,
    playbook: Playbook,
    clock: Clock,
    channel_transports: dict[str, Transport],
    *,
    chunk: int = CHUNK,
    lease: timedelta = outbox_writer.LEASE,
    worker: str | None = None,
    rng: random.Random | None = None,
) -> DispatchReport:
    """Send every message whose time has come: claim a batch, send it, record each result, again."""
    now = clock.now()
    worker = worker or outbox_writer.worker_id()
    report = DispatchReport()
    ring = ring_for(engine)  # read once: the key does not change during a run
    kits = _Kits(playbook)
    offered = {c.id for c in playbook.creatives}, {o.id for o in playbook.offers}
    query = _due_query()
    while True:
        # An opt-out the store could not take yet (kept in the pending file) is written before
        # each batch, or nothing more is sent (OptOutsWaiting).
        settle_opt_outs(engine)
        # 1. Claim, in a short transaction of its own.
        with engine.begin() as connection:
            abandoned = outbox_writer.give_up_abandoned(connection, now)
            _decisions_follow(connection, abandoned, DecisionStatus.FAILED)
            outbox_writer.release_dead_holders(connection, now)
            claimed = outbox_writer.claim(connection, worker, now, chunk, lease=lease)
            if not claimed:
                return report
            rows = connection.execute(query.where(outbox.c.id.in_(claimed))).all()
            # A claimed message whose decision or customer is gone cannot be sent; it must not stay claimed.
            vanished = sorted(set(claimed) - {row.id for row in rows})
            if vanished:
                outbox_writer.record_dead(connection, worker, [{"o_id": o, "error": "its decision or customer is no longer in the store"} for o in vanished])
        batch = _Batch(rows={row.id: row for row in rows}, by_message={row.message_id: row for row in rows})
        # 2. Check and render (reads only), then hand each channel its messages: no transaction open.
        with engine.connect() as reading:
            for row in rows:
                _prepare(reading, playbook, row, now, ring, kits, offered, channel_transports, batch)
        for channel, messages in batch.by_channel.items():
            _send(channel_transports[channel], messages, batch)
        # 3. Record each message's result, in another transaction.
        with engine.begin() as connection:
            outbox_writer.record_sent(connection, worker, batch.sent, now)
            dead_after_retries = outbox_writer.record_transient(connection, worker, batch.transient, now, rng)
            outbox_writer.record_dead(connection, worker, batch.dead)
            outbox_writer.postpone(connection, worker, batch.later)
            _decisions_follow(connection, [batch.rows[r["o_id"]].decision_id for r in batch.sent], DecisionStatus.SENT, OutboxStatus.SENT)
            gone = [batch.rows[r["o_id"]].decision_id for r in [*batch.dead, *dead_after_retries]]
            _decisions_follow(connection, gone, DecisionStatus.FAILED, OutboxStatus.DEAD)
            for agent_id, detail in batch.breaches.items():
                demote_for_compliance(connection, agent_id, detail, now)
                report.demoted.append(agent_id)
        _count(report, batch, dead_after_retries)


def _prepare(
    connection: Any,
    playbook: Playbook,
    row: Any,
    now: datetime,
    ring: KeyRing,
    kits: _Kits,
    offered: tuple[set[str], set[str]],
    channel_transports: dict[str, Transport],
    batch: _Batch,
) -> None:
    """Ask one claimed message the send-time questions and render it; a message that fails
    any of them is dead with the reason, and only it."""
    try:
        # The message is the decision's: rendered from the playbook version it was made
        # with. When and whether it may go is decided by the rules in force now.
        kit = kits.of(connection, row.playbook_version_id)
        purpose = kit.purposes.get(row.creative_id, MARKETING)
        # When it may go: after quiet hours (dispatched late into the night), and inside the
        # send window its decision chose (the run came late, an approval came after it).
        quiet = quiet_until(playbook, row, now) if purpose == MARKETING else None
        late = window_passed(playbook, row, quiet or now) if purpose == MARKETING else None
        if late is not None and late[0].actions.when_late == "drop":
            batch.dead.append({"o_id": row.id, "error": f"its send window ({window_of(row.action).label} local) had passed; the agent drops late sends"})  # type: ignore[union-attr]
            batch.late_dropped[row.agent_id] += 1
            return
        if late is not None or quiet is not None:
            batch.later.append({"o_id": row.id, "resume": late[1] if late is not None else quiet})
            if late is not None:
                batch.late_moved[row.agent_id] += 1
            return
        check_contact_now(playbook, row, now, purpose=purpose)
        _check_still_offered(row, *offered)
        if row.channel not in channel_transports:
            raise RenderError(f"no transport for channel '{row.channel}' in the playbook")
        message = _message(row, kit, now, ring)
    except (RenderError, LegatoError) as exc:
        reason = str(exc) if isinstance(exc, RenderError) else exc.message
        if isinstance(exc, BlockedContent):
            batch.breaches.setdefault(row.agent_id, {"message": row.message_id, "decision": row.decision_id, "rules": exc.rules})
        batch.dead.append({"o_id": row.id, "error": reason})
        return
    except SQLAlchemyError:
        raise  # the store, not the message: this run stops, its claims lapse and are taken again
    except Exception as exc:  # noqa: BLE001 - one customer's message must not stop everyone's
        batch.dead.append({"o_id": row.id, "error": f"the message could not be prepared: {type(exc).__name__}: {exc}"})
        return
    batch.by_channel[row.channel].append(message)


def _send(transport: Transport, messages: list[dict[str, Any]], batch: _Batch) -> None:
    """One channel's messages through its transport; each message's result goes to the batch.
    A transport that raises fails its own messages (transiently), nobody else's."""
    by_id = {m["message_id"]: m for m in messages}
    try:
        outcomes: list[Outcome] = list(transport.send(messages))
    except Exception as exc:  # noqa: BLE001 - a transport's failure is a result, not the end of dispatch
        why = exc.message if isinstance(exc, LegatoError) else f"{type(exc).__name__}: {exc}"
        outcomes = [Outcome(key, error=why) for key in by_id]
    answered = set()
    for outcome in outcomes:
        message = by_id.get(outcome.message_id)
        if message is None or outcome.message_id in answered:
            continue
        answered.add(outcome.message_id)
        row = batch.by_message[outcome.message_id]
        entry = {"o_id": row.id, "attempts": row.attempts}
        if outcome.delivered:
            batch.sent.append({**entry, "provider_id": outcome.provider_id})
        elif outcome.permanent:
            batch.dead.append({**entry, "error": f"the transport refused it: {outcome.error}"})
        else:
            batch.transient.append({**entry, "error": str(outcome.error)})
    for key in by_id:
        if key not in answered:
            row = batch.by_message[key]
            batch.transient.append({"o_id": row.id, "attempts": row.attempts, "error": "the transport gave no result for it"})


def _count(report: DispatchReport, batch: _Batch, dead_after_retries: list[dict[str, Any]]) -> None:
    gave_up = {r["o_id"] for r in dead_after_retries}
    report.late_moved.update(batch.late_moved)
    report.late_dropped.update(batch.late_dropped)
    for r in batch.sent:
        report.sent[batch.rows[r["o_id"]].agent_id] += 1
    for r in [*batch.dead, *dead_after_retries]:
        row = batch.rows[r["o_id"]]
        report.dead[row.agent_id] += 1
        report.errors.append(f"message {row.message_id} (decision {row.decision_id}): {r['error']}")
    for r in batch.transient:
        if r["o_id"] in gave_up:
            continue
        row = batch.rows[r["o_id"]]
        report.retry[row.agent_id] += 1
        report.retry_errors.append(f"message {row.message_id} (decision {row.decision_id}), attempt {r['attempts']}: {r['error']}")


def _decisions_follow(connection: Any, decision_ids: list[int], status: DecisionStatus, outbox_status: OutboxStatus | None = None) -> None:
    """The decisions of these messages take the status their message took (sent, or failed
    for a dead message), in the transaction that recorded it: only those whose outbox row
    holds ``outbox_status`` now (a result this dispatcher could no longer record, because
    another one had claimed the message, changes no decision)."""
    if not decision_ids:
        return
    for start in range(0, len(decision_ids), 1_000):
        part = decision_ids[start : start + 1_000]
        where = decisions.c.id.in_(part)
        if outbox_status is not None:
            where = where & decisions.c.id.in_(select(outbox.c.decision_id).where(outbox.c.decision_id.in_(part), outbox.c.status == outbox_status))
        connection.execute(update(decisions).where(where).values(status=status))


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


def window_passed(playbook: Playbook, row: Any, now: datetime) -> tuple[Any, datetime] | None:
    """A marketing message due now outside the send window its decision chose (the run came
    late, an approval came after the window): its agent and when that window opens next.
    None while the window is open, or when the decision names no window or its agent is gone."""
    agent = next((a for a in playbook.agents if a.id == row.agent_id), None)
    window = window_of(row.action) if agent is not None and row.action else None
    if window is None:
        return None
    opens = next_open(window, row.time_zone, now)
    return None if opens is None else (agent, opens)


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
