"""A lean HTTP/1.1 client for many small POSTs to one origin (the webhook transport's).

Why not httpx: measured on the 2-core bench machine (``bench/webhook_delivery.py``), httpx's
connection pool costs about 500 µs of CPU per request (its locks, its models, h11, a thread
per request in flight), more than twice the dispatcher's own work per message, so no
dispatcher built on it could deliver 2,000 webhooks/s. A webhook needs little of HTTP: one
origin, POST with a known length, the status and ``Retry-After`` of the answer, keep-alive.
This client does only that, at about a tenth of the CPU: ``connections`` kept-alive sockets
(TLS through :mod:`ssl`, certificates verified against certifi's bundle, as httpx does), one
request in flight on each (no pipelining), all driven from the caller's thread by one
:mod:`selectors` loop, so there are no threads to switch between.

Answers are read per RFC 9112 §6.3: no body for 1xx, 204 and 304; ``Transfer-Encoding:
chunked``; ``Content-Length``; otherwise until the server closes. A connection is kept
unless the answer says ``Connection: close`` (or is HTTP/1.0 without keep-alive), its body
ran until close, or anything about it was wrong. An idle connection with something to read
was closed by the server (or sent what nobody asked for): it is dropped before reuse. A
request that fails on a reused connection before any byte of its answer came is sent once
more on a new connection (the server closed the idle connection as the request went; a
webhook may be sent twice, its receiver deduplicates by ``webhook-id``). Redirects are not
followed (the caller decides what a 3xx means); proxies are not used.

Errors name the host (never the URL's user, password, path or query) and never the request.
"""

from __future__ import annotations

import selectors
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any
from urllib.parse import urlsplit

MAX_HEAD = 64 * 1024  # an answer's status line and headers; more is not a webhook receiver's answer
READ = 65_536


class FailureKind(str, Enum):
    CONNECT = "connect"  # no connection could be made (refused, no route, a failed TLS handshake)
    TIMEOUT = "timeout"  # no (whole) answer within the timeout
    DROPPED = "dropped"  # the connection broke before the answer was whole
    PROTOCOL = "protocol"  # an answer that is not HTTP/1.1


@dataclass(frozen=True)
class Answer:
    """The server's answer: its status and headers (names in lower case; a repeated header's last value)."""

    status: int
    headers: dict[str, str]


@dataclass(frozen=True)
class Failure:
    """No answer: why, and what happened (an exception's name, never a secret)."""

    kind: FailureKind
    detail: str


class _Protocol(Exception):
    """The server's bytes are not an HTTP/1.1 answer."""


@dataclass
class Request:
    """One POST: its caller's key, its extra headers and its body."""

    key: Any
    headers: dict[str, str]
    body: bytes


