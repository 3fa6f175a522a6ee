"""The outbox: the one writer of outbox rows.

Every row is created here, and every change of its status too: the cycle schedules what its
agents decided to send, an approval schedules (or schedules again) what a person approved,
a withdrawal, rejection, expiry or opt-out cancels what is still pending, and the dispatcher
records what it sent, what failed and what waits for the end of quiet hours. Nothing else
inserts or updates ``outbox``; ``tests/deliver/test_outbox.py`` holds the code to that.

**Message ids.** Each row gets a ``message_id``, a UUID unique across every database and
every run: it is the id a transport and a provider see, and the idempotency key a provider
receives, so a message is recognised as already delivered only if it is the same message,
never because another database numbered its own messages the same way (integer row ids
restart with every database). The UUID is of version 8 (RFC 9562's custom layout): 74 random
bits drawn once per write, then the decision's id in the last 48 bits. Unique within a
database through the decision id and across databases through the random part, it costs the
database one ``printf`` per row instead of formatting 16 random bytes (most of the price of
writing a page of outbox rows), and the rows of one write land side by side in the unique
index instead of at random places. A row keeps its message id for its whole life: a
cancelled message approved again is the same message, which was never sent.
"""

from __future__ import annotations

import functools
import os
import random
import socket
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from legato.clock import as_utc
from legato.store.schema import decisions, outbox
from legato.store.status import DeliveryStatus, OutboxStatus

PENDING, CLAIMED, SENT, RETRY, DEAD, CANCELLED, IN_DOUBT = (
    OutboxStatus.PENDING, OutboxStatus.CLAIMED, OutboxStatus.SENT, OutboxStatus.RETRY, OutboxStatus.DEAD, OutboxStatus.CANCELLED,
    OutboxStatus.IN_DOUBT,
)
# A message that may still be stopped: nobody is sending it right now.
CANCELLABLE = (PENDING, RETRY)
# A message on its way or gone (a message in doubt may have gone): what frequency caps count.
OUTGOING = (PENDING, CLAIMED, RETRY, SENT, IN_DOUBT)

LEASE = timedelta(minutes=10)  # how long a claim holds before another dispatcher may take the message
MAX_ATTEMPTS = 8  # the attempt after which a message whose every dispatcher died is dead (give_up_abandoned)
# How long after its send time a message that keeps failing for a passing reason is tried:
# its last attempt is at this age at the latest, and a transient error then makes it dead.
# `legato worker` and `legato dispatch` take --give-up-after; dispatch_due passes it here.
GIVE_UP_AFTER = timedelta(hours=24)
BACKOFF_BASE = timedelta(minutes=1)  # the first retry waits about this long, each next one twice as long
BACKOFF_CAP = timedelta(hours=6)
# A server that cannot be reached (refused, timed out, restarting: nothing about the message)
# is tried again after at most a quarter of the time the message has waited since its send
# time, or this floor when that is shorter (jittered below it, as always). The plain schedule
# (30-60 s, then 1-2 min, ...) kept the mail of a relay restarted for a minute back up to two
# minutes more, 70 s on average (the wait doubles past the outage); capped, what waits goes
# within the floor of its return, and a day-long outage still costs only about fifty attempts
# a message (simulated: 48 to 53).
RECONNECT_FLOOR = timedelta(seconds=10)


def random_prefix() -> str:
    """The random first 80 bits of a write's message ids, as UUID text up to the last group:
    version 8, the RFC 9562 variant, 74 random bits."""
    digits = uuid.uuid4().hex
    variant = "89ab"[int(digits[16], 16) & 3]
    return f"{digits[0:8]}-{digits[8:12]}-8{digits[13:16]}-{variant}{digits[17:20]}-"


def message_id(prefix: str, decision_id: int) -> str:
    """The message id of a decision's message, in a write whose random part is ``prefix``."""
    return f"{prefix}{decision_id:012x}"


class hex12(FunctionElement[str]):  # noqa: N801 - reads as the SQL it compiles to
    """An integer column as 12 lower-case hexadecimal digits, zero-padded (the last group of
    a message id, from the decision id)."""

    type = sa.String()
    inherit_cache = True


