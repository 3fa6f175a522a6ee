"""The console mounted on the API's app: its pages, static files, headers and error pages.

:func:`install` is called by :func:`legato.api.app.create_app` (and :func:`install_headers`
after every other middleware). It includes the router of each
page module of :mod:`legato.console.pages` that exists (:data:`PAGES`), the sign-in and the
console's event stream, serves ``static/`` at ``/static``, adds the security headers
(:mod:`legato.console.headers`), and answers the console's errors as pages: not signed in →
the sign-in page (303), a role without the ability or a bad CSRF token → 403, a service error
→ its status with its message and hint, an unknown page → 404. The API's paths keep their
JSON errors.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from legato.console.auth import NotSignedIn, Refused, secret_of
from legato.console.csrf import BadToken
from legato.console.headers import SecurityHeaders, is_console_path
from legato.errors import LegatoError

# The page modules, each an APIRouter named ``router``; a module not written yet is left out.
PAGES = ("sign_in", "live", "overview", "agents", "review", "decisions", "playbook")
STATIC = Path(__file__).with_name("static")


def install(app: FastAPI) -> None:
    secret_of(app.state)  # made now, so every request of this process signs with one secret
    for name in PAGES:
        module_name = f"legato.console.pages.{name}"
        if importlib.util.find_spec(module_name) is None:
            continue
        module = importlib.import_module(module_name)
        app.include_router(module.router, include_in_schema=False)
    app.mount("/static", StaticFiles(directory=STATIC), name="console-static")
    _errors(app)


def install_headers(app: FastAPI) -> None:
    """The security headers, outermost of all middleware (``create_app`` calls it last), so even an
    answer made outside the app's handlers (an unexpected error's 500) carries them."""
    app.add_middleware(SecurityHeaders, fastapi=app)


def _errors(app: FastAPI) -> None:
    from legato.api.errors import STATUS_OF_KIND, kind_of

    api_legato = app.exception_handlers[LegatoError]
    api_http = app.exception_handlers[StarletteHTTPException]
    api_validation = app.exception_handlers[RequestValidationError]
    api_bug = app.exception_handlers.get(Exception)

    @app.exception_handler(NotSignedIn)
    async def _not_signed_in(request: Request, error: NotSignedIn) -> Response:
        wanted = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        if request.method != "GET" or request.headers.get("x-console-fetch") or request.url.path == "/stream":
            return error_page(request, 401, "Not signed in", str(error), link=("/sign-in?why=" + error.why, "Sign in"))
        target = f"/sign-in?why={error.why}" + (f"&next={quote(wanted, safe='')}" if wanted not in ("/", "/sign-in") else "")
        return RedirectResponse(target, status_code=303)

    @app.exception_handler(Refused)
    async def _refused(request: Request, error: Refused) -> Response:
        from legato.api.security import ROLES

        admitted = ", ".join(sorted(r.value for r in ROLES[error.ability]))
        return error_page(request, 403, "Not allowed for your role",
                          f"You are signed in as {error.session.name} ({error.session.role.value}). "
                          f"Only {admitted} keys may {error.ability.value} here.",
                          hint="ask an admin for a key with that role")

    @app.exception_handler(BadToken)
    async def _bad_token(request: Request, error: BadToken) -> Response:
        return error_page(request, 403, "Refused: the form's security check failed", error.why)

    @app.exception_handler(LegatoError)
    async def _legato(request: Request, error: LegatoError) -> Response:
        if not is_console_path(request.url.path):
            return await api_legato(request, error)  # type: ignore[misc, arg-type]
        kind = kind_of(error)
        titles = {"not_found": "Not found", "conflict": "Not now", "invalid": "Not valid", "forbidden": "Not allowed"}
        return error_page(request, STATUS_OF_KIND[kind], titles.get(kind, "That did not work"), error.message, hint=error.hint)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, error: StarletteHTTPException) -> Response:
        if not is_console_path(request.url.path):
            return await api_http(request, error)  # type: ignore[misc, arg-type]
        if error.status_code == 404:
            return error_page(request, 404, "No such page", f"There is no page at {request.url.path}.", link=("/", "Go to the overview"))
        if error.status_code == 405:
            return error_page(request, 405, "Not here", "This page does not take that kind of request.")
        return error_page(request, error.status_code, "Refused", str(error.detail))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, error: RequestValidationError) -> Response:
        if not is_console_path(request.url.path):
            return await api_validation(request, error)  # type: ignore[misc, arg-type]
        problems = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', 'invalid')}" for e in error.errors())
        return error_page(request, 422, "Something in the address is not right", problems, hint="check the filters and try again")

    if api_bug is not None:
        @app.exception_handler(Exception)
        async def _bug(request: Request, error: Exception) -> Response:
            if not is_console_path(request.url.path):
                return await api_bug(request, error)  # type: ignore[misc]
            answer = await api_bug(request, error)  # logs it with the request id, and finds a user's error in it
            request_id = getattr(request.state, "request_id", None)
            return error_page(request, answer.status_code, "Something went wrong",
                              "The error is logged" + (f" under request id {request_id}" if request_id else "") + ".",
                              hint="tell the operator the request id")


def error_page(request: Request, status: int, title: str, message: str, *, hint: str | None = None,
               link: tuple[str, str] | None = None) -> Response:
    from legato.console.render import page

    return page(request, "error.html", status_code=status, title=title, message=message, hint=hint, link=link)
