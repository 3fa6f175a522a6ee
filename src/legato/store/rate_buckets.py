"""Each channel's rate limit: a token bucket every worker shares through the store.

The one writer of ``rate_buckets``. A channel with ``rate_limit: R`` (messages per second)
has a bucket of at most ``capacity`` tokens (one second's worth, at least one), refilled at
R tokens a second; a dispatcher takes as many tokens as it has messages for the channel,
gets what the bucket holds, and sends that many. Several dispatchers on several hosts take
from the same row, each in a short transaction that locks it (``SELECT ... FOR UPDATE`` on
PostgreSQL; SQLite has one writer at a time, and the row is written before it is read), so
together they send at most ``capacity + R × t`` messages in any ``t`` seconds.

A provider that answers 429 with ``Retry-After`` asks every sender to wait, not just the
one that asked: :func:`hold` records the wait on the channel's bucket (a channel without a
rate limit gets a row just for that), and :func:`take` grants nothing until it is over.

Tokens refill by the workers' wall clock, seconds since the epoch (``now`` can be given in
tests): a rate is about real seconds, whatever instant a dispatch simulates with ``--at``. A
hold is an instant of the dispatchers' own time, as a message's next attempt is (the same
clock unless a dispatch simulates one).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy import Connection, Engine

from legato.store.schema import rate_buckets

wall_clock: Callable[[], float] = time.time  # the buckets' clock (tests stop it)


@dataclass(frozen=True)
class Grant:
    """What :func:`take` gave: ``granted`` messages may go now; when fewer than asked, the
    rest may not go for ``wait`` seconds (the next token, or the end of a provider's hold)."""

    granted: int
    wait: float = 0.0


def capacity(rate: float) -> float:
    """How many tokens a bucket holds when full: one second's worth, and at least one."""
    return max(1.0, float(rate))


def take(
    engine: Engine, channel: str, rate: float | None, want: int, *,
    now: float | None = None, instant: float | None = None, burst: float | None = None,
) -> Grant:
    """Take up to ``want`` tokens of ``channel``'s bucket (``rate`` per second; None: no limit,
    only a provider's hold applies), in a transaction of its own. ``now`` is the wall clock
    the bucket refills by; ``instant`` the dispatcher's time a hold is compared with (the
    same unless a dispatch simulates another time)."""
    if want <= 0:
        return Grant(0)
    at = wall_clock() if now is None else now
    held_at = at if instant is None else instant
    with engine.begin() as connection:
        if rate is None:
            hold = connection.execute(sa.select(rate_buckets.c.hold_until).where(rate_buckets.c.channel == channel)).scalar()
            return Grant(0, hold - held_at) if hold is not None and hold > held_at else Grant(want)
        return _take(connection, channel, float(rate), want, at, held_at, burst if burst is not None else capacity(rate))


def _take(connection: Connection, channel: str, rate: float, want: int, at: float, held_at: float, full: float) -> Grant:
    row = _locked(connection, channel, full, at)
    tokens = min(full, row.tokens + max(0.0, at - row.refilled_at) * rate)
    if row.hold_until is not None and row.hold_until > held_at:
        _write(connection, channel, tokens, at)
        return Grant(0, row.hold_until - held_at)
    granted = min(want, int(math.floor(tokens + 1e-9)))
    tokens -= granted
    _write(connection, channel, tokens, at)
    if granted == want:
        return Grant(granted)
    return Grant(granted, max(0.0, (1.0 - tokens) / rate))


def _locked(connection: Connection, channel: str, full: float, at: float) -> sa.Row[tuple[float, float, float | None]]:
    """The channel's bucket row, locked for this transaction; a new one starts full."""
    exists = sa.select(rate_buckets.c.tokens, rate_buckets.c.refilled_at, rate_buckets.c.hold_until).where(rate_buckets.c.channel == channel)
    if connection.dialect.name == "postgresql":
        row = connection.execute(exists.with_for_update()).first()
    else:  # SQLite: take the write lock first (a no-op update), so two takes cannot read the same tokens
        connection.execute(sa.update(rate_buckets).where(rate_buckets.c.channel == channel).values(channel=rate_buckets.c.channel))
        row = connection.execute(exists).first()
    if row is not None:
        return row
    _insert_new(connection, channel, full, at)
    locked = exists.with_for_update() if connection.dialect.name == "postgresql" else exists
    return connection.execute(locked).one()


def _insert_new(connection: Connection, channel: str, tokens: float, at: float, hold: float | None = None) -> None:
    values = {"channel": channel, "tokens": tokens, "refilled_at": at, "hold_until": hold}
    if connection.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
    connection.execute(insert(rate_buckets).values(**values).on_conflict_do_nothing(index_elements=["channel"]))


def _write(connection: Connection, channel: str, tokens: float, at: float) -> None:
    connection.execute(sa.update(rate_buckets).where(rate_buckets.c.channel == channel).values(tokens=tokens, refilled_at=at))


def hold(engine: Engine, channel: str, seconds: float, *, now: float | None = None) -> None:
    """A provider asked to be left alone for ``seconds`` from ``now`` (the dispatcher's time,
    the wall clock by default): no worker takes a token of ``channel`` before then (a longer
    hold already recorded stays)."""
    if seconds <= 0:
        return
    at = wall_clock() if now is None else now
    until = at + seconds
    with engine.begin() as connection:
        _insert_new(connection, channel, 0.0, at, until)
        connection.execute(
            sa.update(rate_buckets)
            .where(rate_buckets.c.channel == channel, sa.or_(rate_buckets.c.hold_until.is_(None), rate_buckets.c.hold_until < until))
            .values(hold_until=until)
        )


def state(connection: Connection) -> dict[str, dict[str, float | None]]:
    """Every bucket as stored (for tests and operators)."""
    rows = connection.execute(sa.select(rate_buckets)).all()
    return {r.channel: {"tokens": r.tokens, "refilled_at": r.refilled_at, "hold_until": r.hold_until} for r in rows}