@compiles(hex12, "postgresql")
def _hex12_postgresql(element: hex12, compiler: Any, **kw: Any) -> str:
    return f"lpad(to_hex({compiler.process(list(element.clauses)[0], **kw)}), 12, '0')"


@compiles(hex12, "sqlite")
def _hex12_sqlite(element: hex12, compiler: Any, **kw: Any) -> str:
    return f"printf('%012x', {compiler.process(list(element.clauses)[0], **kw)})"


# --- creating rows --------------------------------------------------------------------


def schedule_decided(connection: Connection, which: sa.ColumnElement[bool]) -> int:
    """One pending message for every decision ``which`` selects, at the decision's send time.

    The cycle calls this once per page with the page's executed decisions; the rows are made
    by one ``INSERT ... SELECT``, their message ids from one random prefix and each decision's
    id. Returns how many.
    """
    result = connection.execute(
        sa.insert(outbox).from_select(
            ["message_id", "decision_id", "customer_id", "channel", "send_at", "status", "attempts"],
            sa.select(
                sa.literal(random_prefix(), sa.String()) + hex12(decisions.c.id),
                decisions.c.id,
                decisions.c.customer_id,
                decisions.c.channel,
                decisions.c.send_at,
                sa.literal(PENDING),
                sa.literal(0),
            ).where(which),
        )
    )
    return int(result.rowcount or 0)


@dataclass(frozen=True)
class Scheduled:
    """What :func:`schedule_message` did: the message's id and whether it was new."""

    message_id: str
    new: bool


def schedule_message(connection: Connection, decision_id: int, customer_id: str, channel: str, send_at: datetime) -> Scheduled:
    """Schedule one decision's message at ``send_at`` (a person approved it).

    A decision has at most one message. If an approval was withdrawn earlier its cancelled
    row is made pending again with the same message id (it was never sent); otherwise a new
    row is created.
    """
    existing = connection.execute(
        sa.select(outbox.c.message_id, outbox.c.status).where(outbox.c.decision_id == decision_id)
    ).first()
    if existing is None:
        new_id = message_id(random_prefix(), decision_id)
        connection.execute(
            sa.insert(outbox).values(
                message_id=new_id, decision_id=decision_id, customer_id=customer_id, channel=channel,
                send_at=send_at, status=PENDING, attempts=0,
            )
        )
        return Scheduled(new_id, new=True)
    if existing.status != CANCELLED:
        raise ValueError(f"decision {decision_id} already has a {existing.status} message; it cannot be scheduled again")
    connection.execute(
        sa.update(outbox)
        .where(outbox.c.decision_id == decision_id, outbox.c.status == CANCELLED)
        .values(status=PENDING, send_at=send_at, sent_at=None, error=None, claimed_by=None, lease_expires_at=None, next_attempt_at=None)
    )
    return Scheduled(existing.message_id, new=False)


# --- cancelling ------------------------------------------------------------------------


def cancel_for_decisions(connection: Connection, decision_ids: Sequence[int]) -> int:
    """Cancel the messages of these decisions that nobody is sending (pending or waiting to be
    retried); returns how many were cancelled. A claimed message is on its way: it stays."""
    if not decision_ids:
        return 0
    cancelled = 0
    for start in range(0, len(decision_ids), 1_000):
        part = list(decision_ids[start : start + 1_000])
        where = outbox.c.decision_id == part[0] if len(part) == 1 else outbox.c.decision_id.in_(part)
        cancelled += int(connection.execute(sa.update(outbox).where(where, outbox.c.status.in_(CANCELLABLE)).values(status=CANCELLED)).rowcount or 0)
    return cancelled


def cancel_for_customer(connection: Connection, customer_id: str, channel: str | None = None) -> int:
    """Cancel a customer's messages that nobody is sending (on one channel, or on all); returns how many."""
    where = (outbox.c.customer_id == customer_id) & outbox.c.status.in_(CANCELLABLE)
    if channel is not None:
        where = where & (outbox.c.channel == channel)
    return int(connection.execute(sa.update(outbox).where(where).values(status=CANCELLED)).rowcount or 0)


