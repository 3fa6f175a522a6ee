"""``GET /stream``: the API's server-sent events (:mod:`legato.api.routes.stream`), signed in by
the console's session instead of a key, for ``console.js``'s ``EventSource`` (which cannot send
an ``Authorization`` header). The same events, from the same reader; no customer ids in them,
so a page that hears one fetches what it shows again, under the session's role."""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import APIRouter, Depends, Query, Request
from fastapi.sse import EventSourceResponse, ServerSentEvent

from legato.api.context import ApiContext, context
from legato.api.routes.stream import changes, start_of
from legato.api.security import Ability
from legato.console.auth import Session, signed_in
from legato.service.changes import Cursor

router = APIRouter()


@router.get("/stream", response_class=EventSourceResponse)
async def stream(
    request: Request,
    session: Session = Depends(signed_in(Ability.READ)),
    ctx: ApiContext = Depends(context),
    start: Cursor = Depends(start_of),
    heartbeat: float = Query(15.0, ge=1.0, le=300.0),
) -> AsyncIterator[ServerSentEvent]:
    async for event in changes(request, ctx, start, heartbeat):
        yield event
