"""Opt-outs the database could not take yet: a durable file, honoured and written back.

A customer's "no" must not be lost because the database is locked (another process writing
a long import, a backup holding it) or unreachable. :mod:`legato.trust.inbound` writes an
opt-out with retries (:func:`retrying`: each attempt waits ``LEGATO_BUSY_TIMEOUT`` for the
lock, then tries again with exponential backoff and jitter until ``LEGATO_OPTOUT_WAIT``
seconds, default 30, have passed). If the database still cannot take it, the opt-out is
appended to this file and the command fails loudly (exit 6) saying so:

- **The file.** JSON Lines, append-only, beside a SQLite database
  (``legato.db.pending-optouts.jsonl``), or at ``LEGATO_PENDING_OPTOUTS``; for PostgreSQL,
  in ``$XDG_STATE_HOME/legato`` (``~/.local/state/legato``) named after the server and
  database. Each opt-out is one line written by a single ``write`` and ``fsync``ed (and the
  folder too, when the file is new) before the command reports; a line torn by a crash is
  skipped, never glued to the next one. Owner-only permissions (0600): it holds customer ids.
- **Honoured before any marketing.** The cycle (at its start and before each partition) and
  the dispatcher (before each batch) call :func:`settle`: it writes every pending opt-out
  into the store and, if any cannot be written, raises :class:`OptOutsWaiting` so nothing
  more is decided or sent while a "no" is only in the file. Every command that opens the
  store (``legato.store.db.connect``) also tries to write them back, quietly.
- **Written back exactly once.** Writing one (:func:`replay`) revokes marketing on its
  channels with the time it was received, cancels the customer's pending messages there
  (:func:`legato.trust.inbound.apply_pending`), records the message and an audit entry
  ``pending_opt_out_applied`` whose entity id is the line's id, all in one transaction; then
  a marker line ``{"applied": id}`` is appended. The audit entry makes a replay that crashed
  between the commit and the marker a no-op; replays on one machine take turns (``flock``).
  An express consent dated after the opt-out was received is newer and stands (an undated one does not: guard.consent.change).

The file and its markers stay as the record of what happened (keep it with the database; the
``.lock`` file beside it only serialises replays); ``legato inbound pending`` lists what
waits and writes it back.
"""

from __future__ import annotations

import fcntl
import json
import os
import random
import re
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine

from legato.errors import StoreBusy, StoreError

PATH_VARIABLE = "LEGATO_PENDING_OPTOUTS"
WAIT_VARIABLE = "LEGATO_OPTOUT_WAIT"
DEFAULT_WAIT_SECONDS = 30.0
APPLIED_ACTION = "pending_opt_out_applied"
REJECTED_ACTION = "pending_opt_out_rejected"
ENTITY = "pending_opt_out"

T = TypeVar("T")


@dataclass(frozen=True)
class PendingOptOut:
    """One opt-out the database could not take when it came."""

    customer_id: str
    channel: str  # the channel it came in on
    channels: list[str]  # the channels it revokes; none for a reply that may be an opt-out (a person decides)
    received_at: str  # ISO-8601, aware: the time it takes effect from
    text: str  # as stored (personal data masked)
    source: str = "inbound:opt_out"
    language: str = "en"
    escalate: list[dict[str, Any]] = field(default_factory=list)  # built-in reasons that need a person too
    why: str = ""  # what the database said
    intents: list[str] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)  # masked, like the text
    sentiment: float = 0.0
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    saved_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat())

    @property
    def at(self) -> datetime:
        return datetime.fromisoformat(self.received_at)

    def describe(self) -> str:
        what = f"opted out of {', '.join(self.channels)}" if self.channels else "may have opted out (a person decides)"
        return f"customer {self.customer_id} {what} (received {self.received_at})"


class OptOutsWaiting(StoreBusy):
    """Opt-outs wait in the file and the database cannot take them yet: no marketing until it can."""


class OptOutSaved(StoreError):
    """The opt-out could not be written to the database and waits in the file (the command failed)."""


class OptOutLost(StoreError):
    """Neither the database nor the file could take the opt-out: the caller must try again."""


def wait_seconds() -> float:
    raw = os.environ.get(WAIT_VARIABLE)
    if not raw:
        return DEFAULT_WAIT_SECONDS
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= 86_400:
        raise StoreError(f"{WAIT_VARIABLE}={raw!r} is not a number of seconds", hint=f"set it to e.g. 60, or unset it for {DEFAULT_WAIT_SECONDS:g}")
    return seconds


def retrying(work: Callable[[], T], *, wait: float | None = None, sleep: Callable[[float], None] = time.sleep) -> T:
    """``work()``, tried again while the store is busy or unreachable, for ``wait`` seconds in all.

    Exponential backoff from 50 ms to 2 s with full jitter between attempts; each attempt
    itself waits up to ``LEGATO_BUSY_TIMEOUT`` for SQLite's lock. The last error is raised.
    """
    deadline = time.monotonic() + (wait_seconds() if wait is None else wait)
    delay = 0.05
    while True:
        try:
            return work()
        except StoreError as error:
            if not error.transient or time.monotonic() >= deadline:
                raise
        sleep(min(random.uniform(delay / 2, delay), max(0.0, deadline - time.monotonic())))
        delay = min(delay * 2, 2.0)