# --- the dispatcher: claims, then one result per message -------------------------------
#
# A dispatcher claims a batch of due messages in one short transaction (status claimed, its
# worker id, a lease), sends them outside any transaction, and records each message's
# result in another transaction: sent, retry (with backoff) or dead. A dispatcher that dies
# holding a claim leaves it to lapse at ``lease_expires_at``; the next dispatcher claims the
# message again and sends it under the same message id, which the transport or provider
# recognises (the idempotency key). A result is recorded only while the claim is still the
# recording dispatcher's own, so a dispatcher that outlived its lease records nothing over
# the one that took the message from it.


def worker_id() -> str:
    """A dispatcher's id: host, process and a random part (host and process let a dispatcher
    on the same host see that the holder of a claim has died)."""
    return f"{socket.gethostname()[:80]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def holder_is_dead(worker: str) -> bool:
    """Whether ``worker`` is a dispatcher process of this host that no longer runs."""
    host, _, rest = worker.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname()[:80] or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # it exists, owned by someone else
        return False
    return False


def due(now: datetime) -> sa.ColumnElement[bool]:
    """A message a dispatcher may claim now: pending and due, due again after a transient
    error, or claimed by a dispatcher whose lease lapsed before it handed the message over (one
    it was handing over is in doubt: :func:`settle_in_doubt` says so first, never a claim)."""
    return sa.or_(
        sa.and_(outbox.c.status == PENDING, outbox.c.send_at <= now),
        sa.and_(outbox.c.status == RETRY, outbox.c.next_attempt_at <= now),
        sa.and_(outbox.c.status == CLAIMED, outbox.c.lease_expires_at <= now, outbox.c.handed_over_at.is_(None)),
    )


def release_dead_holders(connection: Connection, now: datetime) -> int:
    """End at once the leases of dispatchers of this host that died (a SIGKILL, a crash):
    their messages need not wait for the lease to lapse. Returns how many were released."""
    holders = connection.execute(
        sa.select(outbox.c.claimed_by).where(outbox.c.status == CLAIMED, outbox.c.lease_expires_at > now).distinct()
    ).scalars().all()
    released = 0
    for holder in holders:
        if holder is not None and holder_is_dead(holder):
            released += int(connection.execute(
                sa.update(outbox).where(outbox.c.status == CLAIMED, outbox.c.claimed_by == holder).values(lease_expires_at=now)
            ).rowcount or 0)
    return released


def give_up_abandoned(connection: Connection, now: datetime) -> list[int]:
    """Messages whose every attempt ended with the dispatcher dying (claimed, lease lapsed,
    no attempt left) are dead rather than claimed again: one message that kills the
    dispatcher must not stop all the others for ever. Returns their decision ids."""
    where = sa.and_(
        outbox.c.status == CLAIMED, outbox.c.lease_expires_at <= now, outbox.c.attempts >= MAX_ATTEMPTS, outbox.c.handed_over_at.is_(None)
    )
    decision_ids = connection.execute(sa.select(outbox.c.decision_id).where(where)).scalars().all()
    if decision_ids:
        connection.execute(
            sa.update(outbox).where(where).values(
                status=DEAD, claimed_by=None, lease_expires_at=None,
                error=f"given up after {MAX_ATTEMPTS} attempts: each one's dispatcher stopped before recording a result",
            )
        )
    return list(decision_ids)


def claim(connection: Connection, worker: str, now: datetime, limit: int, *, lease: timedelta = LEASE) -> list[int]:
    """Claim up to ``limit`` due messages for ``worker`` until ``now + lease``, oldest first;
    each claim begins an attempt. Returns the claimed row ids.

    One statement: on PostgreSQL the rows are picked ``FOR UPDATE SKIP LOCKED``, so two
    dispatchers never claim the same row; SQLite runs one writer at a time and the statement
    re-reads what it claims.
    """
    picked = sa.select(outbox.c.id).where(due(now)).order_by(outbox.c.send_at, outbox.c.id).limit(limit)
    if connection.dialect.name == "postgresql":
        picked = picked.with_for_update(skip_locked=True)
    claimed = connection.execute(
        sa.update(outbox)
        .where(outbox.c.id.in_(picked))
        .values(status=CLAIMED, claimed_by=worker, lease_expires_at=now + lease, attempts=outbox.c.attempts + 1)
        .returning(outbox.c.id)
    ).scalars().all()
    return sorted(claimed)


