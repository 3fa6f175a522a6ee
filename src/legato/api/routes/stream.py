"""Server-sent events at ``/v1/stream``: what changes in the store, as it changes.

Events (``event:`` names; ``data:`` is JSON): ``review_item`` (a new item in the queue),
``review_item_decided``, ``trust_stage_changed`` (with its ``cause``: playbook, promotion,
demotion, compliance breach), ``stop_loss_breach`` (a stage change too, with the breach),
``agent_paused``, ``agent_resumed``, ``cycle_started``, ``cycle_finished``. No customer ids:
the console fetches what it shows through the other routes, under its key's role.

The store is polled every second (:mod:`legato.service.changes`), so changes made by any
process appear. Each event's ``id`` is the stream position after it: a client that reconnects
with ``Last-Event-ID`` (browsers do it themselves) gets what it missed; without one it starts
from now. A comment line every ``heartbeat`` seconds keeps proxies from closing an idle
stream. The stream ends when the client goes away, and when the server shuts down
(:class:`legato.api.serving.Server` tells it), so a shutdown never waits on open streams.
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator

import anyio
from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request
from fastapi.sse import EventSourceResponse, ServerSentEvent

from legato.api.context import ApiContext, context
from legato.api.security import Ability, Caller, allow
from legato.service.changes import Cursor, Reader, now_cursor

router = APIRouter(prefix="/v1", tags=["stream"])

POLL = 1.0  # seconds between two reads of the store
TICK = 0.2  # seconds between two looks at the client and the server (a disconnect or a shutdown ends the stream within this)
RETRY_MS = 2000  # what a browser waits before reconnecting


def closing(app: FastAPI) -> threading.Event:
    """Set when the server begins to shut down: every stream ends at its next tick."""
    event = getattr(app.state, "closing", None)
    if event is None:
        event = app.state.closing = threading.Event()
    return event


def start_of(
    ctx: ApiContext = Depends(context),
    last_event_id: str | None = Header(None, alias="Last-Event-ID", max_length=400,
                                       description="The id of the last event received: the stream resumes after it"),
) -> Cursor:
    """Where the stream starts; a malformed Last-Event-ID is 422 before the stream opens."""
    return Cursor.parse(last_event_id) if last_event_id else now_cursor(ctx.engine)


@router.get(
    "/stream",
    response_class=EventSourceResponse,
    summary="Changes as they happen (server-sent events): review items, trust stages, stop-loss, cycles",
)
async def stream(
    request: Request,
    caller: Caller = Depends(allow(Ability.READ)),
    ctx: ApiContext = Depends(context),
    start: Cursor = Depends(start_of),
    heartbeat: float = Query(15.0, ge=1.0, le=300.0, description="Seconds between keep-alive comments"),
) -> AsyncIterator[ServerSentEvent]:
    async for event in changes(request, ctx, start, heartbeat):
        yield event


async def changes(request: Request, ctx: ApiContext, start: Cursor, heartbeat: float) -> AsyncIterator[ServerSentEvent]:
    """The stream's events from ``start`` until the client leaves or the server shuts down (the
    console's ``/stream`` serves the same, signed in by its session instead of a key)."""
    reader = Reader(ctx.engine, start)
    stopping = closing(request.app)
    poll = getattr(request.app.state, "stream_poll", POLL)
    yield ServerSentEvent(comment="legato stream", retry=RETRY_MS, id=str(start))
    last_read = last_beat = float("-inf")
    while not stopping.is_set():
        now = time.monotonic()
        if now - last_read >= poll:
            last_read = now
            for change in await anyio.to_thread.run_sync(reader.read):
                last_beat = time.monotonic()
                yield ServerSentEvent(event=change.event, data=change.data, id=str(change.cursor))
        if now - last_beat >= heartbeat:
            last_beat = now
            yield ServerSentEvent(comment="heartbeat")
        if await request.is_disconnected():
            return
        await anyio.sleep(TICK)
