"""``Idempotency-Key``: a state-changing request sent again gets the first answer, and the work is done once.

Every POST, PUT, PATCH and DELETE may carry the header (1 to 255 visible ASCII characters,
e.g. a UUID). Keys are per API key: two callers' keys never meet. For a key already used:

- the same request (method, path, query and body; a JSON body compared as data, so key
  order and spacing do not matter) → the first answer again, status and body, with
  ``Idempotent-Replayed: true``; the route does not run;
- another request → 422 (a key names one request);
- the first request still being answered → 409 with ``Retry-After``: its row, with no status
  yet, is the claim, taken by an INSERT that only one request can win, before the route runs.

**What is kept.** Every answer the route gave, 500s included (the work may have been done;
asking again must not do it twice), except those that say the route never ran or could not
commit: 401, 403, 413, 429, 503. For those the claim is released and the same key may be sent
again. A request without a valid key, or whose body is over its limit, is passed on untouched:
the route refuses it.

**Retention.** Records live 24 hours from the first request (Stripe's rule): then the key is
free again and a request with it is new. Expired rows are deleted at most every 10 minutes,
by the next request with a key (no scheduler needed); one that expired but is not deleted yet
is treated as gone.

**A crash between the work and its record.** The route's own transaction commits the work;
the answer is written after, in another. If the server dies in between, the claim stays
without a status: every retry with that key gets 409 ("begun at T, no answer yet"), never a
second run, until the record expires. Whether the work was done is then for the client to
check (read the resource) before sending it with a new key. At most once, at the price of a
client checking by hand after a crash: for approvals, stage changes and cycles a silent
second run is the worse failure.

This module is the one writer of ``idempotency_records``.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from legato.api.errors import ErrorBody, ErrorDetail, Problem
from legato.api.security import presented_key
from legato.store import api_keys
from legato.store.schema import idempotency_records

HEADER = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"
METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_VALID_KEY = re.compile(r"[\x21-\x7e]{1,255}")
RETENTION = timedelta(hours=24)
PRUNE_EVERY = 600.0  # seconds between two deletions of expired records, per server process
# Answers that mean the route did not run or its work did not commit: the key may be used again.
RELEASED = frozenset({401, 403, 413, 429, 503})


@dataclass(frozen=True)
class Stored:
    request_hash: str
    status_code: int | None
    response: str | None
    created_at: datetime


def request_hash(method: str, path: str, query: bytes, body: bytes, content_type: str) -> str:
    """SHA-256 of what makes two requests the same one."""
    canonical = body
    if "json" in content_type and body:
        try:
            canonical = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode()
        except (ValueError, UnicodeDecodeError):
            pass  # not JSON after all: the bytes as sent
    digest = hashlib.sha256()
    for part in (method.encode(), path.encode(), query, canonical):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


class Records:
    """The table's rows for one store: claim, answer, release, read, prune."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._pruned_at = float("-inf")

    def claim(self, key_id: int, key: str, hashed: str, now: datetime) -> Stored | None:
        """Take the key for this request (None), or the record that already holds it."""
        self._prune(now)
        for _ in range(3):  # a record that expired is taken over; a race for it is lost at most twice
            try:
                with self.engine.begin() as connection:
                    connection.execute(sa.delete(idempotency_records).where(
                        idempotency_records.c.key_id == key_id, idempotency_records.c.idempotency_key == key,
                        idempotency_records.c.created_at < now - RETENTION,
                    ))
                    connection.execute(sa.insert(idempotency_records).values(
                        key_id=key_id, idempotency_key=key, request_hash=hashed, status_code=None, response=None, created_at=now,
                    ))
                return None
            except IntegrityError:
                found = self.read(key_id, key)
                if found is not None:
                    return found
        raise RuntimeError("an idempotency record appeared and vanished three times in a row")

    def read(self, key_id: int, key: str) -> Stored | None:
        with self.engine.connect() as connection:
            row = connection.execute(sa.select(idempotency_records).where(
                idempotency_records.c.key_id == key_id, idempotency_records.c.idempotency_key == key,
            )).first()
        return None if row is None else Stored(row.request_hash, row.status_code, row.response, row.created_at)

    def answer(self, key_id: int, key: str, status: int, content_type: str | None, body: bytes) -> None:
        response = json.dumps({"content_type": content_type, "body": body.decode("utf-8", "surrogateescape")})
        with self.engine.begin() as connection:
            connection.execute(sa.update(idempotency_records).where(
                idempotency_records.c.key_id == key_id, idempotency_records.c.idempotency_key == key,
                idempotency_records.c.status_code.is_(None),
            ).values(status_code=status, response=response))

    def release(self, key_id: int, key: str) -> None:
        with self.engine.begin() as connection:
            connection.execute(sa.delete(idempotency_records).where(
                idempotency_records.c.key_id == key_id, idempotency_records.c.idempotency_key == key,
                idempotency_records.c.status_code.is_(None),
            ))

    def _prune(self, now: datetime) -> None:
        if time.monotonic() - self._pruned_at < PRUNE_EVERY:
            return
        self._pruned_at = time.monotonic()
        with self.engine.begin() as connection:
            connection.execute(sa.delete(idempotency_records).where(idempotency_records.c.created_at < now - RETENTION))