def _mine(worker: str) -> sa.ColumnElement[bool]:
    return sa.and_(outbox.c.id == sa.bindparam("o_id"), outbox.c.status == CLAIMED, outbox.c.claimed_by == worker)


@functools.lru_cache(maxsize=32)
def _sent_statement(worker: str, now: datetime) -> sa.Update:
    # Built once per dispatcher and instant: the hand-over records one message at a time,
    # and building the statement again cost more than running it.
    return sa.update(outbox).where(_mine(worker)).values(
        status=SENT, sent_at=now, error=None, claimed_by=None, lease_expires_at=None, next_attempt_at=None,
        provider_id=sa.bindparam("provider_id"), handed_over_at=None,
    )


def record_sent(connection: Connection, worker: str, rows: Sequence[dict[str, Any]], now: datetime) -> None:
    """The transport accepted these messages; ``rows`` hold ``o_id`` and ``provider_id``."""
    if rows:
        params = [{"o_id": r["o_id"], "provider_id": r.get("provider_id")} for r in rows]
        connection.execute(_sent_statement(worker, now), params[0] if len(params) == 1 else params)  # one row: no executemany


def record_dead(connection: Connection, worker: str, rows: Sequence[dict[str, Any]]) -> None:
    """These messages will never be sent; ``rows`` hold ``o_id`` and ``error`` (the reason)."""
    if rows:
        connection.execute(
            sa.update(outbox).where(_mine(worker)).values(
                status=DEAD, error=sa.bindparam("error"), claimed_by=None, lease_expires_at=None, next_attempt_at=None,
                handed_over_at=None,
            ),
            [{"o_id": r["o_id"], "error": r["error"]} for r in rows],
        )


def backoff(attempts: int, rng: random.Random | None = None, *, cap: timedelta | None = None) -> timedelta:
    """How long to wait after the ``attempts``-th attempt failed: exponential (base × 2^(n−1),
    at most the cap, or ``cap`` when shorter) with "equal jitter" (between half and all of it,
    drawn after the cap), so messages that failed together do not all come back at the same instant."""
    full = min(BACKOFF_CAP, BACKOFF_BASE * (2 ** max(attempts - 1, 0)))
    if cap is not None:
        full = min(full, cap)
    draw = (rng or random).random()
    return full * (0.5 + 0.5 * draw)


def reconnect_cap(waited: timedelta) -> timedelta:
    """The longest wait after an attempt that found the server unreachable, for a message that
    has waited ``waited`` since its send time (see :data:`RECONNECT_FLOOR`)."""
    return max(RECONNECT_FLOOR, waited / 4)


def record_transient(
    connection: Connection,
    worker: str,
    rows: Sequence[dict[str, Any]],
    now: datetime,
    rng: random.Random | None = None,
    *,
    give_up_after: timedelta = GIVE_UP_AFTER,
) -> list[dict[str, Any]]:
    """An attempt failed for a passing reason; ``rows`` hold ``o_id``, ``attempts`` (counted
    with this one), ``error``, ``send_at`` (when the message was due), ``give_up_after`` (its
    channel's, else the argument) and, when the provider asked for a wait (``Retry-After``),
    ``retry_after`` in seconds. A message younger than its give-up time waits (status retry,
    next attempt after :func:`backoff`, never before the provider's wait, and no later than
    the give-up time unless the provider asked for longer: its last attempt); one that has
    reached it is dead, with the reason. Returns the rows that became dead."""
    retry = [r for r in rows if now < _deadline(r, give_up_after)]
    dead = [
        {**r, "error": f"{r['error']} (attempt {r['attempts']}; not delivered within {_age(r.get('give_up_after', give_up_after))} of its send time, giving up)"}
        for r in rows
        if now >= _deadline(r, give_up_after)
    ]
    if retry:
        connection.execute(
            sa.update(outbox).where(_mine(worker)).values(
                status=RETRY, error=sa.bindparam("error"), claimed_by=None, lease_expires_at=None,
                next_attempt_at=sa.bindparam("next_at"), handed_over_at=None,
            ),
            [{"o_id": r["o_id"], "error": r["error"], "next_at": _next_attempt(r, now, rng, give_up_after)} for r in retry],
        )
    record_dead(connection, worker, dead)
    return dead


