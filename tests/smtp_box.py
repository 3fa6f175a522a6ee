"""A real SMTP server on loopback for the tests (aiosmtpd), and what it received.

``Mailbox`` runs aiosmtpd's server in a thread on 127.0.0.1 (a free port), keeps every
message it accepted (envelope and bytes; parsed with the standard ``email`` package on
demand; the TLS version it came over, if any), and can be told to refuse recipients
(``refuse[address] = (550, "...")``) or their message after the data (``refuse_data``), to
stop and start again on the same port (a server that goes away; ``stop(graceful=True)``
answers 421 to new mail and lets the messages in flight be answered first, as a server
shutting down does), or to drop the connection after the whole message came and before
answering (``vanish_after_data``). Extra keyword arguments go to aiosmtpd's ``Controller``
(``tls_context`` and ``require_starttls`` for STARTTLS, ``ssl_context`` for implicit TLS,
``authenticator``...).
"""

from __future__ import annotations

import email
import socket
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import default as DEFAULT_POLICY
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SMTPServer


@dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    tls: str | None = None  # the TLS version the message came over ("TLSv1.3"), None in clear

    def parsed(self) -> EmailMessage:
        message = email.message_from_bytes(self.data, policy=DEFAULT_POLICY)
        assert isinstance(message, EmailMessage)
        return message


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _tls(server: Any) -> str | None:
    ssl_object = server.transport.get_extra_info("ssl_object") if server.transport is not None else None
    return str(ssl_object.version()) if ssl_object is not None else None


class _Handler:
    def __init__(self, box: Mailbox) -> None:
        self.box = box

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str, mail_options: Any) -> str:
        if self.box.closing:
            return "421 4.3.2 shutting down, try again later"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any) -> str:
        refusal = self.box.refuse.get(address.lower())
        if refusal is not None:
            return f"{refusal[0]} {refusal[1]}"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.box.vanish_after_data:
            self.box.vanish_after_data -= 1
            self.box.received_then_vanished.append(Received(envelope.mail_from, tuple(envelope.rcpt_tos), bytes(envelope.original_content)))
            server.transport.abort()  # gone without a word: the client never learns
            return "250 never said"
        refusal = next((self.box.refuse_data[a.lower()] for a in envelope.rcpt_tos if a.lower() in self.box.refuse_data), None)
        if refusal is not None:
            return f"{refusal[0]} {refusal[1]}"
        with self.box.lock:
            self.box.received.append(Received(envelope.mail_from, tuple(envelope.rcpt_tos), bytes(envelope.original_content), _tls(server)))
            count = len(self.box.received)
        if self.box.after is not None and count == self.box.after[0]:
            threading.Thread(target=self.box.after[1], daemon=True).start()  # e.g. stop the server: not from inside its own loop
        return "250 Message accepted for delivery"


class Mailbox:
    def __init__(self, port: int | None = None, **controller: Any) -> None:
        self.port = port or free_port()
        self.lock = threading.Lock()
        self.received: list[Received] = []
        self.received_then_vanished: list[Received] = []
        self.refuse: dict[str, tuple[int, str]] = {}
        self.refuse_data: dict[str, tuple[int, str]] = {}  # recipient -> the answer to its message's data
        self.vanish_after_data = 0
        self.after: tuple[int, Any] | None = None  # (n, call): call (in a thread of its own) once n messages arrived
        self.closing = False
        self.controller_options = controller
        self._controller: Controller | None = None

    def start(self) -> Mailbox:
        # decode_data False keeps the bytes as sent; no size limit beyond the default.
        self.closing = False
        self._controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port, ready_timeout=10, **self.controller_options)
        self._controller.start()
        return self

    def stop(self, *, graceful: bool = False) -> None:
        """Stop listening. ``graceful``: first answer 421 to new mail for a moment, so that a
        message whose data came is answered before the connections close (a server restarted
        on purpose); otherwise connections are cut wherever they are."""
        if self._controller is not None:
            if graceful:
                self.closing = True
                time.sleep(0.5)
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> Mailbox:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def messages(self) -> list[EmailMessage]:
        with self.lock:
            return [r.parsed() for r in self.received]

    def message_ids(self) -> Counter[str]:
        """How many times each Message-ID arrived (read from the bytes' headers)."""
        with self.lock:
            found: Counter[str] = Counter()
            for r in self.received:
                head = r.data.split(b"\r\n\r\n", 1)[0]
                for line in head.split(b"\r\n"):
                    if line[:11].lower() == b"message-id:":
                        found[line[11:].strip().decode()] += 1
            return found


def each_arrived_once_or_in_doubt(rows: Sequence[Any], ids: Counter[str], recipients: Counter[str], total: int, connections: int) -> set[str]:
    """The SIGKILL tests' promise for ``total`` e-mails sent over ``connections`` connections:
    the outbox all sent, every decision's e-mail at the server (by Message-ID and by
    recipient), none more than twice, at most one twice per connection, and each that came
    twice recorded in doubt (as at most one per connection is). Returns the Message-IDs in doubt.

    ``rows``: outbox rows with ``message_id``, ``customer_id``, ``status``, ``decision`` (the
    decision's status) and ``in_doubt_at``, the customers' addresses at ``crash.example``.
    """
    assert len(rows) == total and {(r.status, r.decision) for r in rows} == {("sent", "sent")}
    assert set(ids) == {f"<{r.message_id}@crash.example>" for r in rows}
    assert set(recipients) == {f"{r.customer_id}@crash.example" for r in rows}
    twice = {key for key, n in ids.items() if n > 1}
    assert max(ids.values()) <= 2 and len(twice) <= connections
    assert sum(ids.values()) == total + len(twice) and sum(recipients.values()) == total + len(twice)
    in_doubt = {f"<{r.message_id}@crash.example>" for r in rows if r.in_doubt_at is not None}
    assert twice <= in_doubt and len(in_doubt) <= connections
    return in_doubt
