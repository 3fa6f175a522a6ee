"""Limits on what one request or one key may send.

``BodyLimit`` refuses a body over its route's limit with 413 before the route reads it
(Segment's own limits on its routes: 32 KB a call, 500 KB a batch; the server's limit
elsewhere); ``RateLimiter`` is a token bucket (``rate`` a second, ``burst`` at once) per
bucket key that answers 429 with ``Retry-After``: per API key for the routes a key opens
(:meth:`RateLimiter.take`), per client address for the public links a message carries
(:meth:`RateLimiter.wait_for`, asked by :mod:`legato.api.routes.links`). The buckets live in
the server process: with several server processes each has its own, which the note on
``legato serve`` says.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable
from typing import Any

from fastapi import Request

from starlette.exceptions import HTTPException as StarletteHTTPException

from legato.api.errors import ApiError

TOO_LARGE_HINT = "send fewer calls in a batch, or smaller ones"

SEGMENT_CALL = 32 * 1024
SEGMENT_BATCH = 500 * 1024
SEGMENT_CALLS = {"/v1/identify", "/v1/track", "/v1/page", "/v1/screen", "/v1/group", "/v1/alias"}


def limit_for(path: str, default: int) -> int:
    if path == "/v1/batch":
        return SEGMENT_BATCH
    if path in SEGMENT_CALLS:
        return SEGMENT_CALL
    return default


class BodyLimit:
    """ASGI middleware: 413 for a body over its route's limit, whether or not it says its length."""

    def __init__(self, app: Any, default: int, limit: Callable[[str, int], int] = limit_for) -> None:
        self.app, self.default, self.limit = app, default, limit

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        allowed = self.limit(scope["path"], self.default)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > allowed:
            await _too_large(scope, send, allowed)
            return
        seen = 0

        async def counted() -> dict[str, Any]:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > allowed:
                    # An HTTPException, so FastAPI's body reading passes it on to the error handlers.
                    raise BodyTooLarge(allowed, scope["path"])
            return message

        await self.app(scope, counted, send)


class BodyTooLarge(StarletteHTTPException):
    def __init__(self, allowed: int, path: str) -> None:
        super().__init__(413, f"the body is larger than {allowed:,} bytes, the limit of {path}")


async def _too_large(scope: dict[str, Any], send: Any, allowed: int) -> None:
    body = json.dumps({
        "error": {"kind": "too_large", "message": BodyTooLarge(allowed, scope["path"]).detail, "hint": TOO_LARGE_HINT, "problems": []},
        # observe's middleware, which wraps this one, has given the request its id by now.
        "request_id": (scope.get("state") or {}).get("request_id"),
    }).encode()
    await send({"type": "http.response.start", "status": 413, "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class RateLimiter:
    """A token bucket per bucket key: ``burst`` requests at once, refilled at ``rate`` a second."""

    # Buckets kept before the full ones are forgotten (a full bucket is what a new one would
    # be): client addresses come and go, and must not grow the process without bound.
    MAX_BUCKETS = 100_000

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self._buckets: dict[Any, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def wait_for(self, key: Any) -> int:
        """Take one token from ``key``'s bucket: 0 when there was one, else the whole seconds to
        wait for the next (nothing taken)."""
        if self.rate <= 0:
            return 0
        now = time.monotonic()
        with self._lock:
            tokens, then = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - then) * self.rate)
            if tokens < 1.0:
                self._buckets[key] = (tokens, now)
                return max(1, math.ceil((1.0 - tokens) / self.rate))
            if len(self._buckets) >= self.MAX_BUCKETS and key not in self._buckets:
                self._forget_full(now)
            self._buckets[key] = (tokens - 1.0, now)
            return 0

    def _forget_full(self, now: float) -> None:
        full = [k for k, (tokens, then) in self._buckets.items() if tokens + (now - then) * self.rate >= self.burst]
        for key in full:
            del self._buckets[key]

    def take(self, request: Request, caller: Any) -> None:
        wait = self.wait_for(caller.key_id)
        if wait:
            raise ApiError(429, "rate_limited", f"the key {caller.name!r} sent more than {self.rate:g} requests a second",
                           hint=f"wait {wait} s and send again, or batch calls", headers={"Retry-After": str(wait)})