def _wait(row: dict[str, Any], rng: random.Random | None, now: datetime) -> timedelta:
    cap = None
    if row.get("unreachable"):  # the server, not the message: tried again soon (reconnect_cap)
        send_at = row.get("send_at")
        cap = reconnect_cap(now - as_utc(send_at) if send_at is not None else timedelta(0))
    wait = backoff(row["attempts"], rng, cap=cap)
    asked = row.get("retry_after")
    return max(wait, timedelta(seconds=float(asked))) if asked else wait


def _next_attempt(row: dict[str, Any], now: datetime, rng: random.Random | None, give_up_after: timedelta) -> datetime:
    """After the backoff (or the provider's wait), cut to the give-up time: the last attempt is at
    that age, unless the provider asked to wait longer (then that attempt is the last)."""
    asked = row.get("retry_after")
    latest = _deadline(row, give_up_after)
    if asked:
        latest = max(latest, now + timedelta(seconds=float(asked)))
    return min(now + _wait(row, rng, now), latest)


def _deadline(row: dict[str, Any], give_up_after: timedelta) -> datetime:
    give_up_after = row.get("give_up_after", give_up_after)
    send_at = row.get("send_at")
    return (as_utc(send_at) if send_at is not None else datetime.max.replace(tzinfo=timezone.utc) - give_up_after) + give_up_after


def _age(span: timedelta) -> str:
    """A give-up age as people write it: 24 h, 90 min, 2 d."""
    seconds = int(span.total_seconds())
    if seconds % 86_400 == 0 and seconds >= 2 * 86_400:
        return f"{seconds // 86_400} d"
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    if seconds % 60 == 0:
        return f"{seconds // 60} min"
    return f"{seconds} s"


def release_claims(connection: Connection, worker: str, now: datetime) -> int:
    """End this dispatcher's own claims at once (it is stopping and left some: a batch whose
    results could not be recorded): as for a dispatcher that died, the messages may be claimed
    again now rather than when the lease lapses. Returns how many."""
    return int(connection.execute(
        sa.update(outbox).where(outbox.c.status == CLAIMED, outbox.c.claimed_by == worker).values(lease_expires_at=now)
    ).rowcount or 0)


def postpone(connection: Connection, worker: str, rows: Sequence[dict[str, Any]]) -> None:
    """Give back claimed messages that may not go yet (quiet hours): pending again at
    ``resume``, the attempt not counted; ``rows`` hold ``o_id`` and ``resume``."""
    if rows:
        connection.execute(
            sa.update(outbox).where(_mine(worker)).values(
                status=PENDING, send_at=sa.bindparam("resume"), claimed_by=None, lease_expires_at=None, attempts=outbox.c.attempts - 1,
                handed_over_at=None,
            ),
            [{"o_id": r["o_id"], "resume": r["resume"]} for r in rows],
        )


# --- the hand-over protocol: in doubt is named, never silent ------------------------------
#
# A file transport or a webhook receiver recognises a message it has by its id; an SMTP server
# or an SMS provider does not, so a dispatcher killed after such a provider took a message
# and before the result was recorded cannot know whether it went. For those transports the
# dispatcher hands messages over one at a time per connection: it marks the next message
# handed over (``handed_over_at``) in the same small transaction that records the previous
# one's result on that connection, and only then gives it to the provider. At any instant a
# connection therefore has at most one message marked without a result. A claim whose holder
# died (or whose lease lapsed) with the mark set is *in doubt*: :func:`settle_in_doubt` names
# it so (``in_doubt_at``, kept after a resend, and the reason) and the channel's ``in_doubt``
# setting decides: ``resend`` (the default: at least once) makes it due again at once,
# ``hold`` keeps it in status in_doubt until a person says what became of it
# (:func:`resolve_in_doubt`). A claim without the mark was never handed over: it is claimed
# again and sent, as before. :func:`due` never claims a marked message.


