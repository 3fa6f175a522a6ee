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

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from legato.store.schema import decisions, outbox

PENDING, SENT, FAILED, CANCELLED = "pending", "sent", "failed", "cancelled"


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
        .values(status=PENDING, send_at=send_at, sent_at=None, error=None)
    )
    return Scheduled(existing.message_id, new=False)


# --- cancelling ------------------------------------------------------------------------


def cancel_for_decisions(connection: Connection, decision_ids: Sequence[int]) -> int:
    """Cancel the still-pending messages of these decisions; returns how many were cancelled."""
    if not decision_ids:
        return 0
    if len(decision_ids) == 1:
        where = outbox.c.decision_id == decision_ids[0]
        return int(connection.execute(sa.update(outbox).where(where, outbox.c.status == PENDING).values(status=CANCELLED)).rowcount or 0)
    result = connection.execute(
        sa.update(outbox).where(outbox.c.decision_id == sa.bindparam("d"), outbox.c.status == PENDING).values(status=CANCELLED),
        [{"d": d} for d in decision_ids],
    )
    return int(result.rowcount or 0)


def cancel_for_customer(connection: Connection, customer_id: str, channel: str | None = None) -> int:
    """Cancel a customer's pending messages (on one channel, or on all); returns how many."""
    where = (outbox.c.customer_id == customer_id) & (outbox.c.status == PENDING)
    if channel is not None:
        where = where & (outbox.c.channel == channel)
    return int(connection.execute(sa.update(outbox).where(where).values(status=CANCELLED)).rowcount or 0)


# --- the dispatcher's results ----------------------------------------------------------


def record_results(connection: Connection, rows: Sequence[dict[str, Any]], status: str, now: datetime) -> None:
    """Mark messages ``sent`` or ``failed`` after an attempt; ``rows`` hold ``o_id`` and ``error``."""
    if status not in (SENT, FAILED):
        raise ValueError(f"a dispatch attempt ends sent or failed, not {status}")
    if not rows:
        return
    connection.execute(
        sa.update(outbox)
        .where(outbox.c.id == sa.bindparam("o_id"))
        .values(status=status, sent_at=now if status == SENT else None, attempts=outbox.c.attempts + 1, error=sa.bindparam("error")),
        [{"o_id": r["o_id"], "error": r["error"]} for r in rows],
    )


def postpone(connection: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Move pending messages to a later send time; ``rows`` hold ``o_id`` and ``resume``."""
    if rows:
        connection.execute(
            sa.update(outbox).where(outbox.c.id == sa.bindparam("o_id")).values(send_at=sa.bindparam("resume")),
            [{"o_id": r["o_id"], "resume": r["resume"]} for r in rows],
        )
