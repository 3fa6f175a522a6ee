"""Segment's tracking API: ``/v1/identify``, ``/v1/track``, ``/v1/page``, ``/v1/screen``,
``/v1/group``, ``/v1/alias`` and ``/v1/batch``, so a shop's Segment (or RudderStack) code
feeds Legato by changing the host and the key.

Authenticated as Segment does: HTTP Basic with an ingest key as the user name and an empty
password (``Bearer`` works too). What each call becomes is :mod:`legato.service.tracking`'s
(docs/api.md); every call a request carries is applied in one transaction.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from legato.api import segment
from legato.api.context import ApiContext, context
from legato.api.errors import ErrorBody, Problem, respond
from legato.api.observe import events_ingested
from legato.api.security import Ability, Caller, allow
from legato.api.settings import UnknownCustomers
from legato.service import tracking

router = APIRouter(prefix="/v1", tags=["segment"])

RULES = (
    "Segment's call (docs/api.md says what each field becomes). **200** `{\"success\": true, ...}`: every call applied, "
    "or applied before (its messageId). **207**: some calls refused, each in `errors` with its index, field and reason; "
    "nothing of a refused call is written, the others are. **400**: the request breaks Segment's limits (32 KB a call, "
    "2,500 calls a batch). **422**: the body does not match the schema, or every call was refused: nothing written. "
    "Fields outside Segment's spec are ignored and listed in `warnings`."
)
RESPONSES: dict[int | str, dict[str, Any]] = {
    207: {"model": segment.Answer, "description": "some calls refused, each with its index, field and reason; the others applied"},
    400: {"model": ErrorBody, "description": "the request breaks Segment's limits: 32 KB a call, 2,500 calls a batch"},
    422: {"model": ErrorBody, "description": "the body does not match the schema, or every call was refused: nothing written"},
}


def _receive(request: Request, ctx: ApiContext, caller: Caller, body: BaseModel, where: str) -> JSONResponse:
    segment.check_limits(body)
    calls = segment.calls(body, where)
    done = tracking.receive(
        ctx.engine, calls, received_at=ctx.now(), playbook=ctx.playbook_or_none(),
        create_customers=ctx.settings.unknown_customers is UnknownCustomers.CREATE, source=f"segment:{caller.name}",
    )
    events_ingested(request, done.events_written, source="segment")

    def path(index: int, field: str | None) -> str:
        at = where if where == "body" else f"{where}.{index}"
        return f"{at}.{field}" if field else at

    answer = segment.Answer(
        success=done.rejected == 0, received=done.received, applied=done.applied, duplicates=done.duplicates, rejected=done.rejected,
        errors=[segment.CallProblem(index=e.index, field=path(e.index, e.field), reason=e.reason) for e in done.errors],
        not_regranted=[segment.CallProblem(index=e.index, field=path(e.index, e.field), reason=e.reason) for e in done.not_regranted],
        customers_created=done.customers_created, warnings=segment.warnings(body, where),
    )
    if done.rejected and done.rejected == done.received:
        return respond(request, 422, "invalid", f"every call was refused ({done.rejected} of {done.received}); nothing was written",
                       hint="fix each field listed in problems and send the calls again",
                       problems=[Problem(field=p.field, reason=p.reason) for p in answer.errors])
    return JSONResponse(answer.model_dump(mode="json"), status_code=207 if done.rejected else 200)


def _route(path: str, model: type[BaseModel], summary: str) -> None:
    where = "body"

    def receive(body: model, request: Request, caller: Caller = Depends(allow(Ability.INGEST)),  # type: ignore[valid-type]
                ctx: ApiContext = Depends(context)) -> JSONResponse:
        return _receive(request, ctx, caller, body, where)

    receive.__annotations__["body"] = model  # the model itself: FastAPI cannot find a local name
    receive.__name__ = f"segment_{path.strip('/')}"
    router.add_api_route(path, receive, methods=["POST"], response_model=segment.Answer, responses=RESPONSES,
                         summary=summary, description=RULES)


_route("/identify", segment.Identify, "Segment identify: who the customer is (fields, consents, attributes)")
_route("/track", segment.Track, "Segment track: an event (Order Completed is a purchase)")
_route("/page", segment.Page, "Segment page: a visit")
_route("/screen", segment.Screen, "Segment screen: a visit in an app")
_route("/group", segment.Group, "Segment group: the customer's group_id")
_route("/alias", segment.Alias, "Segment alias: previousId stands for userId from now on")


@router.post("/batch", response_model=segment.Answer, responses=RESPONSES, description=RULES,
             summary="Segment batch: any of the calls above, each with its type (what Segment's libraries send)")
def segment_batch(body: segment.Batch, request: Request, caller: Caller = Depends(allow(Ability.INGEST)),
                  ctx: ApiContext = Depends(context)) -> JSONResponse:
    return _receive(request, ctx, caller, body, "body.batch")
