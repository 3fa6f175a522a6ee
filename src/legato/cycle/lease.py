"""The cycle's lease: one cycle at a time on a store, whatever runs it and from where.

A cycle holds the lease named ``cycle`` from before it looks for an unfinished cycle until
it has finished. The lease is one row of ``leases`` (the same on SQLite and PostgreSQL):
its holder's token, host and pid, since when it holds it and until when (``expires_at``,
renewed while the holder works). Every change of the row is one compare-and-set ``UPDATE``
(``… WHERE token IS the token read AND renewed_at IS the time read``), a single statement
that both databases run atomically (SQLite under its write lock, PostgreSQL under the row's
lock), so two processes can never both take it, and a holder that renewed in between is
never robbed.

A lease is free when nobody holds it, when it expired (its holder stopped renewing: killed,
frozen, its machine gone), or when its holder ran on this host and that process is gone (a
dead pid, or a zombie, is seen at once instead of after the expiry).

While it holds the lease, a process renews it from a thread every ``ttl / 4`` seconds, and
the cycle's own transactions renew it too (:meth:`Lease.fence`): a transaction that finds
the lease no longer its own (another process took it after it expired) raises
:class:`LeaseLost` and writes nothing, so a holder that was frozen past its expiry cannot
write over its successor.

Times are the machine's wall clock in UTC (never a simulated cycle time): holders on several
machines must keep their clocks within a small part of ``ttl`` of each other.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import sqlalchemy as sa
from sqlalchemy import Connection, Engine
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import OperationalError

from legato.errors import Conflict, StoreBusy
from legato.store.schema import leases

CYCLE = "cycle"
# How long a lease lasts without renewal. A holder renews every TTL / 4 seconds.
TTL = 60.0
# How often a waiting process looks again.
POLL = 0.5


class LeaseLost(Conflict):
    """This process's lease was taken by another after it expired; what it was writing is not written."""


class LeaseHeld(Conflict):
    """Another process holds the lease."""


def wall_clock() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class Holder:
    host: str | None
    pid: int | None
    acquired_at: datetime | None
    renewed_at: datetime | None
    expires_at: datetime | None
    cycle_id: int | None

    def describe(self, now: datetime) -> str:
        since = f"since {self.acquired_at:%Y-%m-%d %H:%M:%S} UTC" if self.acquired_at else ""
        cycle = f", running cycle {self.cycle_id}" if self.cycle_id is not None else ""
        expiry = ""
        if self.expires_at is not None:
            expiry = f"; its lease expires at {self.expires_at:%H:%M:%S} UTC unless renewed ({max((self.expires_at - now).total_seconds(), 0):.0f} s)"
        return f"host {self.host} pid {self.pid} {since}{cycle}{expiry}"


def _alive_here(host: str | None, pid: int | None) -> bool | None:
    """Whether the holder's process is alive, when it ran on this host (None: cannot tell)."""
    if host != socket.gethostname() or pid is None:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            if stat.read().rsplit(")", 1)[1].split()[0] == "Z":
                return False  # exited, not yet reaped
    except (OSError, IndexError):
        pass
    return True


def _free(row: sa.Row[tuple[object, ...]], now: datetime) -> bool:
    if row.token is None:
        return True
    if row.expires_at is not None and row.expires_at <= now:
        return True
    return _alive_here(row.host, row.pid) is False


def _same(column: sa.ColumnElement[object], value: object) -> sa.ColumnElement[bool]:
    return column.is_(None) if value is None else column == value


class Lease:
    """A lease this process holds; :func:`hold` takes and releases it."""

    def __init__(self, engine: Engine, name: str, token: str, ttl: float) -> None:
        self.engine = engine
        self.name = name
        self.token = token
        self.ttl = ttl
        self.lost = False
        # Told the cycle's id once the holder knows it (a cycle started in the background
        # answers its caller with the id as soon as the cycle is recorded).
        self.on_cycle: Callable[[int], None] | None = None
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def _renew(self, connection: Connection) -> bool:
        now = wall_clock()
        done = connection.execute(
            sa.update(leases)
            .where(leases.c.name == self.name, leases.c.token == self.token)
            .values(renewed_at=now, expires_at=now + timedelta(seconds=self.ttl))
        )
        return done.rowcount == 1

    def fence(self, connection: Connection) -> None:
        """Renew the lease inside the caller's transaction; raise :class:`LeaseLost` if it is no longer ours."""
        if self.lost or not self._renew(connection):
            self.lost = True
            raise LeaseLost(
                "this cycle's lease was taken over by another process after it expired; this process stops without writing more",
                hint="the other process continues the cycle; if this happens often, the machine is overloaded or the clocks of the hosts differ",
            )

    def note_cycle(self, cycle_id: int) -> None:
        """Say which cycle the holder runs (shown to a process that finds the lease held)."""
        with self.engine.begin() as connection:
            connection.execute(sa.update(leases).where(leases.c.name == self.name, leases.c.token == self.token).values(cycle_id=cycle_id))
        if self.on_cycle is not None:
            self.on_cycle(cycle_id)

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.ttl / 4):
            try:
                with self.engine.begin() as connection:
                    if not self._renew(connection):
                        self.lost = True
                        return
            except Exception:  # noqa: BLE001 - busy (SQLite's write lock) or unreachable for a moment: the next beat tries again
                continue  # (a beat that cannot renew in time is covered by the cycle's own transactions, which renew too)

    def start(self) -> None:
        self._beat = threading.Thread(target=self._heartbeat, name=f"lease-{self.name}", daemon=True)
        self._beat.start()

    def release(self) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join()
        with self.engine.begin() as connection:
            connection.execute(
                sa.update(leases)
                .where(leases.c.name == self.name, leases.c.token == self.token)
                .values(token=None, expires_at=None, renewed_at=wall_clock())
            )


