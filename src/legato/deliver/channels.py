"""Transports that carry rendered messages out of Legato, with one result per message.

Each message a transport receives carries ``message_id``, a UUID unique across databases
(:mod:`legato.deliver.outbox`): the idempotency key a provider receives, so a retried send
of the same message is recognised and a different message never is.

``send`` returns one :class:`Outcome` per message: delivered (with the provider's id for
it), a transient error (worth trying again later: a timeout, a full disk, a rate limit) or a
permanent one (this message can never go: an address the provider refuses). A provider that
asks to be left alone for a while (HTTP 429 with ``Retry-After``, a 503 with one) gives its
wait as ``retry_after`` seconds: the message is not tried again before it. A message the
transport never handed over (it stopped at the batch's first 429) is ``attempted`` False:
it waits ``retry_after`` without using up one of its attempts. One message or
one channel failing therefore stops nothing else; a transport that raises instead fails
only its own batch, as a transient error (the dispatcher's rule).

``file`` appends JSON Lines (one message a line, keyed by message id) and skips ids it has
written before, so a dispatcher that crashed after writing but before recording the send
does not deliver twice; since the ids are UUIDs, a file that another database (or an older
Legato, whose ids were row numbers) wrote to holds no id of this database's messages. A
crash in the middle of a write can leave a torn last line; the next write repairs it (a
torn line is cut off: its message was never recorded sent, so it is written again whole; a
complete message that lacks only its newline gets it). Writers of the same file take turns
under an exclusive lock and each reads what the others appended before writing.
``console`` prints, for trying a playbook by hand.

**Providers that do not deduplicate** (an SMTP server, an SMS provider) cannot be given the
message id as an idempotency key. Such a transport says so (``deduplicates = False``) and
offers *lanes* instead of ``send``: one lane per connection, each sending one message at a
time (:class:`Lane`). The dispatcher then runs the hand-over protocol
(:mod:`legato.deliver.outbox`): before a lane sends a message, the message is marked handed
over in the transaction that records the previous message's result on that lane, so a
crash leaves at most one message per lane whose fate is unknown, and names it in doubt. A
lane that loses the provider's answer after the whole message went (the connection dropped,
a timeout) answers :func:`lost`: in doubt as well, never a silent retry. Transports without
the attribute deduplicate (file, console, and receivers that dedupe by a stable id).

A file that cannot be written (a folder in its place, no permission, a full disk) is an
:class:`OutboxUnwritable` naming the file and the fix: :func:`legato.deliver.dispatch.transports`
checks each file before a cycle decides anything, and a send that fails later is a
transient error of each message of the batch: they wait for their next attempt (status retry).
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from rich.console import Console

from legato.errors import Invalid


class OutboxUnwritable(Invalid):
    """A file transport's file cannot be written."""

    def __init__(self, path: Path, error: OSError, channel: str | None = None) -> None:
        which = f" of channel {channel}" if channel else ""
        super().__init__(
            f"cannot write the outbox file{which} {path}: {error.strerror or type(error).__name__}",
            hint="make the file and its folder writable by this user, or point the channel's path in the playbook "
            "elsewhere; messages not written are tried again later (legato dispatch)",
        )


@dataclass(frozen=True)
class Outcome:
    """What became of one message: delivered (``error`` None), or why not and whether trying
    again could help (``permanent`` False)."""

    message_id: Any
    provider_id: str | None = None
    error: str | None = None
    permanent: bool = False
    retry_after: float | None = None  # seconds the provider asked to wait before the next try
    attempted: bool = True  # False: never handed over (its attempt is not counted)
    # The provider may have it: the answer was lost after the whole message was handed over.
    in_doubt: bool = False
    # A permanent refusal of the address itself (SMTP 5xx to RCPT TO): a hard bounce, and the
    # address is listed undeliverable (legato.guard.contact.suppress).
    bounced: bool = False
    # The provider's server could not be reached, or closed the connection before the message
    # went (refused, timed out, restarting): nothing about this message. Its retries are
    # capped short (legato.deliver.outbox.backoff) so what waits goes soon after the server returns.
    unreachable: bool = False

    @property
    def delivered(self) -> bool:
        return self.error is None


def delivered(message_id: Any, provider_id: str | None = None) -> Outcome:
    return Outcome(message_id, provider_id)


def transient(message_id: Any, error: str, *, retry_after: float | None = None, attempted: bool = True, unreachable: bool = False) -> Outcome:
    return Outcome(message_id, error=error, retry_after=retry_after, attempted=attempted, unreachable=unreachable)


def permanent(message_id: Any, error: str, *, bounced: bool = False) -> Outcome:
    return Outcome(message_id, error=error, permanent=True, bounced=bounced)


def lost(message_id: Any, error: str) -> Outcome:
    """The whole message went and the answer never came: the provider may or may not have it."""
    return Outcome(message_id, error=error, in_doubt=True)


