"""Operations: is the server alive, and can it serve (store reachable, schema current)."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import text

from legato.api.context import ApiContext, context

router = APIRouter(tags=["operations"])


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str  # ready | not_ready
    database: str  # reachable | unreachable
    migrations: str  # current | behind | unknown
    revision: str | None = None
    head: str | None = None
    reason: str | None = None


@router.get("/healthz", response_model=Health, summary="The process is alive")
def healthz() -> Health:
    return Health(status="ok")


@router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness, "description": "not ready"}},
            summary="The store answers and its schema is the newest")
def readyz(ctx: ApiContext = Depends(context)) -> JSONResponse:
    from alembic.script import ScriptDirectory

    from legato.store.db import alembic_config

    head = ScriptDirectory.from_config(alembic_config(ctx.engine)).get_current_head()
    try:
        with ctx.engine.connect() as connection:
            revision = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except Exception as error:  # any failure to read means not ready; the reason says which
        ready = Readiness(status="not_ready", database="unreachable", migrations="unknown", head=head, reason=type(error).__name__)
        return JSONResponse(ready.model_dump(), status_code=503)
    current = revision == head
    ready = Readiness(status="ready" if current else "not_ready", database="reachable", migrations="current" if current else "behind",
                      revision=revision, head=head, reason=None if current else "run any legato command on this store to migrate it")
    return JSONResponse(ready.model_dump(), status_code=200 if current else 503)
