"""A real HTTP server on 127.0.0.1 that takes Slack-style incoming-webhook POSTs, for the alert tests.

It keeps every request (its JSON and its ``Idempotency-Key``), can answer a script of statuses
first (503, 429 with Retry-After, 404), and can hold its answer until told (``hold``), so a test
can kill the sender after the receiver took the alert and before the sender heard back.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class SlackReceiver:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.posts: list[dict[str, Any]] = []  # every request that reached it, answered or not
        self.keys: Counter[str] = Counter()  # Idempotency-Key -> how many times it came
        self.script: list[tuple[int, dict[str, str]]] = []  # answers to give first
        self.hold = threading.Event()  # set: answer at once; clear: wait until set
        self.hold.set()
        self.arrived = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                with receiver.lock:
                    scripted = receiver.script.pop(0) if receiver.script else None
                    if scripted is None:
                        receiver.posts.append({"path": self.path, "json": json.loads(body), "key": self.headers.get("idempotency-key")})
                        receiver.keys[self.headers.get("idempotency-key") or ""] += 1
                receiver.arrived.set()
                if scripted is not None:
                    self._answer(scripted[0], b"no", scripted[1])
                    return
                receiver.hold.wait(60)
                self._answer(200, b"ok")

            def _answer(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
                try:
                    self.send_response(status)
                    for name, value in (headers or {}).items():
                        self.send_header(name, value)
                    self.send_header("content-length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass  # the sender is gone (killed on purpose)

        self._server = _Server(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def url(self, path: str = "/services/T000/B000/s3cr3tT0ken") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> SlackReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.hold.set()
        self._server.shutdown()
        self._server.server_close()

    def wait_for(self, n: int, deadline: float = 20.0) -> list[dict[str, Any]]:
        """The posts, once at least ``n`` have arrived (a deadline, never a fixed sleep)."""
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            with self.lock:
                if len(self.posts) >= n:
                    return list(self.posts)
            time.sleep(0.02)
        raise AssertionError(f"{len(self.posts)} posts arrived, waited for {n}")
