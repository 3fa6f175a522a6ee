"""The FastAPI app: what every request goes through, and the routers of each resource.

A request gets a request id (``observe``: its log line and metrics too), passes the body limit
(413) and its ``Idempotency-Key`` (``idempotency``), is authenticated and its role
checked by its route's dependency (``security.allow``), and every error it meets becomes
one JSON body (``errors``). Routes only parse, call :mod:`legato.service` and shape the
answer; the rules live behind the service.
"""

from __future__ import annotations

from fastapi import FastAPI

from legato import __version__
from legato.api import errors, idempotency, observe
from legato.api.context import ApiContext
from legato.api.limits import BodyLimit, RateLimiter
from legato.api.security import state_roles
from legato.api.settings import ApiSettings

DESCRIPTION = """Legato's HTTP API: everything a marketer, a reviewer or a program can do.

Authenticate with `Authorization: Bearer KEY` (`legato keys create --name NAME --role ROLE`).
Segment's tracking routes (`/v1/identify`, `/v1/track`, ...) also take HTTP Basic with an
ingest key as the user name, as Segment's libraries send their write key.
"""


def create_app(settings: ApiSettings | None = None, *, engine: object | None = None) -> FastAPI:
    """The app for one store; ``engine`` (already migrated) overrides ``settings.database_url``."""
    from legato.api.routes import ROUTERS
    from legato.store.db import connect

    settings = settings or ApiSettings()
    app = FastAPI(
        title="Legato",
        version=__version__,
        description=DESCRIPTION,
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url="/redoc",
        responses=errors.COMMON_RESPONSES,
    )
    app.state.context = ApiContext(engine if engine is not None else connect(settings.database_url), settings)  # type: ignore[arg-type]
    app.state.limiter = RateLimiter(settings.rate_limit, settings.burst)
    app.state.link_limiter = RateLimiter(settings.link_rate_limit, settings.link_burst)  # per client address: the public links
    errors.install(app)
    for router in ROUTERS:
        state_roles(router)
        app.include_router(router)
    from legato.console.app import install as install_console
    from legato.console.app import install_headers

    install_console(app)  # the web console at /, on the same service layer (legato.console)
    idempotency.install(app)  # inside the body limit, which counts the body it reads
    app.add_middleware(BodyLimit, default=settings.body_limit)
    observe.install(app)  # every answer gets a request id, a log line and its metrics
    install_headers(app)  # outermost: every console answer, even a 500 made by observe, gets its security headers
    return app