class Idempotency:
    """ASGI middleware over every route; only requests with the header and a valid key are held to it."""

    def __init__(self, app: ASGIApp, fastapi: FastAPI) -> None:
        self.app, self.fastapi = app, fastapi
        self.records = Records(fastapi.state.context.engine)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in METHODS:
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        key = request.headers.get(HEADER)
        if key is None:
            await self.app(scope, receive, send)
            return
        if not _VALID_KEY.fullmatch(key):
            await _refuse(scope, send, 422, "invalid", f"the {HEADER} header must be 1 to 255 visible ASCII characters",
                          "send a UUID or another token without spaces", [Problem(field=f"header.{HEADER}", reason="1 to 255 visible ASCII characters")])
            return
        secret = presented_key(request)
        found = None if secret is None else await run_in_threadpool(api_keys.find, self.records.engine, secret)
        if found is None:
            await self.app(scope, receive, send)  # the route answers 401
            return
        body, replay = await _read_body(receive)
        if replay is not None:  # over the limit or cut off: the route sees the same and answers it
            await self.app(scope, replay, send)
            return
        hashed = request_hash(scope["method"], scope["path"], scope.get("query_string", b""), body, request.headers.get("content-type", ""))
        now = self.fastapi.state.context.now()
        stored = await run_in_threadpool(self.records.claim, found.id, key, hashed, now)
        if stored is not None:
            await _answer_again(scope, send, stored, hashed)
            return
        await self._run(scope, _replaying(body, receive), send, found.id, key)

    async def _run(self, scope: Scope, receive: Receive, send: Send, key_id: int, key: str) -> None:
        """Run the route, and record its answer before the client sees any of it: a client that has
        the answer and sends again finds the record, not the claim."""
        start: Message | None = None
        chunks: list[bytes] = []
        recorded = False

        async def record(status: int, content_type: str | None, body: bytes) -> None:
            nonlocal recorded
            recorded = True
            if status in RELEASED:
                await run_in_threadpool(self.records.release, key_id, key)
            else:
                await run_in_threadpool(self.records.answer, key_id, key, status, content_type, body)

        async def sending(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                start = message
                return
            if message["type"] != "http.response.body" or start is None:
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            body = b"".join(chunks)
            content_type = next((v.decode("latin-1") for n, v in start.get("headers", []) if n.lower() == b"content-type"), None)
            await record(start["status"], content_type, body)
            await send(start)
            await send({"type": "http.response.body", "body": body})

        try:
            await self.app(scope, receive, sending)
        finally:
            if not recorded:
                # The route failed before answering: observe's handler answers 500 outside. It is
                # kept as a 500, since the work may have been done before the failure.
                await record(500, "application/json", _failure_body(scope))


async def _read_body(receive: Receive) -> tuple[bytes, Receive | None]:
    """The whole body, or a stand-in ``receive`` that gives the route what stopped the reading."""
    chunks: list[bytes] = []
    while True:
        try:
            message = await receive()
        except StarletteHTTPException as error:  # the body limit (legato.api.limits) refused it
            return b"", _raising(error)
        if message["type"] == "http.disconnect":
            return b"", _replaying(b"".join(chunks), receive, more=True, last=message)
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks), None


