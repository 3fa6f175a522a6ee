"""The webhook transport's HTTP/1.1 client against real servers on 127.0.0.1.

A scripted server reads each request for real (head and Content-Length body) and answers
with the exact bytes a test gives, so each way an answer can be framed (Content-Length,
chunked with trailers, until close, an interim 100, HTTP/1.0) and each way a connection can
end (closed while idle, closed as a request came, never answering, garbage) is exercised on
a socket, not a mock. TLS runs against a server whose certificate a test CA (trustme) signed.
"""

from __future__ import annotations

import http.server
import itertools
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import trustme

from legato.deliver.http1 import Answer, Failure, FailureKind, Origin, Request
from legato.deliver.webhook import WebhookTransport

from tests.deliver.receivers import WebhookReceiver, new_secret

NO_CONTENT = b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n"


class Scripted:
    """A TCP server: for the n-th request on a connection (counting from 0), ``answer(n,
    request)`` returns the bytes to write and whether to close the connection after them
    (None: close without answering). Counts connections and requests."""

    def __init__(self, answer: Callable[[int, bytes], tuple[bytes | None, bool]], replied: Callable[[bytes], None] | None = None) -> None:
        self.answer = answer
        self.replied = replied or (lambda request: None)  # told once a request's answer is written
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/hooks?token=s3cret"
        self.connections = 0
        self.requests: list[bytes] = []
        self.lock = threading.Lock()
        self.open_sockets: list[socket.socket] = []

    def _serve(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
                self.open_sockets.append(sock)
            threading.Thread(target=self._connection, args=(sock,), daemon=True).start()

    def _connection(self, sock: socket.socket) -> None:
        buffer, n = b"", 0
        try:
            while True:
                while b"\r\n\r\n" not in buffer:
                    data = sock.recv(65536)
                    if not data:
                        return
                    buffer += data
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")), 0)
                while len(buffer) < length:
                    buffer += sock.recv(65536)
                request, buffer = head + b"\r\n\r\n" + buffer[:length], buffer[length:]
                with self.lock:
                    self.requests.append(request)
                reply, close = self.answer(n, request)
                n += 1
                if reply is not None:
                    sock.sendall(reply)
                    self.replied(request)
                if reply is None or close:
                    return
        except OSError:
            return
        finally:
            sock.close()

    def close_idle(self) -> None:
        """Close every connection from the server's side (an idle timeout)."""
        with self.lock:
            for sock in self.open_sockets:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    @contextmanager
    def running(self) -> Iterator[Scripted]:
        thread = threading.Thread(target=self._serve, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.listener.close()
            self.close_idle()


def post_all(origin: Origin, count: int) -> dict[int, Answer | Failure]:
    results: dict[int, Answer | Failure] = {}
    keys = iter(range(count))

    def take() -> Request | None:
        key = next(keys, None)
        return None if key is None else Request(key, {"webhook-id": f"m-{key}"}, b'{"n": %d}' % key)

    def give(request: Request, answer: Answer | Failure) -> None:
        assert request.key not in results, "one result per request"
        results[request.key] = answer

    origin.exchange(take, give)
    return results


def statuses(results: dict[int, Answer | Failure]) -> list[Any]:
    return [r.status if isinstance(r, Answer) else r.kind for _, r in sorted(results.items())]


def test_connections_are_kept_alive_across_requests_and_exchanges() -> None:
    with Scripted(lambda n, r: (NO_CONTENT, False)).running() as server:
        origin = Origin(server.url, connections=4, timeout=5)
        first = post_all(origin, 50)
        second = post_all(origin, 50)
        origin.close()
    assert statuses(first) == [204] * 50 and statuses(second) == [204] * 50
    assert server.connections == 4 and origin.opened == 4 and len(server.requests) == 100
    request = server.requests[0]
    assert request.startswith(b"POST /hooks?token=s3cret HTTP/1.1\r\n") and b"\r\nhost: 127.0.0.1:%d\r\n" % server.port in request
    assert request.endswith(b'\r\ncontent-length: 8\r\n\r\n{"n": 0}') and b"webhook-id: m-0" in request


def test_answers_framed_every_way_http_1_1_allows() -> None:
    replies = [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world", False),
        (b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: yes\r\n\r\n", False),
        (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", False),
        (b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 7\r\nContent-Length: 2\r\n\r\n{}", False),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 300000\r\n\r\n" + b"x" * 300_000, False),  # read in several pieces
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n30d40\r\n" + b"y" * 200_000 + b"\r\n0\r\n\r\n", False),
        (b"HTTP/1.0 500 Oops\r\nContent-Length: 0\r\n\r\n", False),  # HTTP/1.0 without keep-alive: the connection closes
        (b"HTTP/1.1 503 Busy\r\nConnection: close\r\n\r\nuntil the server closes", True),  # no length: body until close
    ]
    overall = itertools.count()  # across connections: a new one follows the HTTP/1.0 answer and the closed one

    def answer(n: int, request: bytes) -> tuple[bytes | None, bool]:
        i = next(overall)
        return replies[i] if i < len(replies) else (NO_CONTENT, False)

    with Scripted(answer).running() as server:
        origin = Origin(server.url, connections=1, timeout=5)
        results = post_all(origin, len(replies) + 1)
        origin.close()
    assert statuses(results) == [200, 201, 202, 429, 200, 200, 500, 503, 204]
    assert results[3].headers["retry-after"] == "7"  # type: ignore[union-attr]
    assert server.connections == 3  # a new connection after the HTTP/1.0 answer and after the one that closed


def test_a_connection_the_server_closed_while_idle_is_not_used_again() -> None:
    with Scripted(lambda n, r: (NO_CONTENT, False)).running() as server:
        origin = Origin(server.url, connections=2, timeout=5)
        assert statuses(post_all(origin, 10)) == [204] * 10
        server.close_idle()
        assert statuses(post_all(origin, 10)) == [204] * 10  # no failure: the closed ones were dropped, new ones made
        origin.close()
    assert server.connections == 4


def test_a_request_on_a_kept_connection_that_the_server_drops_unanswered_goes_once_more_on_a_new_one() -> None:
    # The server closes each connection when its second request comes, without answering (as
    # an idle timeout that fires as the request arrives): the request is sent again, fresh.
    with Scripted(lambda n, r: (NO_CONTENT, False) if n == 0 else (None, True)).running() as server:
        origin = Origin(server.url, connections=1, timeout=5)
        results = post_all(origin, 3)
        origin.close()
    assert statuses(results) == [204, 204, 204]
    ids = [r.split(b"webhook-id: ")[1].split(b"\r\n")[0] for r in server.requests]
    assert ids == [b"m-0", b"m-1", b"m-1", b"m-2", b"m-2"]  # at least once; the receiver deduplicates by webhook-id


def test_a_new_connection_dropped_unanswered_a_silent_server_and_garbage_are_failures() -> None:
    with Scripted(lambda n, r: (None, True)).running() as dropping:
        assert statuses(post_all(Origin(dropping.url, connections=1, timeout=5), 1)) == [FailureKind.DROPPED]
    with Scripted(lambda n, r: (b"", False)).running() as silent:
        assert statuses(post_all(Origin(silent.url, connections=2, timeout=0.3), 2)) == [FailureKind.TIMEOUT] * 2
    with Scripted(lambda n, r: (b"SMTP ready\r\n\r\n", False)).running() as garbage:
        [failure] = post_all(Origin(garbage.url, connections=1, timeout=5), 1).values()
    assert isinstance(failure, Failure) and failure.kind is FailureKind.PROTOCOL and "s3cret" not in failure.detail


def test_nobody_listening_is_a_connect_failure() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()
    results = post_all(Origin(f"http://127.0.0.1:{port}/h", connections=2, timeout=2), 3)
    assert statuses(results) == [FailureKind.CONNECT] * 3


@pytest.fixture(scope="module")
def tls_server() -> Iterator[tuple[str, trustme.CA]]:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers["content-length"]))
            self.send_response(204)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(context)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"https://localhost:{server.server_address[1]}/hooks", ca
    server.shutdown()
    server.server_close()


def test_tls_with_a_trusted_certificate_and_kept_connections(tls_server: tuple[str, trustme.CA]) -> None:
    url, ca = tls_server
    context = ssl.create_default_context()
    ca.configure_trust(context)
    origin = Origin(url, connections=3, timeout=5, ssl_context=context)
    assert statuses(post_all(origin, 30)) == [204] * 30
    assert origin.opened == 3
    origin.close()


def test_tls_refuses_a_certificate_no_trusted_authority_signed(tls_server: tuple[str, trustme.CA]) -> None:
    url, _ = tls_server
    [failure] = post_all(Origin(url, connections=1, timeout=5), 1).values()  # certifi's authorities, as in production
    assert isinstance(failure, Failure) and failure.kind is FailureKind.CONNECT and "SSL" in failure.detail


def test_every_request_verifies_with_standardwebhooks_at_a_threaded_receiver() -> None:
    """The client against the standard library's HTTP server (the tests' receiver)."""
    secret = new_secret()
    with WebhookReceiver(secret).running() as receiver:
        hook = WebhookTransport(receiver.url, secret, concurrency=6)
        outcomes = hook.send([{"message_id": f"m-{i}", "channel": "webhook", "body": "é ✓" * i} for i in range(60)])
        hook.close()
    assert all(o.delivered for o in outcomes) and [o.message_id for o in outcomes] == [f"m-{i}" for i in range(60)]
    assert receiver.rejected == 0 and len(receiver.unique) == 60 and receiver.unique["m-7"]["data"]["body"] == "é ✓" * 7


def test_a_429_among_concurrent_requests_stops_the_rest_of_the_batch() -> None:
    """Four in flight; m-5 is answered 429 and every later request is held by the server until
    that answer is written, so at most the three in flight and one more per connection (answers
    read in the same round as the 429) go out after it: nothing is taken once the 429 is read."""
    limited_written = threading.Event()

    def answer(n: int, request: bytes) -> tuple[bytes | None, bool]:
        key = int(request.split(b"webhook-id: m-")[1].split(b"\r\n")[0])
        if key == 5:
            return b"HTTP/1.1 429 Too Many Requests\r\nretry-after: 30\r\ncontent-length: 0\r\n\r\n", False
        if key > 5:
            assert limited_written.wait(10)
        return NO_CONTENT, False

    def replied(request: bytes) -> None:
        if b"webhook-id: m-5\r\n" in request:
            limited_written.set()

    with Scripted(answer, replied).running() as server:
        hook = WebhookTransport(server.url, new_secret(), concurrency=4)
        outcomes = hook.send([{"message_id": f"m-{i}", "channel": "webhook", "body": "hi"} for i in range(40)])
        hook.close()
    limited = outcomes[5]
    assert not limited.delivered and limited.attempted and limited.retry_after == 30
    posted = [o for o in outcomes if o.attempted]
    held = [o for o in outcomes if not o.attempted]
    assert len(server.requests) == len(posted) <= 6 + 3 + 3 and len(held) == 40 - len(posted)
    assert all(o.delivered for o in posted if o is not limited)
    assert all(o.retry_after == 30 and "429" in str(o.error) for o in held)  # they wait without using an attempt
    assert [o.message_id for o in outcomes] == [f"m-{i}" for i in range(40)]