class LaneHold:
    """One provider's lanes wait together: after an answer that stops them all (a 429, a 5xx,
    refused credentials, an unreachable provider), every lane of the transport hands nothing
    over until the provider's wait (``Retry-After``) has passed, or ``default_seconds`` when it
    named none. A message that comes meanwhile is a transient outcome that was not handed over,
    so it costs no attempt. Thread-safe: lanes run in threads of their own."""

    def __init__(self, default_seconds: float = 60.0) -> None:
        self.default_seconds = default_seconds
        self._lock = threading.Lock()
        self._held: tuple[float, str, float | None] | None = None  # until (monotonic), why, the provider's wait

    def hold(self, outcome: Outcome) -> None:
        with self._lock:
            self._held = (time.monotonic() + (outcome.retry_after or self.default_seconds), str(outcome.error), outcome.retry_after)

    def held(self, message_id: Any) -> Outcome | None:
        """The outcome of a message that comes while the lanes are held, else None."""
        with self._lock:
            if self._held is None:
                return None
            until, why, wait = self._held
            if until <= time.monotonic():
                self._held = None
                return None
        return transient(message_id, f"not handed over: the provider answered an earlier message with: {why}", retry_after=wait, attempted=False)


class Transport(Protocol):
    def send(self, messages: list[dict[str, Any]]) -> list[Outcome]: ...


class Lane(Protocol):
    """One connection of a transport whose provider does not deduplicate: one message at a time."""

    def send_one(self, message: dict[str, Any]) -> Outcome: ...


def deduplicates(transport: Any) -> bool:
    """Whether a transport's provider recognises a message it already has by its id (then the
    dispatcher may hand it whole batches); False means the hand-over protocol, lane by lane."""
    return bool(getattr(transport, "deduplicates", True)) or not hasattr(transport, "lanes")


class FileTransport:
    """JSON Lines, each message id once; the provider id of a message is ``file:<id>``."""

    deduplicates = True  # it skips the ids it holds: no hand-over protocol needed

    def __init__(self, path: Path, channel: str | None = None) -> None:
        self.path = path
        self.channel = channel
        self._written: set[object] = set()
        self._read_to = 0  # the offset up to which this transport has read the file's ids

    def check(self) -> None:
        """Raise :class:`OutboxUnwritable` unless the file can be appended to. Its folder is
        created; the file itself is not (no file until a message is written): a new file is
        tried as a scratch file beside it."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.path.exists() or self.path.is_symlink():
                with self.path.open("a", encoding="utf-8"):
                    pass
            else:
                with tempfile.NamedTemporaryFile(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".check"):
                    pass
        except OSError as exc:
            raise OutboxUnwritable(self.path, exc, self.channel) from exc

    def _catch_up(self, handle: Any) -> None:
        """Read the ids the file gained since last read (another process may write it too),
        and repair a torn last line. ``handle`` is the file open for reading and writing,
        under the exclusive lock."""
        size = os.fstat(handle.fileno()).st_size
        if size < self._read_to:  # the file was replaced or cut short: read it again whole
            self._written, self._read_to = set(), 0
        if size == self._read_to:
            return
        handle.seek(self._read_to)
        data = handle.read(size - self._read_to)
        complete, newline, torn = data.rpartition(b"\n")
        lines = (complete + newline).splitlines() if newline else []
        for line in lines:
            found = _message_id(line)
            if found is not None:
                self._written.add(found)
        self._read_to += len(complete) + len(newline)
        if torn.strip():
            found = _message_id(torn)
            if found is not None:  # the whole message, short of its newline
                handle.seek(size)
                handle.write(b"\n")
                self._written.add(found)
                self._read_to = size + 1
            else:  # cut off mid-write: that message was never recorded as sent; it is written again
                handle.truncate(self._read_to)
            handle.flush()
            os.fsync(handle.fileno())

    def send(self, messages: list[dict[str, Any]]) -> list[Outcome]:
        if not messages:
            return []
        try:
            return self._send(messages)
        except OSError as exc:  # the whole batch: the dispatcher records it as a transient error of each message
            raise OutboxUnwritable(self.path, exc, self.channel) from exc

    def _send(self, messages: list[dict[str, Any]]) -> list[Outcome]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        outcomes: list[Outcome] = []
        with open(self.path, "a+b") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                self._catch_up(handle)
                lines: list[bytes] = []
                fresh: list[Any] = []
                seen: set[Any] = set()
                for message in messages:
                    key = message["message_id"]
                    if key in self._written or key in seen:
                        outcomes.append(delivered(key, f"file:{key}"))  # already in the file: delivered once
                        continue
                    try:
                        lines.append((json.dumps(message, ensure_ascii=False, default=str) + "\n").encode("utf-8"))
                    except (TypeError, ValueError) as exc:
                        outcomes.append(permanent(key, f"the message cannot be written as JSON: {exc}"))
                        continue
                    fresh.append(key)
                    seen.add(key)
                    outcomes.append(delivered(key, f"file:{key}"))
                if lines:
                    handle.seek(0, os.SEEK_END)
                    handle.write(b"".join(lines))
                    handle.flush()
                    os.fsync(handle.fileno())
                    self._read_to = handle.tell()
                    self._written.update(fresh)
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        return outcomes


def _message_id(line: bytes) -> Any:
    """The message id a line of the file holds, or None if the line is not a whole message."""
    if not line.strip():
        return None
    try:
        record = json.loads(line)
    except ValueError:  # includes a line cut inside a multi-byte character
        return None
    return record.get("message_id") if isinstance(record, dict) else None


class ConsoleTransport:
    deduplicates = True  # a dry run: printing twice after a crash harms nobody

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console()

    def send(self, messages: list[dict[str, Any]]) -> list[Outcome]:
        for message in messages:
            heading = message.get("subject") or message.get("title") or ""
            self.console.print(f"[bold]{message['channel']}[/] → {message['to']}: {heading}")
            self.console.print(message["body"], markup=False, highlight=False)
        return [delivered(m["message_id"]) for m in messages]