def hand_over(connection: Connection, worker: str, o_ids: Sequence[int], now: datetime) -> set[int]:
    """Mark these claimed messages of ``worker`` handed over (about to reach the provider);
    returns those marked. A message that is no longer the worker's claim (its lease lapsed and
    another dispatcher took it) is not marked, and must not be handed over."""
    # One row at a time (a group commit has a few): a statement compiled once, no IN list to
    # render per call, and each row's count says whether it was still this worker's claim.
    marked = set()
    for o_id in o_ids:
        if connection.execute(_hand_over_statement(), {"o_id": o_id, "worker": worker, "now": now}).rowcount:
            marked.add(o_id)
    return marked


@functools.lru_cache(maxsize=1)
def _hand_over_statement() -> Any:
    return (
        sa.update(outbox)
        .where(outbox.c.id == sa.bindparam("o_id"), outbox.c.status == CLAIMED, outbox.c.claimed_by == sa.bindparam("worker"))
        .values(handed_over_at=sa.bindparam("now"))
    )


def _in_doubt_values(hold: bool, now: datetime, next_at: Any) -> dict[str, Any]:
    common: dict[str, Any] = {"claimed_by": None, "lease_expires_at": None, "handed_over_at": None, "in_doubt_at": now, "error": sa.bindparam("error")}
    if hold:
        return {**common, "status": IN_DOUBT, "next_attempt_at": None}
    return {**common, "status": RETRY, "next_attempt_at": next_at}


def record_in_doubt(
    connection: Connection, worker: str, rows: Sequence[dict[str, Any]], now: datetime, rng: random.Random | None = None
) -> None:
    """The provider's answer to these handed-over messages was lost (the connection dropped or
    timed out after the whole message went); ``rows`` hold ``o_id``, ``attempts``, ``error``
    and ``hold`` (the channel's ``in_doubt`` is hold). Held ones wait for a person; the others
    are retried after the backoff, recorded in doubt."""
    for hold in (True, False):
        part = [r for r in rows if bool(r.get("hold")) is hold]
        if not part:
            continue
        connection.execute(
            sa.update(outbox).where(_mine(worker)).values(**_in_doubt_values(hold, now, sa.bindparam("next_at"))),
            [{"o_id": r["o_id"], "error": r["error"], "next_at": now + backoff(r["attempts"], rng)} for r in part],
        )


@dataclass(frozen=True)
class InDoubt:
    """A message :func:`settle_in_doubt` found in doubt, and what became of it."""

    o_id: int
    message_id: str
    decision_id: int
    channel: str
    holder: str | None
    held: bool  # kept for a person (in_doubt: hold); else due again at once


def settle_in_doubt(connection: Connection, now: datetime, hold_channels: Sequence[str] = ()) -> list[InDoubt]:
    """Name in doubt every message whose holder died or whose lease lapsed while it was marked
    handed over (call after :func:`release_dead_holders`, before :func:`claim`). On the
    channels in ``hold_channels`` it is held (status in_doubt) for a person; elsewhere it is due
    again at once (status retry), recorded in doubt."""
    where = sa.and_(outbox.c.status == CLAIMED, outbox.c.lease_expires_at <= now, outbox.c.handed_over_at.is_not(None))
    found = connection.execute(
        sa.select(outbox.c.id, outbox.c.message_id, outbox.c.decision_id, outbox.c.channel, outbox.c.claimed_by).where(where)
    ).all()
    if not found:
        return []
    settled = [InDoubt(r.id, r.message_id, r.decision_id, r.channel, r.claimed_by, r.channel in hold_channels) for r in found]
    for hold in (True, False):
        part = [d for d in settled if d.held is hold]
        if not part:
            continue
        connection.execute(
            sa.update(outbox)
            .where(outbox.c.id == sa.bindparam("o_id"), where)
            .values(**_in_doubt_values(hold, now, now)),
            [
                {
                    "o_id": d.o_id,
                    "error": f"in doubt: its dispatcher ({d.holder}) stopped after handing it to the provider and before recording "
                    f"the answer; {'held for a person (in_doubt: hold)' if hold else 'sent again (in_doubt: resend)'}",
                }
                for d in part
            ],
        )
    return settled


