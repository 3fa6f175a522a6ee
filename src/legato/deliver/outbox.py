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

import os
import random
import socket
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from legato.store.schema import decisions, outbox
from legato.store.status import OutboxStatus

PENDING, CLAIMED, SENT, RETRY, DEAD, CANCELLED = (
    OutboxStatus.PENDING, OutboxStatus.CLAIMED, OutboxStatus.SENT, OutboxStatus.RETRY, OutboxStatus.DEAD, OutboxStatus.CANCELLED,
)
# A message that may still be stopped: nobody is sending it right now.
CANCELLABLE = (PENDING, RETRY)
# A message on its way or gone: what frequency caps count.
OUTGOING = (PENDING, CLAIMED, RETRY, SENT)

LEASE = timedelta(minutes=10)  # how long a claim holds before another dispatcher may take the message
MAX_ATTEMPTS = 8  # the attempt after which a transient error makes a message dead
BACKOFF_BASE = timedelta(minutes=1)  # the first retry waits about this long, each next one twice as long
BACKOFF_CAP = timedelta(hours=6)


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


def _holder_is_dead(worker: str) -> bool:
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
    error, or claimed by a dispatcher whose lease lapsed."""
    return sa.or_(
        sa.and_(outbox.c.status == PENDING, outbox.c.send_at <= now),
        sa.and_(outbox.c.status == RETRY, outbox.c.next_attempt_at <= now),
        sa.and_(outbox.c.status == CLAIMED, outbox.c.lease_expires_at <= now),
    )


def release_dead_holders(connection: Connection, now: datetime) -> int:
    """End at once the leases of dispatchers of this host that died (a SIGKILL, a crash):
    their messages need not wait for the lease to lapse. Returns how many were released."""
    holders = connection.execute(
        sa.select(outbox.c.claimed_by).where(outbox.c.status == CLAIMED, outbox.c.lease_expires_at > now).distinct()
    ).scalars().all()
    released = 0
    for holder in holders:
        if holder is not None and _holder_is_dead(holder):
            released += int(connection.execute(
                sa.update(outbox).where(outbox.c.status == CLAIMED, outbox.c.claimed_by == holder).values(lease_expires_at=now)
            ).rowcount or 0)
    return released


def give_up_abandoned(connection: Connection, now: datetime) -> list[int]:
    """Messages whose every attempt ended with the dispatcher dying (claimed, lease lapsed,
    no attempt left) are dead rather than claimed again: one message that kills the
    dispatcher must not stop all the others for ever. Returns their decision ids."""
    where = sa.and_(outbox.c.status == CLAIMED, outbox.c.lease_expires_at <= now, outbox.c.attempts >= MAX_ATTEMPTS)
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


def record_sent(connection: Connection, worker: str, rows: Sequence[dict[str, Any]], now: datetime) -> None:
    """The transport accepted these messages; ``rows`` hold ``o_id`` and ``provider_id``."""
    if rows:
        connection.execute(
            sa.update(outbox).where(_mine(worker)).values(
                status=SENT, sent_at=now, error=None, claimed_by=None, lease_expires_at=None, next_attempt_at=None,
                provider_id=sa.bindparam("provider_id"),
            ),
            [{"o_id": r["o_id"], "provider_id": r.get("provider_id")} for r in rows],
        )


def record_dead(connection: Connection, worker: str, rows: Sequence[dict[str, Any]]) -> None:
    """These messages will never be sent; ``rows`` hold ``o_id`` and ``error`` (the reason)."""
    if rows:
        connection.execute(
            sa.update(outbox).where(_mine(worker)).values(
                status=DEAD, error=sa.bindparam("error"), claimed_by=None, lease_expires_at=None, next_attempt_at=None,
            ),
            [{"o_id": r["o_id"], "error": r["error"]} for r in rows],
        )


def backoff(attempts: int, rng: random.Random | None = None) -> timedelta:
    """How long to wait after the ``attempts``-th attempt failed: exponential (base × 2^(n−1),
    at most the cap) with "equal jitter" (between half and all of it), so messages that
    failed together do not all come back at the same instant."""
    full = min(BACKOFF_CAP, BACKOFF_BASE * (2 ** max(attempts - 1, 0)))
    draw = (rng or random).random()
    return full * (0.5 + 0.5 * draw)


def record_transient(
    connection: Connection, worker: str, rows: Sequence[dict[str, Any]], now: datetime, rng: random.Random | None = None
) -> list[dict[str, Any]]:
    """An attempt failed for a passing reason; ``rows`` hold ``o_id``, ``attempts`` (counted
    with this one) and ``error``. A message with attempts left waits (status retry, next
    attempt after :func:`backoff`); one at :data:`MAX_ATTEMPTS` is dead. Returns the rows
    that became dead."""
    retry = [r for r in rows if r["attempts"] < MAX_ATTEMPTS]
    dead = [{**r, "error": f"{r['error']} (attempt {r['attempts']} of {MAX_ATTEMPTS}; giving up)"} for r in rows if r["attempts"] >= MAX_ATTEMPTS]
    if retry:
        connection.execute(
            sa.update(outbox).where(_mine(worker)).values(
                status=RETRY, error=sa.bindparam("error"), claimed_by=None, lease_expires_at=None,
                next_attempt_at=sa.bindparam("next_at"),
            ),
            [{"o_id": r["o_id"], "error": r["error"], "next_at": now + backoff(r["attempts"], rng)} for r in retry],
        )
    record_dead(connection, worker, dead)
    return dead


def postpone(connection: Connection, worker: str, rows: Sequence[dict[str, Any]]) -> None:
    """Give back claimed messages that may not go yet (quiet hours): pending again at
    ``resume``, the attempt not counted; ``rows`` hold ``o_id`` and ``resume``."""
    if rows:
        connection.execute(
            sa.update(outbox).where(_mine(worker)).values(
                status=PENDING, send_at=sa.bindparam("resume"), claimed_by=None, lease_expires_at=None, attempts=outbox.c.attempts - 1,
            ),
            [{"o_id": r["o_id"], "resume": r["resume"]} for r in rows],
        )