def _raising(error: Exception) -> Receive:
    async def receive() -> Message:
        raise error

    return receive


def _replaying(body: bytes, receive: Receive, *, more: bool = False, last: Message | None = None) -> Receive:
    """A ``receive`` that gives the body already read, then what the client sends next (a disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": more}
        if last is not None:
            return last
        return await receive()

    return replay


async def _answer_again(scope: Scope, send: Send, stored: Stored, hashed: str) -> None:
    if stored.request_hash != hashed:
        await _refuse(scope, send, 422, "invalid", f"this {HEADER} was used with another request (method, path, query or body)",
                      "a key names one request: send this one with a new key",
                      [Problem(field=f"header.{HEADER}", reason="used with another request")])
        return
    if stored.status_code is None:
        await _refuse(scope, send, 409, "conflict", f"a request with this {HEADER} began at {stored.created_at:%Y-%m-%d %H:%M:%S} UTC and has no answer yet",
                      "wait and send it again; if the server stopped while answering it, the work may or may not be done: "
                      "check its result, then send it with a new key", headers={"Retry-After": "1"})
        return
    kept = json.loads(stored.response or "{}")
    body = str(kept.get("body", "")).encode("utf-8", "surrogateescape")
    headers = [(b"content-length", str(len(body)).encode()), (REPLAYED.lower().encode(), b"true")]
    if kept.get("content_type"):
        headers.append((b"content-type", str(kept["content_type"]).encode("latin-1")))
    await send({"type": "http.response.start", "status": stored.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _failure_body(scope: Scope) -> bytes:
    return json.dumps(_error(scope, "internal", "an internal error; it is logged under this request id", "report the request id to the operator")).encode()


def _error(scope: Scope, kind: str, message: str, hint: str | None, problems: list[Problem] | None = None) -> dict[str, Any]:
    return ErrorBody(error=ErrorDetail(kind=kind, message=message, hint=hint, problems=problems or []),
                     request_id=(scope.get("state") or {}).get("request_id")).model_dump(mode="json")


async def _refuse(scope: Scope, send: Send, status: int, kind: str, message: str, hint: str | None = None,
                  problems: list[Problem] | None = None, headers: dict[str, str] | None = None) -> None:
    body = json.dumps(_error(scope, kind, message, hint, problems)).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(name.lower().encode(), value.encode()) for name, value in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


HEADER_PARAMETER: dict[str, Any] = {
    "name": HEADER, "in": "header", "required": False,
    "description": "Makes the request safe to send again: the same key and request get the first answer (24 hours); "
                   "the same key with another request is 422; while the first is being answered, 409.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[\\x21-\\x7e]+$"},
}


def document(app: FastAPI) -> None:
    """Add the header, and its 409, to every state-changing operation of the OpenAPI spec."""
    build: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        spec = build()
        for item in spec.get("paths", {}).values():
            for method, operation in item.items():
                if method.upper() not in METHODS:
                    continue
                parameters = operation.setdefault("parameters", [])
                if not any(p.get("name", "").lower() == HEADER.lower() for p in parameters):
                    parameters.append(HEADER_PARAMETER)
                operation.setdefault("responses", {}).setdefault("409", {
                    "description": "the state changed or does not allow it, or a request with this Idempotency-Key is still being answered",
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
                })
        app.openapi_schema = spec
        return spec

    app.openapi = openapi  # type: ignore[method-assign]


def install(app: FastAPI) -> None:
    """Hold every state-changing route to its Idempotency-Key (add inside the body limit, which counts what it reads)."""
    app.add_middleware(Idempotency, fastapi=app)
    document(app)


__all__ = ["HEADER", "Idempotency", "Records", "install", "request_hash"]