def resolve_in_doubt(connection: Connection, message_ids: Sequence[str], *, delivered: bool, now: datetime) -> list[int]:
    """A person's answer for held messages (status in_doubt): ``delivered`` (it reached the
    customer: sent) or not (send it again: due at once). Returns the decision ids of the
    messages changed; the caller makes their decisions follow."""
    if not message_ids:
        return []
    where = sa.and_(outbox.c.message_id.in_(list(message_ids)), outbox.c.status == IN_DOUBT)
    values: dict[str, Any] = {"status": SENT, "sent_at": now, "error": None} if delivered else {"status": RETRY, "next_attempt_at": now}
    changed = connection.execute(sa.update(outbox).where(where).values(**values).returning(outbox.c.decision_id)).scalars().all()
    return list(changed)


# --- what the provider reported after it took a message --------------------------------
#
# ``delivery`` is the message's fate after the hand-over, as its provider reports it (status
# callbacks, bounce reports, opens). Reports arrive out of order and more than once, so it only
# moves forward: nothing → delivered | failed, and delivered → opened (a read receipt, a pixel,
# a click). The first of delivered and failed stands: a delivered after failed, or a failed
# after delivered, changes nothing (the report is still kept, as an event, by its owner).

_DELIVERY_AFTER: dict[DeliveryStatus, tuple[DeliveryStatus, ...]] = {
    DeliveryStatus.DELIVERED: (),
    DeliveryStatus.FAILED: (),
    DeliveryStatus.OPENED: (DeliveryStatus.DELIVERED,),
}
# Only a message that was handed over can have a fate (held in doubt: the provider may have it).
HANDED_OVER = (SENT, IN_DOUBT)


@dataclass(frozen=True)
class Delivered:
    """What :func:`record_delivery` did to one message: whether its state moved, and to what."""

    moved: bool
    state: DeliveryStatus | None  # the message's delivery state now
    status: OutboxStatus | None  # the message's outbox status (None: no such message)


def record_delivery(connection: Connection, message_id: str, state: DeliveryStatus, *, error: str | None = None) -> Delivered:
    """The provider reported ``state`` for the message: recorded if it moves the message
    forward (see above), else nothing changes. A failure keeps the provider's words in
    ``error``. One conditional UPDATE: two reports at once serialise on the row, and the
    second is judged against what the first left."""
    moves_from = _DELIVERY_AFTER[state]
    forward = outbox.c.delivery.is_(None) if not moves_from else sa.or_(outbox.c.delivery.is_(None), outbox.c.delivery.in_(moves_from))
    values: dict[str, Any] = {"delivery": state}
    if state is DeliveryStatus.FAILED and error:
        values["error"] = error
    moved = connection.execute(
        sa.update(outbox).where(outbox.c.message_id == message_id, outbox.c.status.in_(HANDED_OVER), forward).values(**values)
    ).rowcount
    row = connection.execute(sa.select(outbox.c.delivery, outbox.c.status).where(outbox.c.message_id == message_id)).first()
    if row is None:
        return Delivered(False, None, None)
    return Delivered(bool(moved), DeliveryStatus(row.delivery) if row.delivery else None, OutboxStatus(row.status))


# Messages still to go or stuck: what /metrics reports as the backlog. Sent and cancelled rows
# only grow and say nothing about the dispatcher's health, so they are not counted.
BACKLOG = (PENDING, CLAIMED, RETRY, DEAD, IN_DOUBT)


def backlog(connection: Connection) -> dict[str, int]:
    """Messages by backlog status, every status present (0 when none), off the status index."""
    query = sa.select(outbox.c.status, sa.func.count()).where(outbox.c.status.in_([str(s) for s in BACKLOG])).group_by(outbox.c.status)
    counts = {str(status): int(count) for status, count in connection.execute(query)}
    return {str(status): counts.get(str(status), 0) for status in BACKLOG}
