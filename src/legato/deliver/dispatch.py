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

A channel's ``rate_limit`` is a token bucket in the store (:mod:`legato.store.rate_buckets`)
that every dispatcher takes from before handing the channel its messages; what the bucket
cannot grant within :data:`PACE_FOR` seconds goes back to the outbox, due when tokens come,
without using an attempt. A provider's 429 wait holds the bucket for every dispatcher.

A transport whose provider does not deduplicate (SMTP, SMS) gets the hand-over protocol
instead (:func:`_hand_over`; the rules are :mod:`legato.deliver.outbox`'s): each of its
lanes (connections) sends one message at a time, and before each one the message is marked
handed over in the transaction that records the previous message's result on that lane
(transactions of several lanes are grouped into one commit). A dispatcher killed at any
instant leaves at most one message per open connection marked without a result; the next
run names it in doubt and the channel's ``in_doubt`` setting resends it or holds it.
"""

from __future__ import annotations

import gc
import logging
import random
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, bindparam, select, update
from sqlalchemy.exc import SQLAlchemyError

from legato.clock import Clock
from legato.channels import REGISTRY
from legato.decide.timing import next_open, window_of
from legato.deliver import outbox as outbox_writer
from legato.deliver.channels import ConsoleTransport, FileTransport, Outcome, Transport, deduplicates
from legato.deliver.render import (  # noqa: F401 - re-exported: what a template sees is render's
    RenderError,
    customer_context,
    edited_creative,
    message_context,
    tracked,
    unsubscribe_link,
)
from legato.deliver.tokens import KeyRing, link_signature, message_token, ring_for
from legato.errors import LegatoError
from legato.channels import contact_or_none
from legato.guard.consent import MARKETING
from legato.guard.contact import UNDELIVERABLE, dead_token, dead_token_entry, in_region, region_code, suppress
from legato.guard.standing import explain, standing_columns, standing_joins, standing_reason
from legato.guard.defaults import guardrails_in_force
from legato.guard.message import ContentChanged, MessageChecker, Recipient, Variant
from legato.guard.quiet_hours import candidate_zones, quiet_between
from legato.deliver.secrets import secret
from legato.playbook.channels import ChannelTransport, ConsoleChannel, FcmChannel, FileChannel, SmtpChannel, TwilioChannel, WebhookChannel
from legato.playbook.models import Playbook
from legato.store import rate_buckets
from legato.store.playbook_versions import Versions
from legato.monitor import metrics
from legato.store.schema import customers, decisions, outbox
from legato.store.status import DecisionStatus, OutboxStatus
from legato.trust.agent_state import StageCause, change_stage
from legato.trust.pending_optouts import settle as settle_opt_outs
from legato.trust.ladder import Stage

CHUNK = 5_000
log = logging.getLogger("legato.dispatch")


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
    in_doubt: list[str] = field(default_factory=list)  # messages found in doubt, and what became of each
    in_doubt_held: int = 0  # of those, held for a person (in_doubt: hold)
    bounced: int = 0  # hard bounces: dead, the address listed undeliverable
    by_channel: Counter[tuple[str, str]] = field(default_factory=Counter)  # (channel, sent | retry | dead) -> messages

    def add(self, other: DispatchReport) -> None:
        """Count ``other`` (a later batch of the same run) in this report."""
        for mine, theirs in ((self.sent, other.sent), (self.retry, other.retry), (self.dead, other.dead), (self.late_moved, other.late_moved),
                             (self.late_dropped, other.late_dropped), (self.by_channel, other.by_channel)):
            mine.update(theirs)
        self.errors += other.errors
        self.retry_errors += other.retry_errors
        self.demoted += other.demoted
        self.in_doubt += other.in_doubt
        self.in_doubt_held += other.in_doubt_held
        self.bounced += other.bounced

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
            "by_channel": {c: {r: self.by_channel[(c, r)] for r in ("sent", "retry", "dead")} for c in sorted({c for c, _ in self.by_channel})},
            "errors": self.errors,
            "retry_errors": self.retry_errors,
            "demoted": self.demoted,
            "late": {"moved_to_next_window": sum(self.late_moved.values()), "dropped": sum(self.late_dropped.values())},
            "in_doubt": {"found": len(self.in_doubt), "held": self.in_doubt_held, "messages": self.in_doubt},
            "bounced": self.bounced,
        }


def transports(playbook: Playbook, base_dir: Path) -> dict[str, Transport]:
    """One transport per channel of the playbook, built by its kind; a file that cannot be
    written, or a secret that is missing, fails here (before anything is decided)."""
    return {channel.value: transport_for(channel.value, spec, base_dir, playbook) for channel, spec in playbook.channels.items()}


def transport_for(channel: str, spec: ChannelTransport, base_dir: Path, playbook: Playbook | None = None) -> Transport:
    """The transport of one channel's settings (each kind's module builds its own)."""
    if isinstance(spec, FileChannel):
        file = FileTransport(base_dir / spec.path, channel)
        file.check()  # before anything is decided: an outbox that cannot be written is named here
        return file
    if isinstance(spec, ConsoleChannel):
        return ConsoleTransport()
    if isinstance(spec, TwilioChannel):
        from legato.deliver.twilio import TwilioTransport

        return TwilioTransport(channel, spec)  # a missing auth token fails here, naming its variable
    if isinstance(spec, WebhookChannel):
        from legato.deliver.webhook import WebhookTransport

        key = secret(f"channels.{channel}.secret", env=spec.secret_env, file_env=spec.secret_file_env)
        assert key is not None
        return WebhookTransport(spec.url, key, timeout=spec.timeout, concurrency=spec.concurrency, channel=channel)
    if isinstance(spec, FcmChannel):
        from legato.deliver.fcm import FcmTransport, load_credentials

        path = secret(f"channels.{channel}.credentials_file", env=spec.credentials_file_env)
        assert path is not None
        credentials = load_credentials(Path(path), spec.credentials_file_env, channel, spec.token_uri)
        return FcmTransport(spec.project_id, credentials, base_url=spec.base_url, timeout=spec.timeout, concurrency=spec.concurrency, channel=channel)
    if isinstance(spec, SmtpChannel):
        from legato.deliver.smtp import smtp_transport

        legal = playbook.brand.legal if playbook is not None else None
        return smtp_transport(
            channel, spec, sender_name=legal.sender_name if legal else None, support_contact=legal.support_contact if legal else None,
            base_dir=base_dir, ca_file_at=_placed(playbook, ("channels", channel, "ca_file")) if spec.ca_file else None,
        )  # type: ignore[return-value]
    raise AssertionError(f"no transport for channel kind {spec.kind!r}")  # the playbook's union and this list go together


def _placed(playbook: Playbook | None, path: tuple[str, ...]) -> str:
    """Where a setting is written: ``playbook line N: channels.email.ca_file`` (the field alone
    without the playbook's text)."""
    dotted = ".".join(path)
    if playbook is None:
        return dotted
    from legato.playbook.loader import place_problems, playbook_text
    from legato.playbook.problems import Problem

    placed = place_problems(playbook_text(playbook), [Problem(path, "")])
    return f"playbook line {placed[0].line}: {dotted}" if placed else dotted


def _due_query() -> Any:
    return (
        select(
            outbox.c.id,
            outbox.c.message_id,
            outbox.c.channel,
            outbox.c.decision_id,
            outbox.c.attempts,
            outbox.c.send_at,
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
    in_doubt: list[dict[str, Any]] = field(default_factory=list)  # answers lost after the whole message went
    bounced: list[dict[str, Any]] = field(default_factory=list)  # hard bounces: the address to list undeliverable
    later: list[dict[str, Any]] = field(default_factory=list)
    throttled: list[dict[str, Any]] = field(default_factory=list)  # never handed over: the provider asked to wait
    recorded: set[int] = field(default_factory=set)  # outbox ids whose result a hand-over transaction recorded
    dead_after_retries: list[dict[str, Any]] = field(default_factory=list)
    breaches: dict[str, dict[str, Any]] = field(default_factory=dict)
    late_moved: Counter[str] = field(default_factory=Counter)  # by agent: moved to the next send window
    late_dropped: Counter[str] = field(default_factory=Counter)  # by agent: dropped, the window had passed
    give_up: dict[str, timedelta] = field(default_factory=dict)  # channel -> its give_up_after


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
    stop: Callable[[], bool] | None = None,
    observe: Callable[[DispatchReport], None] | None = None,
) -> DispatchReport:
    """Send every message whose time has come: claim a batch, send it, record each result, again.

    A message failing for a passing reason is tried until it is its channel's
    ``give_up_after`` old (:mod:`legato.deliver.outbox`). ``stop`` is asked before each claim: when
    it answers true, no more is claimed and the report so far is returned (the batch in
    flight was sent and recorded). ``observe`` is told each batch's own report once it is recorded.
    """
    now = clock.now()
    worker = worker or outbox_writer.worker_id()
    report = DispatchReport()
    ring = ring_for(engine)  # read once: the key does not change during a run
    kits = _Kits(playbook)
    offered = {c.id for c in playbook.creatives}, {o.id for o in playbook.offers}
    query = _due_query()
    hold = {channel.value for channel, spec in playbook.channels.items() if spec.in_doubt == "hold"}
    give_up = {channel.value: spec.give_up for channel, spec in playbook.channels.items()}
    while True:
        # An opt-out the store could not take yet (kept in the pending file) is written before
        # each batch, or nothing more is sent (OptOutsWaiting).
        settle_opt_outs(engine)
        if stop is not None and stop():
            return report
        # 1. Claim, in a short transaction of its own.
        with engine.begin() as connection:
            abandoned = outbox_writer.give_up_abandoned(connection, now)
            _decisions_follow(connection, abandoned, DecisionStatus.FAILED)
            outbox_writer.release_dead_holders(connection, now)
            _name_in_doubt(report, outbox_writer.settle_in_doubt(connection, now, sorted(hold)))
            claimed = outbox_writer.claim(connection, worker, now, chunk, lease=lease)
            if not claimed:
                return report
            rows = connection.execute(query.where(outbox.c.id.in_(claimed))).all()
            # A claimed message whose decision or customer is gone cannot be sent; it must not stay claimed.
            vanished = sorted(set(claimed) - {row.id for row in rows})
            if vanished:
                outbox_writer.record_dead(connection, worker, [{"o_id": o, "error": "its decision or customer is no longer in the store"} for o in vanished])
        batch = _Batch(rows={row.id: row for row in rows}, by_message={row.message_id: row for row in rows}, give_up=give_up)
        # 2. Check and render (reads only), then hand each channel its messages: no transaction open.
        with engine.connect() as reading:
            for row in rows:
                _prepare(reading, playbook, row, now, ring, kits, offered, channel_transports, batch)
        for channel, messages in batch.by_channel.items():
            transport = channel_transports[channel]
            # A provider that does not deduplicate gets the hand-over protocol, lane by lane.
            send = None if deduplicates(transport) else (
                lambda part, transport=transport, held=channel in hold: _hand_over(engine, worker, now, rng, transport, part, batch, hold=held)
            )
            _send_paced(engine, channel, _rate_limit(playbook, channel), transport, messages, batch, now, lease, send=send)
        # 3. Record each message's result (those the hand-over did not record already), in another transaction.
        with engine.begin() as connection:
            def rest(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
                return [r for r in rows if r["o_id"] not in batch.recorded]

            batch.dead_after_retries += _record(
                connection, worker, now, rng, batch,
                sent=rest(batch.sent), transient=rest(batch.transient), dead=rest(batch.dead),
                in_doubt=rest(batch.in_doubt), bounced=rest(batch.bounced), throttled=rest(batch.throttled),
            )
            outbox_writer.postpone(connection, worker, batch.later)
            part = DispatchReport()
            for agent_id, detail in batch.breaches.items():
                demote_for_compliance(connection, agent_id, detail, now)
                part.demoted.append(agent_id)
        _count(part, batch, batch.dead_after_retries)
        report.add(part)
        if observe is not None:
            observe(part)


def _record(
    connection: Any,
    worker: str,
    now: datetime,
    rng: random.Random | None,
    batch: _Batch,
    *,
    sent: list[dict[str, Any]],
    transient: list[dict[str, Any]],
    dead: list[dict[str, Any]],
    in_doubt: list[dict[str, Any]],
    bounced: list[dict[str, Any]],
    throttled: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    """Record these results (through the outbox's writer) and make their decisions follow; a
    hard bounce becomes the ``bounced`` event of its decision (:func:`_bounced`), which lists
    the address undeliverable. Returns the transient results that became dead (their last attempt)."""
    outbox_writer.record_sent(connection, worker, sent, now)
    for r in transient:  # each message is tried until its channel's give-up time
        r.setdefault("give_up_after", batch.give_up.get(batch.rows[r["o_id"]].channel, outbox_writer.GIVE_UP_AFTER))
    dead_after_retries = outbox_writer.record_transient(connection, worker, transient, now, rng)
    outbox_writer.record_dead(connection, worker, dead)
    outbox_writer.record_in_doubt(connection, worker, in_doubt, now, rng)
    outbox_writer.postpone(connection, worker, throttled)  # never handed over: waits, its attempt not counted
    if bounced:
        _bounced(connection, batch, bounced, now)
    if sent:
        _decisions_follow(connection, [batch.rows[r["o_id"]].decision_id for r in sent], DecisionStatus.SENT, OutboxStatus.SENT)
    gone = [batch.rows[r["o_id"]].decision_id for r in [*dead, *dead_after_retries]]
    if gone:
        _decisions_follow(connection, gone, DecisionStatus.FAILED, OutboxStatus.DEAD)
    return dead_after_retries


def _bounced(connection: Any, batch: _Batch, bounced: list[dict[str, Any]], now: datetime) -> None:
    """Hard bounces the provider answered while the message was handed over (an SMTP 5xx to
    RCPT TO, a Twilio number-level error, a dead FCM token), each recorded as a report mailed
    back would be: the ``bounced`` event of its decision, through
    :func:`legato.service.deliveries.record` (its one owner: the importer lists the customer's
    address on the channel undeliverable, what waits on the channel is cancelled, audited), in
    the transaction that records the message dead. What the importer cannot list (a push
    token, which is no address of ours; an address the customer changed since) and a bounce
    whose event were refused are listed here through the list's one writer, so the address
    the provider refused is never tried again."""
    from legato.service import deliveries

    for bounce in bounced:
        row = batch.rows[bounce["o_id"]]
        try:
            recorded = deliveries.record(connection, deliveries.Delivery(
                deliveries.Report.BOUNCED, message_id=row.message_id, bounce=deliveries.Bounce.HARD, reason=bounce["reason"], source="dispatcher",
            ), now=now)
        except LegatoError as exc:
            log.warning("the bounce of message %s could not be recorded as an event (%s); its address is listed undeliverable", row.message_id, exc.message)
            recorded = None
        if recorded is None or not recorded.undeliverable:
            suppress(connection, UNDELIVERABLE, bounce["address"], bounce["reason"], now, by="dispatcher")


def _name_in_doubt(report: DispatchReport, found: list[outbox_writer.InDoubt]) -> None:
    for item in found:
        what = "held for a person (in_doubt: hold)" if item.held else "sent again (in_doubt: resend)"
        report.in_doubt.append(
            f"message {item.message_id} (decision {item.decision_id}) on {item.channel}: its dispatcher stopped after handing it over; {what}"
        )
        report.in_doubt_held += item.held


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
        check_contact_now(playbook, row, now, purpose=purpose, template=kit.templates.get(row.creative_id, False))
        _check_still_offered(row, *offered)
        if row.channel not in channel_transports:
            raise RenderError(f"no transport for channel '{row.channel}' in the playbook")
        message = _message(row, kit, now, ring, playbook)
        if message.get("device_token") and dead_token(connection, str(message["device_token"])):
            raise RenderError("FCM reported the customer's device token dead (unregistered or not valid) at an earlier push; "
                              "not sent until the app records a new token")
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


PACE_FOR = 30.0  # seconds a dispatcher waits for a rate-limited channel's tokens per batch; the rest wait their turn in the outbox


def _rate_limit(playbook: Playbook, channel: str) -> float | None:
    spec = playbook.channels.get(channel)  # type: ignore[call-overload]
    return None if spec is None else spec.rate_limit


def _send_paced(
    engine: Engine, channel: str, rate: float | None, transport: Transport, messages: list[dict[str, Any]], batch: _Batch, now: datetime, lease: timedelta,
    *, send: Callable[[list[dict[str, Any]]], None] | None = None,
) -> None:
    """One channel's messages at the pace its bucket allows (:mod:`legato.store.rate_buckets`,
    shared by every worker): each part goes as its tokens are taken, the dispatcher waiting
    for the next ones for up to :data:`PACE_FOR` seconds (well inside its lease); what is left
    then goes back to the outbox, due when the bucket has tokens again, its attempt not
    counted. A provider's wait (a 429's Retry-After) becomes the bucket's hold, so every
    worker waits, not just this one."""
    started = time.monotonic()
    budget = min(PACE_FOR, lease.total_seconds() / 4)
    left = messages
    while left:
        grant = rate_buckets.take(engine, channel, rate, len(left), instant=now.timestamp())
        if grant.granted:
            part, left = left[: grant.granted], left[grant.granted :]
            before = len(batch.transient), len(batch.throttled)
            if send is None:
                _send(transport, part, batch, now)
            else:
                send(part)  # the hand-over protocol (a provider that does not deduplicate)
            asked = [r.get("retry_after") or 0.0 for r in batch.transient[before[0]:]]
            asked += [(r["resume"] - now).total_seconds() for r in batch.throttled[before[1]:]]
            if max(asked, default=0.0) > 0:
                rate_buckets.hold(engine, channel, max(asked), now=now.timestamp())
            continue
        if time.monotonic() - started + grant.wait <= budget:
            time.sleep(grant.wait)
            continue
        # Not now: back to the outbox, due when a token is expected (the next claim takes them in turn).
        resume = now + timedelta(seconds=grant.wait)
        why = f"waiting for channel {channel}'s rate limit" if rate else f"channel {channel}'s provider asked to wait"
        for message in left:
            row = batch.by_message[message["message_id"]]
            batch.throttled.append({"o_id": row.id, "attempts": row.attempts, "resume": resume, "error": why})
        return


def _send(transport: Transport, messages: list[dict[str, Any]], batch: _Batch, now: datetime) -> None:
    """One channel's messages through its transport; each message's result goes to the batch.
    A transport that raises fails its own messages (transiently), nobody else's. A message
    the transport never handed over (the provider asked it to wait) waits the provider's
    ``retry_after`` without using up an attempt; one it tried waits at least that long."""
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
        _take(batch, batch.by_message[outcome.message_id], message, outcome, now, hold=False)
    for key in by_id:
        if key not in answered:
            row = batch.by_message[key]
            batch.transient.append({"o_id": row.id, "attempts": row.attempts, "send_at": row.send_at, "error": "the transport gave no result for it"})


def _take(batch: _Batch, row: Any, message: dict[str, Any], outcome: Outcome, now: datetime, *, hold: bool) -> None:
    """One message's outcome into the batch's results. A message the transport never handed
    over (``attempted`` False: the provider asked it to wait) is postponed by ``retry_after``
    without using up an attempt; one it tried waits at least that long."""
    entry = {"o_id": row.id, "attempts": row.attempts, "send_at": row.send_at}
    if outcome.delivered:
        batch.sent.append({**entry, "provider_id": outcome.provider_id})
    elif outcome.in_doubt:
        what = "held for a person (in_doubt: hold)" if hold else "sent again after the backoff (in_doubt: resend)"
        batch.in_doubt.append({**entry, "hold": hold, "error": f"in doubt: {outcome.error}; {what}"})
    elif outcome.permanent:
        batch.dead.append({**entry, "error": f"the transport refused it: {outcome.error}"})
        field_name = REGISTRY[row.channel].contact_field
        address = contact_or_none(field_name, str(message.get("to") or "")) if outcome.bounced and field_name else None
        if address is None and outcome.bounced and message.get("device_token"):  # push: the device token is dead
            address = dead_token_entry(str(message["device_token"]))
        if address is not None:
            batch.bounced.append({"o_id": row.id, "address": address, "reason": f"hard bounce on {row.channel} (message {row.message_id}): {outcome.error}"})
    elif not outcome.attempted:
        wait = timedelta(seconds=outcome.retry_after) if outcome.retry_after else outbox_writer.BACKOFF_BASE
        batch.throttled.append({**entry, "resume": now + wait, "error": str(outcome.error)})
    else:
        batch.transient.append({**entry, "error": str(outcome.error), "retry_after": outcome.retry_after, "unreachable": outcome.unreachable})


def _hand_over(
    engine: Engine,
    worker: str,
    now: datetime,
    rng: random.Random | None,
    transport: Any,
    messages: list[dict[str, Any]],
    batch: _Batch,
    *,
    hold: bool,
) -> None:
    """One channel's messages through a transport whose provider does not deduplicate, lane
    by lane, each message marked handed over before it goes (see the module docstring). The
    lanes run side by side, one thread each; a store error stops them all and is raised."""
    lanes = list(transport.lanes())[: max(1, len(messages))]
    recorder = _HandOverRecorder(engine, worker, now, rng, batch, hold)
    pending = iter(messages)
    taking = threading.Lock()
    stop = threading.Event()
    failures: list[BaseException] = []

    def next_message() -> dict[str, Any] | None:
        with taking:
            return None if stop.is_set() else next(pending, None)

    def run(lane: Any) -> None:
        previous: tuple[dict[str, Any], Outcome] | None = None
        try:
            while True:
                message = next_message()
                if not recorder.step(previous, message):
                    previous = None
                    if message is None:
                        return
                    continue  # no longer this dispatcher's claim: not handed over
                if message is None:
                    return
                try:
                    outcome = lane.send_one(message)
                except Exception as exc:  # noqa: BLE001 - a lane that raises mid-hand-over: nobody knows what the provider got
                    outcome = Outcome(message["message_id"], error=f"the transport failed while handing it over: {type(exc).__name__}: {exc}", in_doubt=True)
                previous = (message, outcome)
        except BaseException as exc:  # noqa: BLE001 - the store failed: every lane stops, the run raises it
            stop.set()
            failures.append(exc)

    # The cyclic garbage collector stays off while the lanes run: a dispatcher's heap is large
    # (the store's rows, the playbook, the models), and the collections each message's few
    # allocations triggered cost as much as its SMTP dialogue (measured: e-mails/s nearly
    # doubled). Reference counting still frees everything; the collector runs again after.
    collecting = gc.isenabled()
    gc.disable()
    try:
        if len(lanes) == 1:
            run(lanes[0])
        else:
            threads = [threading.Thread(target=run, args=(lane,), name=f"legato-lane-{n}", daemon=True) for n, lane in enumerate(lanes)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
    finally:
        recorder.close()
        if collecting:
            gc.enable()
    if failures:
        raise failures[0]


@dataclass
class _Step:
    previous: tuple[dict[str, Any], Outcome] | None
    message: dict[str, Any] | None
    done: bool = False
    marked: bool = False
    error: BaseException | None = None


class _HandOverRecorder:
    """The hand-over transactions of one channel's lanes: each lane's step (the previous
    message's result, the next message's mark) waits until it is committed; steps that arrive
    while a commit runs go together into the next one (a group commit), so several lanes
    cost one transaction."""

    def __init__(self, engine: Engine, worker: str, now: datetime, rng: random.Random | None, batch: _Batch, hold: bool) -> None:
        self.engine, self.worker, self.now, self.rng, self.batch, self.hold = engine, worker, now, rng, batch, hold
        self._connection: Any = None
        self._ready = threading.Condition()
        self._waiting: list[_Step] = []
        self._busy = False

    def step(self, previous: tuple[dict[str, Any], Outcome] | None, message: dict[str, Any] | None) -> bool:
        """Record ``previous`` and mark ``message`` handed over, durably; True if ``message``
        may go (it was marked: still this dispatcher's claim)."""
        if previous is None and message is None:
            return False
        request = _Step(previous, message)
        with self._ready:
            self._waiting.append(request)
            while not request.done:
                if self._busy:
                    self._ready.wait()
                    continue
                self._busy = True
                todo, self._waiting = self._waiting, []
                self._ready.release()
                try:
                    self._commit(todo)
                except BaseException as exc:  # noqa: BLE001 - each waiting lane gets the store's error
                    for each in todo:
                        each.error = exc
                finally:
                    self._ready.acquire()
                    self._busy = False
                    for each in todo:
                        each.done = True
                    self._ready.notify_all()
        if request.error is not None:
            raise request.error
        return request.marked

    def _commit(self, todo: list[_Step]) -> None:
        batch = self.batch
        part = _Batch(rows=batch.rows, by_message=batch.by_message)
        for each in todo:
            if each.previous is not None:
                message, outcome = each.previous
                _take(part, batch.by_message[message["message_id"]], message, outcome, self.now, hold=self.hold)
        marks = [batch.by_message[each.message["message_id"]].id for each in todo if each.message is not None]
        if self._connection is None:
            self._connection = self.engine.connect()
        with self._connection.begin():
            dead_after = _record(
                self._connection, self.worker, self.now, self.rng, batch,
                sent=part.sent, transient=part.transient, dead=part.dead, in_doubt=part.in_doubt, bounced=part.bounced,
                throttled=part.throttled,
            )
            marked = outbox_writer.hand_over(self._connection, self.worker, marks, self.now)
        # Committed: these results are the batch's, recorded.
        for each in todo:
            if each.message is not None:
                each.marked = batch.by_message[each.message["message_id"]].id in marked
        batch.sent += part.sent
        batch.transient += part.transient
        batch.dead += part.dead
        batch.in_doubt += part.in_doubt
        batch.bounced += part.bounced
        batch.throttled += part.throttled
        batch.dead_after_retries += dead_after
        batch.recorded.update(r["o_id"] for r in [*part.sent, *part.transient, *part.dead, *part.in_doubt, *part.throttled])

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def _count(report: DispatchReport, batch: _Batch, dead_after_retries: list[dict[str, Any]]) -> None:
    gave_up = {r["o_id"] for r in dead_after_retries}
    report.late_moved.update(batch.late_moved)
    report.late_dropped.update(batch.late_dropped)
    for r in batch.sent:
        row = batch.rows[r["o_id"]]
        report.sent[row.agent_id] += 1
        report.by_channel[(row.channel, "sent")] += 1
    for r in [*batch.dead, *dead_after_retries]:
        row = batch.rows[r["o_id"]]
        report.dead[row.agent_id] += 1
        report.by_channel[(row.channel, "dead")] += 1
        report.errors.append(f"message {row.message_id} (decision {row.decision_id}): {r['error']}")
    report.bounced += len(batch.bounced)
    for r in batch.in_doubt:
        row = batch.rows[r["o_id"]]
        report.in_doubt.append(f"message {row.message_id} (decision {row.decision_id}) on {row.channel}: {r['error']}")
        report.in_doubt_held += bool(r["hold"])
    for r in [*batch.transient, *batch.throttled]:
        if r["o_id"] in gave_up:
            continue
        row = batch.rows[r["o_id"]]
        report.retry[row.agent_id] += 1
        report.by_channel[(row.channel, "retry")] += 1
        report.retry_errors.append(f"message {row.message_id} (decision {row.decision_id}), attempt {r['attempts']}: {r['error']}")


def _decisions_follow(connection: Any, decision_ids: list[int], status: DecisionStatus, outbox_status: OutboxStatus | None = None) -> None:
    """The decisions of these messages take the status their message took (sent, or failed
    for a dead message), in the transaction that recorded it: only those whose outbox row
    holds ``outbox_status`` now (a result this dispatcher could no longer record, because
    another one had claimed the message, changes no decision). Each decision that changed is
    counted (``monitor.metrics``) in the same transaction, so a crash cannot count a send
    whose record was rolled back, nor record one without its count."""
    if not decision_ids:
        return
    tally = metrics.Tally()
    if outbox_status is not None and len(decision_ids) <= 64:  # the hand-over's few at a time: statements compiled once
        changing = [
            row
            for d in decision_ids
            for row in connection.execute(_CHANGING, {"d_id": d, "outbox_status": outbox_status, "d_status": status}).all()
        ]
        if changing:
            params = [{"d_id": row.id, "outbox_status": outbox_status, "d_status": status} for row in changing]
            connection.execute(_FOLLOW, params[0] if len(params) == 1 else params)
    else:
        changing = []
        for start in range(0, len(decision_ids), 1_000):
            part = decision_ids[start : start + 1_000]
            where = decisions.c.id.in_(part) & (decisions.c.status != status)
            if outbox_status is not None:
                where = where & decisions.c.id.in_(select(outbox.c.decision_id).where(outbox.c.decision_id.in_(part), outbox.c.status == outbox_status))
            found = connection.execute(select(decisions.c.id, decisions.c.status, *metrics.KEY_COLUMNS).where(where).with_for_update()).all()
            if found:
                connection.execute(update(decisions).where(decisions.c.id.in_([row.id for row in found])).values(status=status))
            changing += found
    for row in changing:
        metrics.count_status_change(tally, metrics.key_of(row), row.status, status)
    metrics.add(connection, tally)


# A decision about to follow its message: not yet in that status, its message in the one given.
_CHANGING = (
    select(decisions.c.id, decisions.c.status, *metrics.KEY_COLUMNS)
    .where(
        decisions.c.id == bindparam("d_id"),
        decisions.c.status != bindparam("d_status"),
        select(outbox.c.id).where(outbox.c.decision_id == bindparam("d_id"), outbox.c.status == bindparam("outbox_status")).exists(),
    )
    .with_for_update()
)
_FOLLOW = update(decisions).where(decisions.c.id == bindparam("d_id")).values(status=bindparam("d_status"))


def resolve_in_doubt(engine: Engine, message_ids: list[str], *, delivered: bool, by: str, reason: str, now: datetime) -> int:
    """A person's answer for messages held in doubt (``in_doubt: hold``): ``delivered`` (they
    reached the customer: sent, the decision too) or not (sent again at the next dispatch).
    Audited with who and why; returns how many messages changed."""
    from legato.store.audit import record

    if not by.strip() or not reason.strip():
        raise LegatoError("a message in doubt is resolved by someone, for a reason", hint="give --by NAME and --reason TEXT")
    with engine.begin() as connection:
        decision_ids = outbox_writer.resolve_in_doubt(connection, message_ids, delivered=delivered, now=now)
        if delivered:
            _decisions_follow(connection, decision_ids, DecisionStatus.SENT, OutboxStatus.SENT)
        for decision_id in decision_ids:
            record(connection, now, by.strip(), "in_doubt_resolved", "decision", str(decision_id), {"delivered": delivered, "reason": reason})
    return len(decision_ids)


def delivery_failed(connection: Any, decision_ids: list[int]) -> None:
    """Sent messages their provider then reported failed (``outbox.record_delivery``): their
    decisions are failed too, in the report's transaction (the dispatcher owns a dispatched
    decision's status; ``service.deliveries`` calls this). Only a decision whose message is
    still sent: one held in doubt waits for a person."""
    _decisions_follow(connection, decision_ids, DecisionStatus.FAILED, OutboxStatus.SENT)


def held_in_doubt(engine: Engine, limit: int = 100) -> list[dict[str, Any]]:
    """Messages held in doubt for a person, oldest first: which, to whom, since when, why."""
    query = (
        select(outbox.c.message_id, outbox.c.decision_id, outbox.c.customer_id, outbox.c.channel, outbox.c.in_doubt_at, outbox.c.error)
        .where(outbox.c.status == OutboxStatus.IN_DOUBT)
        .order_by(outbox.c.in_doubt_at, outbox.c.id)
        .limit(limit)
    )
    with engine.connect() as connection:
        return [
            {"message_id": r.message_id, "decision_id": r.decision_id, "customer_id": r.customer_id, "channel": r.channel,
             "in_doubt_since": r.in_doubt_at.isoformat() if r.in_doubt_at else None, "why": r.error}
            for r in connection.execute(query)
        ]


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


def check_contact_now(playbook: Playbook, row: Any, now: datetime, *, purpose: str = MARKETING, template: bool | None = None) -> None:
    """The suppression list, the contact point, the consent rule and WhatsApp's service
    window (``template``: whether the creative is an approved one) as they stand at send
    time, not at decision time: the very rules the cycle applied when it decided."""
    reason = standing_reason(playbook.guardrails, row, row.channel, purpose, now, template=template)
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
    templates: dict[str, bool]  # creative id -> an approved WhatsApp template (allowed outside the 24-hour window)
    variants: dict[tuple[str, str | None], Variant] = field(default_factory=dict)

    @classmethod
    def of(cls, playbook: Playbook) -> _Kit:
        return cls(playbook, MessageChecker(playbook), {c.id: c.purpose for c in playbook.creatives},
                   {c.id: c.approved_template for c in playbook.creatives})


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


def _message(row: Any, kit: _Kit, now: datetime, ring: KeyRing, current: Playbook | None = None) -> dict[str, Any]:
    """The message of one outbox row, through the one check bound to the decision's content hash;
    opens and clicks tracked as the playbook in force (``current``) says (``brand.tracking``)."""
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
    # Tracking is added after the check: the links it writes are Legato's own, the same for every copy.
    rendered = tracked(current or playbook, row.channel, rendered, token, lambda url: link_signature(row.message_id, url, ring))
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
        "html": rendered.html,
        "headers": _headers(playbook, row, variant.purpose, token),
        "sent_at": now.isoformat(),
        **_device(playbook, row),
    }


def _device(playbook: Playbook, row: Any) -> dict[str, Any]:
    """A push message's device token, from the customer attribute its FCM channel names
    (the registry's push address is the customer; the device is the app's to record)."""
    spec = playbook.channels.get(row.channel)  # type: ignore[call-overload]
    if not isinstance(spec, FcmChannel):
        return {}
    token = (row.attributes or {}).get(spec.token_attribute)
    return {"device_token": str(token) if token not in (None, "") else None}


def _headers(playbook: Playbook, row: Any, purpose: str, token: str) -> dict[str, str]:
    """Marketing e-mail carries one-click unsubscribe headers (RFC 8058; Gmail and Yahoo
    require them of bulk senders): the same link as in the body, and the POST marker."""
    if row.channel != "email" or purpose != "marketing":
        return {}
    return {"List-Unsubscribe": f"<{unsubscribe_link(playbook, token)}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}