def path_for(engine: Engine) -> Path:
    """Where the engine's pending opt-outs are kept (see the module's documentation)."""
    explicit = os.environ.get(PATH_VARIABLE)
    if explicit:
        return Path(explicit).expanduser()
    url = engine.url
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        database = Path(url.database).expanduser().resolve()
        return database.with_name(database.name + ".pending-optouts.jsonl")
    try:
        home = Path.home()
    except RuntimeError:  # no home folder (a service account): the working folder
        home = Path.cwd()
    state = Path(os.environ.get("XDG_STATE_HOME") or home / ".local" / "state") / "legato"
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{url.host or 'local'}-{url.port or ''}-{url.database or 'memory'}")
    return state / f"pending-optouts-{name}.jsonl"


def save(path: Path, entry: PendingOptOut) -> None:
    """Append one opt-out durably: one ``write``, ``fsync`` of the file (and of its folder when new)."""
    _append(path, {"opt_out": asdict(entry)})


def _append(path: Path, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    created = not path.exists()
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        line = json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n"
        size = os.fstat(descriptor).st_size
        if size:
            with path.open("rb") as existing:  # a line torn by a crash: start on a line of our own
                existing.seek(size - 1)
                if existing.read(1) != b"\n":
                    line = "\n" + line
        os.write(descriptor, line.encode("utf-8"))
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    if created:
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)


def read(path: Path) -> tuple[list[PendingOptOut], set[str]]:
    """Every opt-out in the file, in order, and the ids already written back. Torn lines are skipped."""
    entries: list[PendingOptOut] = []
    done: set[str] = set()
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return entries, done
    for line in text.splitlines():
        try:
            record = json.loads(line)
            if "opt_out" in record:
                entries.append(PendingOptOut(**record["opt_out"]))
            elif "applied" in record:
                done.add(str(record["applied"]))
        except (ValueError, TypeError, KeyError):
            continue
    return entries, done


def pending(path: Path) -> list[PendingOptOut]:
    """The opt-outs in the file not yet written to the store, oldest first."""
    entries, done = read(path)
    return [entry for entry in entries if entry.id not in done]


# (path, size, mtime) of files this process found fully written back: settle() skips them.
_settled: dict[Path, tuple[int, int]] = {}


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_size, stat.st_mtime_ns


def replay(engine: Engine, *, path: Path | None = None, wait: float | None = None) -> list[PendingOptOut]:
    """Write every pending opt-out into the store, oldest first; returns those written.

    Each is tried for ``wait`` seconds (default ``LEGATO_OPTOUT_WAIT``); raises the store's
    error if one cannot be written (those before it stay written).
    """
    from legato.trust.inbound import apply_pending

    path = path or path_for(engine)
    stamp = _stamp(path)
    if stamp is None or _settled.get(path) == stamp:
        return []
    written: list[PendingOptOut] = []
    with _turn(path):
        for entry in pending(path):
            outcome = apply_pending(engine, entry, wait=wait)
            _append(path, {"applied": entry.id, "outcome": outcome, "at": datetime.now(timezone.utc).isoformat()})
            written.append(entry)
        stamp = _stamp(path)
        if stamp is not None:
            _settled[path] = stamp
    return written


def replay_quietly(engine: Engine) -> None:
    """What every command does on opening the store: write back what it can, never fail for it.

    The cycle and the dispatcher call :func:`settle`, which does fail.
    """
    try:
        replay(engine, wait=0)  # one attempt (it waits LEGATO_BUSY_TIMEOUT for a lock)
    except (StoreError, OSError):
        pass


def settle(engine: Engine) -> None:
    """Before marketing: every pending opt-out written to the store, or :class:`OptOutsWaiting`."""
    path = path_for(engine)
    try:
        replay(engine, path=path)
    except StoreError as error:
        waiting = pending(path)
        raise OptOutsWaiting(
            f"{len(waiting)} opt-out(s) wait in {path} and cannot be written to the database yet ({error.message}); "
            "nothing more is decided or sent until they are",
            hint=f"{error.hint or 'make the database writable'}; `legato inbound pending` lists them and writes them back",
        ) from error
    except OSError as error:
        raise OptOutsWaiting(
            f"cannot read the pending opt-outs in {path}: {error.strerror or error}; nothing is decided or sent until it can be read",
            hint="make the file readable and writable by this user",
        ) from error


@contextmanager
def _turn(path: Path) -> Iterator[None]:
    """One replay at a time on this machine (a lock file beside the file; appends never wait for it)."""
    lock = path.with_name(path.name + ".lock")
    descriptor = os.open(lock, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        _settled.pop(path, None)
        yield
    finally:
        fcntl.flock(descriptor, fcntl.LOCK_UN)
        os.close(descriptor)