def holder(engine: Engine, name: str = CYCLE) -> Holder | None:
    """Who holds the lease now, or None when it is free."""
    with engine.connect() as connection:
        row = connection.execute(sa.select(leases).where(leases.c.name == name)).first()
    if row is None or _free(row, wall_clock()):
        return None
    return Holder(row.host, row.pid, row.acquired_at, row.renewed_at, row.expires_at, row.cycle_id)


def _try_take(engine: Engine, name: str, token: str, ttl: float) -> Holder | None:
    """Take the lease if it is free; None when taken, else who holds it."""
    insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
    with engine.begin() as connection:
        connection.execute(insert(leases).values(name=name).on_conflict_do_nothing(index_elements=["name"]))
    with engine.begin() as connection:
        row = connection.execute(sa.select(leases).where(leases.c.name == name)).one()
        now = wall_clock()
        if not _free(row, now):
            return Holder(row.host, row.pid, row.acquired_at, row.renewed_at, row.expires_at, row.cycle_id)
        taken = connection.execute(
            sa.update(leases)
            .where(leases.c.name == name, _same(leases.c.token, row.token), _same(leases.c.renewed_at, row.renewed_at))
            .values(
                token=token,
                host=socket.gethostname(),
                pid=os.getpid(),
                acquired_at=now,
                renewed_at=now,
                expires_at=now + timedelta(seconds=ttl),
                cycle_id=None,
            )
        )
        if taken.rowcount == 1:
            return None
        row = connection.execute(sa.select(leases).where(leases.c.name == name)).one()
        return Holder(row.host, row.pid, row.acquired_at, row.renewed_at, row.expires_at, row.cycle_id)


def acquire(engine: Engine, *, wait: float = 0.0, name: str = CYCLE, ttl: float = TTL) -> Lease:
    """Take the lease, waiting up to ``wait`` seconds for its holder; :class:`LeaseHeld` names the holder."""
    token = str(uuid.uuid4())
    deadline = time.monotonic() + wait
    while True:
        try:
            held = _try_take(engine, name, token, ttl)
        except (OperationalError, StoreBusy) as exc:  # SQLite's write lock stayed taken past its timeout (store.db raises StoreBusy)
            if time.monotonic() >= deadline:
                if isinstance(exc, StoreBusy):  # names the database and the fix (legato.store.db)
                    raise StoreBusy(f"{exc.message}, so this run could not take the cycle's lease", hint=f"{exc.hint}; or wait with --wait SECONDS") from exc
                raise LeaseHeld(
                    "the database stayed locked while this run tried to take the cycle's lease",
                    hint="another process is writing to it; run again, or wait with --wait SECONDS",
                ) from exc
            time.sleep(POLL)
            continue
        if held is None:
            lease = Lease(engine, name, token, ttl)
            lease.start()
            return lease
        if time.monotonic() >= deadline:
            waited = f" after waiting {wait:g} s" if wait > 0 else ""
            raise LeaseHeld(
                f"another cycle is running on this database{waited}: held by {held.describe(wall_clock())}",
                hint="let it finish and run again, or wait for it with --wait SECONDS; a holder that died frees the lease "
                f"when its lease expires (at most {ttl:g} s after its last renewal), or at once if it ran on this host",
            )
        time.sleep(min(POLL, max(deadline - time.monotonic(), 0.01)))


@contextmanager
def hold(engine: Engine, *, wait: float = 0.0, name: str = CYCLE, ttl: float = TTL) -> Iterator[Lease]:
    """Hold the lease for the ``with`` block; released at its end, whatever happens in it."""
    lease = acquire(engine, wait=wait, name=name, ttl=ttl)
    try:
        yield lease
    finally:
        lease.release()
