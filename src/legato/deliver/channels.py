"""Transports that carry rendered messages out of Legato.

Each message a transport receives carries ``message_id``, a UUID unique across databases
(:mod:`legato.deliver.outbox`): the idempotency key a provider receives, so a retried send
of the same message is recognised and a different message never is.

``file`` appends JSON Lines (one message a line, keyed by message id) and skips ids it has
written before, so a dispatcher that crashed after writing but before recording the send
does not deliver twice; since the ids are UUIDs, a file that another database (or an older
Legato, whose ids were row numbers) wrote to holds no id of this database's messages.
``console`` prints, for trying a playbook by hand.

A file that cannot be written (a folder in its place, no permission, a full disk) is an
:class:`OutboxUnwritable` naming the file and the fix: :func:`legato.deliver.dispatch.transports`
checks each file before a cycle decides anything, and a send that fails later leaves its
messages pending (the dispatcher's transaction rolls back).
"""

from __future__ import annotations

import json
import os
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
            "elsewhere; messages not written stay pending for the next run",
        )


class Transport(Protocol):
    def send(self, messages: list[dict[str, Any]]) -> None: ...


class FileTransport:
    def __init__(self, path: Path, channel: str | None = None) -> None:
        self.path = path
        self.channel = channel
        self._written: set[object] | None = None

    def check(self) -> None:
        """Raise :class:`OutboxUnwritable` unless the file can be appended to (creating it and its folder)."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8"):
                pass
        except OSError as exc:
            raise OutboxUnwritable(self.path, exc, self.channel) from exc

    def _already_written(self) -> set[object]:
        if self._written is None:
            self._written = set()
            if self.path.exists():
                with self.path.open(encoding="utf-8") as lines:
                    self._written = {json.loads(line)["message_id"] for line in lines if line.strip()}
        return self._written

    def send(self, messages: list[dict[str, Any]]) -> None:
        written = self._already_written()
        fresh = [m for m in messages if m["message_id"] not in written]
        if not fresh:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as out:
                out.write("".join(json.dumps(m, ensure_ascii=False, default=str) + "\n" for m in fresh))
                out.flush()
                os.fsync(out.fileno())
        except OSError as exc:
            raise OutboxUnwritable(self.path, exc, self.channel) from exc
        written.update(m["message_id"] for m in fresh)


class ConsoleTransport:
    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console()

    def send(self, messages: list[dict[str, Any]]) -> None:
        for message in messages:
            heading = message.get("subject") or message.get("title") or ""
            self.console.print(f"[bold]{message['channel']}[/] → {message['to']}: {heading}")
            self.console.print(message["body"], markup=False, highlight=False)
