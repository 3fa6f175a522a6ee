"""One error body for every failure, and the status each kind of error answers with.

The kinds are ``legato.errors``'s (``Invalid`` 422, ``NotFound`` 404, ``Conflict`` 409,
``Forbidden`` 403; a store that is busy or unreachable 503 with ``Retry-After``), plus what
only HTTP has (401 no or wrong key, 413 body too large, 429 rate limit). A request that does
not match its schema gets Pydantic's findings, each with the field's path (``body.traits.email``).
Anything else is a bug: logged with the request id, and answered with the request id only,
never a traceback.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from legato.errors import LegatoError, StoreBusy, StoreError, kind_of

log = logging.getLogger("legato.api")


class Problem(BaseModel):
    """One thing wrong with the request: where (``body.events.3.timestamp``) and why.

    A problem inside a document the request carries (a playbook's YAML) also gives its line
    and column there, and the fix when one is known."""

    field: str
    reason: str
    line: int | None = None
    column: int | None = None
    hint: str | None = None


class ErrorDetail(BaseModel):
    kind: str  # invalid, not_found, conflict, forbidden, unauthorized, too_large, rate_limited, store, internal
    message: str
    hint: str | None = None
    problems: list[Problem] = []


class ErrorBody(BaseModel):
    error: ErrorDetail
    request_id: str | None = None


class ApiError(Exception):
    """An HTTP-only refusal (401, 403 for a role, 413, 429) with its body and headers."""

    def __init__(self, status: int, kind: str, message: str, *, hint: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.kind, self.message, self.hint, self.headers = status, kind, message, hint, headers or {}


STATUS_OF_KIND = {"invalid": 422, "not_found": 404, "conflict": 409, "forbidden": 403, "store": 503}

# What every route may answer besides its own success (documented so clients and schemathesis know).
COMMON_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in (
        (401, "no key, a wrong key or a revoked key"),
        (403, "the key's role may not use this route"),
        (413, "the body is larger than this route accepts"),
        (422, "the request is malformed: every problem with its field"),
        (429, "the key's rate limit: wait Retry-After seconds"),
        (503, "the store is busy or unreachable: try again after Retry-After seconds"),
    )
}


def documented(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """Extra error statuses a route documents (404, 409), with the common error body."""
    descriptions = {404: "what the path names does not exist", 409: "the state changed or does not allow it", 400: "the call breaks a limit"}
    return {status: {"model": ErrorBody, "description": descriptions.get(status, "refused")} for status in statuses}


def body(request: Request, kind: str, message: str, hint: str | None = None, problems: list[Problem] | None = None) -> dict[str, Any]:
    return ErrorBody(
        error=ErrorDetail(kind=kind, message=message, hint=hint, problems=problems or []),
        request_id=getattr(request.state, "request_id", None),
    ).model_dump(mode="json")


def respond(request: Request, status: int, kind: str, message: str, *, hint: str | None = None,
            problems: list[Problem] | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body(request, kind, message, hint, problems), status_code=status, headers=headers)


def field_path(location: tuple[Any, ...] | list[Any]) -> str:
    return ".".join(str(part) for part in location)


def install(app: FastAPI) -> None:
    """Register the handlers: after this, no exception reaches a client as a traceback."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, error: ApiError) -> JSONResponse:
        return respond(request, error.status, error.kind, error.message, hint=error.hint, headers=error.headers)

    @app.exception_handler(LegatoError)
    async def _legato_error(request: Request, error: LegatoError) -> JSONResponse:
        return legato_response(request, error)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = [Problem(field=field_path(e.get("loc", ())), reason=e.get("msg", "invalid")) for e in error.errors()]
        first = problems[0] if problems else Problem(field="body", reason="invalid")
        message = f"{first.field}: {first.reason}" + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")
        return respond(request, 422, "invalid", message, hint="fix each field listed in problems and send the request again", problems=problems)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, error: StarletteHTTPException) -> JSONResponse:
        kind = {404: "not_found", 405: "method_not_allowed", 400: "invalid", 413: "too_large"}.get(error.status_code, "invalid")
        message = str(error.detail) if error.detail else "refused"
        hint = {404: "see /docs for the routes", 405: "see /docs for the routes", 413: "send fewer calls in a batch, or smaller ones"}.get(error.status_code)
        if error.status_code == 404 and error.detail == "Not Found":
            message = f"no route {request.url.path}"
        if error.status_code == 400 and error.detail == "There was an error parsing the body":
            # FastAPI's answer to a body it cannot decode (not UTF-8): malformed input, as bad JSON is.
            return respond(request, 422, "invalid", "the body could not be read: it must be JSON in UTF-8",
                           hint="send the body as UTF-8 JSON with Content-Type: application/json",
                           problems=[Problem(field="body", reason="not UTF-8 JSON")])
        return respond(request, error.status_code, kind, message, hint=hint, headers=getattr(error, "headers", None))

    @app.exception_handler(Exception)
    async def _bug(request: Request, error: Exception) -> JSONResponse:
        from legato.cli.output import user_error

        found = user_error(error)
        if found is not None:
            return legato_response(request, found)
        log.error("unhandled error", exc_info=(type(error), error, None), extra={"request_id": getattr(request.state, "request_id", None)})
        return respond(request, 500, "internal", "an internal error; it is logged under this request id", hint="report the request id to the operator")


def legato_response(request: Request, error: LegatoError) -> JSONResponse:
    kind = kind_of(error)
    headers = {"Retry-After": "1"} if isinstance(error, StoreBusy) or (isinstance(error, StoreError) and error.transient) else None
    # A playbook's problems (legato.playbook.problems.Placed) each keep their line and column.
    problems = [Problem(field=p.field, reason=p.message, line=p.line, column=p.column, hint=p.hint) for p in getattr(error, "placed", None) or []]
    return respond(request, STATUS_OF_KIND[kind], kind, error.message, hint=error.hint, headers=headers, problems=problems)