class Origin:
    """Kept-alive connections to one origin (scheme, host, port); not thread-safe: one caller at a time."""

    def __init__(self, url: str, *, connections: int = 8, timeout: float = 10.0, ssl_context: ssl.SSLContext | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("the URL is not an http:// or https:// URL with a host")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.timeout = timeout
        self.connections = max(1, connections)
        self._ssl = ssl_context if ssl_context is not None or parts.scheme != "https" else _default_context()
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        authority = parts.netloc.rpartition("@")[2]  # never the user and password
        self._prefix = f"POST {target} HTTP/1.1\r\nhost: {authority}\r\n".encode("ascii")
        self._idle: list[_Connection] = []
        # Every open connection stays registered, idle ones too: an idle one that turns readable
        # was closed by the server, and is dropped before anyone sends on it.
        self._selector = selectors.DefaultSelector()
        self.opened = 0  # connections made so far (tests see the reuse)

    def close(self) -> None:
        for connection in self._idle:
            self._drop(connection)
        self._idle = []
        self._selector.close()
        self._selector = selectors.DefaultSelector()

    def exchange(self, take: Callable[[], Request | None], give: Callable[[Request, Answer | Failure], None]) -> None:
        """POST what ``take`` returns until it returns None, ``connections`` at a time; ``give``
        gets each request's answer (or failure) as it comes. ``take`` is asked only when a
        connection is free, so a caller that stops taking (after a 429) sends nothing more."""
        busy: dict[_Connection, tuple[Request, float]] = {}  # connection -> its request and deadline
        exhausted = False
        try:
            while True:
                while not exhausted and len(busy) < self.connections:
                    request = take()
                    if request is None:
                        exhausted = True
                        break
                    self._start(request, busy, give)
                if not busy:
                    return
                wait = min(deadline for _, deadline in busy.values()) - time.monotonic()
                for key, _ in self._selector.select(max(0.0, wait)):
                    connection = key.data
                    if connection in busy:
                        self._read(connection, busy, give)
                    elif connection in self._idle:  # closed by the server while idle (or junk)
                        self._idle.remove(connection)
                        self._drop(connection)
                now = time.monotonic()
                for connection, (request, deadline) in list(busy.items()):
                    if deadline <= now:
                        del busy[connection]
                        self._drop(connection)
                        give(request, Failure(FailureKind.TIMEOUT, "no answer in time"))
        finally:
            for connection in busy:
                self._drop(connection)  # a caller's error mid-exchange: nothing half-read is reused

    def _start(self, request: Request, busy: dict[_Connection, tuple[Request, float]], give: Callable[..., None], *, fresh: bool = False) -> None:
        """Send ``request`` on an idle connection (or a new one) and watch for its answer."""
        data = self._prefix + b"".join(
            f"{name}: {value}\r\n".encode("latin-1") for name, value in request.headers.items()
        ) + b"content-length: %d\r\n\r\n" % len(request.body) + request.body
        deadline = time.monotonic() + self.timeout
        while True:
            reused = bool(self._idle) and not fresh
            if reused:
                connection = self._idle.pop()
            else:
                try:
                    connection = _Connection.open(self.host, self.port, self.timeout, self._ssl)
                except OSError as exc:  # includes ssl.SSLError (a failed handshake) and TimeoutError
                    give(request, Failure(FailureKind.CONNECT, type(exc).__name__))
                    return
                self.opened += 1
                self._selector.register(connection.sock, selectors.EVENT_READ, connection)
            try:
                connection.sock.sendall(data)
            except OSError as exc:
                self._drop(connection)
                if reused:
                    fresh = True  # the server closed the idle connection as the request went: once more, on a new one
                    continue
                kind = FailureKind.TIMEOUT if isinstance(exc, TimeoutError) else FailureKind.DROPPED
                give(request, Failure(kind, type(exc).__name__))
                return
            connection.reset()
            busy[connection] = (request, deadline)
            return

    def _drop(self, connection: _Connection) -> None:
        try:
            self._selector.unregister(connection.sock)
        except (KeyError, ValueError):
            pass
        connection.close()

    def _read(self, connection: _Connection, busy: dict[_Connection, tuple[Request, float]], give: Callable[..., None]) -> None:
        request, _ = busy[connection]
        lost: OSError | None = None
        try:
            answer = connection.receive()
        except _Protocol as exc:
            del busy[connection]
            self._drop(connection)
            give(request, Failure(FailureKind.PROTOCOL, str(exc)))
            return
        except OSError as exc:
            answer, lost = None, exc
        if answer is None and lost is None and not connection.closed_by_server:
            return  # more to come
        del busy[connection]
        if answer is not None:
            if connection.keep:
                connection.used = True
                self._idle.append(connection)
            else:
                self._drop(connection)
            give(request, answer)
            return
        self._drop(connection)
        if connection.used and not connection.received and (lost is None or isinstance(lost, ConnectionResetError)):
            # Closed as the request went (an idle timeout on the server's side): once more, on a new one.
            self._start(request, busy, give, fresh=True)
            return
        if isinstance(lost, TimeoutError):
            give(request, Failure(FailureKind.TIMEOUT, "TimeoutError"))
            return
        give(request, Failure(FailureKind.DROPPED, type(lost).__name__ if lost is not None else "closed before the answer was whole"))


def _default_context() -> ssl.SSLContext:
    try:
        import certifi  # httpx's trust store: the same receivers are trusted as before

        return ssl.create_default_context(cafile=certifi.where())
    except ImportError:  # pragma: no cover - certifi comes with httpx
        return ssl.create_default_context()


class _Connection:
    """One socket and the answer being read on it."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.used = False  # it carried a whole exchange before
        self.keep = True
        self.received = False  # a byte of the current answer came
        self.closed_by_server = False
        self._buffer = b""
        self._status: int | None = None
        self._headers: dict[str, str] = {}
        self._framing: str | int | None = None  # "chunked", "close", or how many bytes of the body are still to come
        self._chunked_at = 0  # chunked: how far the buffer's chunks have been checked

    @classmethod
    def open(cls, host: str, port: int, timeout: float, context: ssl.SSLContext | None) -> _Connection:
        sock = socket.create_connection((host, port), timeout=timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # a small request goes at once, not after the last ACK
            if context is not None:
                sock = context.wrap_socket(sock, server_hostname=host)
        except BaseException:
            sock.close()
            raise
        return cls(sock)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def reset(self) -> None:
        self.keep = True
        self.received = False
        self.closed_by_server = False
        self._buffer = b""
        self._status = None
        self._headers = {}
        self._framing = None
        self._chunked_at = 0

    def receive(self) -> Answer | None:
        """Read what came; the answer once it is whole, else None (``closed_by_server`` says
        whether more can come)."""
        data = self.sock.recv(READ)
        while isinstance(self.sock, ssl.SSLSocket) and self.sock.pending():  # TLS may hold decrypted bytes select() cannot see
            data += self.sock.recv(READ)
        if not data:
            self.closed_by_server = True
            if self._framing == "close" and self._status is not None:  # the body ran until close: whole now
                self.keep = False
                return Answer(self._status, self._headers)
            return None
        self.received = True
        self._buffer += data
        return self._parse()

    def _parse(self) -> Answer | None:
        while True:
            if self._status is None:
                end = self._buffer.find(b"\r\n\r\n")
                if end < 0:
                    if len(self._buffer) > MAX_HEAD:
                        raise _Protocol("an answer's headers longer than 64 KiB")
                    return None
                head, self._buffer = self._buffer[:end], self._buffer[end + 4 :]
                status, headers, keep, framing = _head(head)
                if 100 <= status < 200:  # an interim answer (100 Continue, 103 Early Hints): the final one follows
                    continue
                self._status, self._headers, self.keep, self._framing = status, headers, keep, framing
            framing = self._framing
            if framing == "close":
                self.keep, self._buffer = False, b""  # the body is not kept: only the status and headers count
                return None  # until the server closes
            if framing == "chunked":
                return self._chunks()
            assert isinstance(framing, int)
            remaining = framing - len(self._buffer)
            if remaining > 0:
                self._framing, self._buffer = remaining, b""  # what is still to come, not the body itself
                return None
            if remaining < 0:
                self.keep = False  # bytes nobody asked for: the answer stands, the connection is not reused
            return Answer(self._status, self._headers)

    def _chunks(self) -> Answer | None:
        buffer, at = self._buffer, self._chunked_at
        while True:
            line_end = buffer.find(b"\r\n", at)
            if line_end < 0:
                if len(buffer) - at > 1024:
                    raise _Protocol("a chunk size line longer than 1 KiB")
                break
            size_text = buffer[at:line_end].split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise _Protocol("a chunk size that is not hexadecimal") from None
            if size < 0:
                raise _Protocol("a negative chunk size")
            if size == 0:
                trailer_end = buffer.find(b"\r\n\r\n", line_end) if buffer[line_end + 2 : line_end + 4] != b"\r\n" else line_end
                if trailer_end < 0:
                    break
                if len(buffer) > trailer_end + 4:
                    self.keep = False  # bytes nobody asked for: the connection is not reused
                assert self._status is not None
                return Answer(self._status, self._headers)
            if len(buffer) < line_end + 2 + size + 2:
                break
            if buffer[line_end + 2 + size : line_end + 4 + size] != b"\r\n":
                raise _Protocol("a chunk not followed by CRLF")
            at = line_end + 4 + size
        # Chunks already checked need not be kept: only their end matters.
        self._buffer, self._chunked_at = buffer[at:], 0
        return None


def _head(head: bytes) -> tuple[int, dict[str, str], bool, str | int]:
    """The status, headers, keep-alive and body framing of an answer's head (RFC 9112)."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit() or len(parts[1]) != 3:
        raise _Protocol("not an HTTP/1.x status line")
    status = int(parts[1])
    headers: dict[str, str] = {}
    lengths: set[str] = set()
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip():
            continue  # an obsolete folded line or a malformed one: no header a webhook answer needs
        text = value.strip().decode("latin-1")
        key = name.decode("latin-1").lower()
        if key == "content-length":
            lengths.add(text)
        headers[key] = text
    connection = {token.strip() for token in headers.get("connection", "").lower().split(",")}
    keep = "keep-alive" in connection if parts[0] == b"HTTP/1.0" else "close" not in connection
    if status in (204, 304) or 100 <= status < 200:
        return status, headers, keep, 0
    coding = headers.get("transfer-encoding", "").lower()
    if coding:
        if coding.split(",")[-1].strip() == "chunked":
            return status, headers, keep, "chunked"
        return status, headers, False, "close"
    if lengths:
        if len(lengths) > 1 or not next(iter(lengths)).isdigit():
            raise _Protocol("a Content-Length that is not one number")
        return status, headers, keep, int(next(iter(lengths)))
    return status, headers, False, "close"
