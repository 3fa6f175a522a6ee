"""The security headers of every console answer, and the session cookie's refresh.

Every answer outside the API's own paths (:func:`is_console_path`) gets:

- ``Content-Security-Policy``: scripts, styles, images and connections from this server only,
  no inline script (``console.js`` is a file; templates hold no ``<script>`` body and no
  ``on...=`` attribute), no plugins, forms post only here, and ``frame-ancestors 'none'`` (no
  other site may frame the console to trick a click);
- ``X-Content-Type-Options: nosniff``, ``X-Frame-Options: DENY`` (for browsers before
  ``frame-ancestors``), ``Referrer-Policy: same-origin`` (a page's address, which can name an
  agent or an item, never leaves the server), ``Cache-Control: no-store`` on pages (they hold
  the business's figures; static files may be cached).

The API's paths (``/v1/...``, ``/docs``, ``/metrics``...) keep their own answers: Swagger's
page at ``/docs`` needs its inline script.

A session used after :data:`~legato.console.auth.REFRESH` seconds gets its cookie rewritten
here with the new "last used" time (:mod:`legato.console.auth` puts it on the request).
"""

from __future__ import annotations

from http.cookies import SimpleCookie

from fastapi import FastAPI
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

API_PREFIXES = ("/v1/", "/docs", "/redoc", "/openapi.json", "/metrics", "/healthz", "/readyz")

CSP = "; ".join((
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "font-src 'self'",
    "form-action 'self'",
    "frame-ancestors 'none'",
    "base-uri 'none'",
    "object-src 'none'",
))

HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
    "cross-origin-opener-policy": "same-origin",
}


def is_console_path(path: str) -> bool:
    return path != "/v1" and not path.startswith(API_PREFIXES)


class SecurityHeaders:
    """ASGI middleware: the headers above on every console answer."""

    def __init__(self, app: ASGIApp, fastapi: FastAPI) -> None:
        self.app, self.fastapi = app, fastapi

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_console_path(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        static = scope.get("path", "").startswith("/static/")

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in HEADERS.items():
                    headers[name] = value
                if not static:
                    headers["cache-control"] = "no-store"
                refreshed = (scope.get("state") or {}).get("console_refresh")
                if refreshed is not None and "set-cookie" not in headers:
                    headers.append("set-cookie", _cookie(self.fastapi, scope, refreshed))
            await send(message)

        await self.app(scope, receive, sending)


def _cookie(fastapi: FastAPI, scope: Scope, session: object) -> str:
    from starlette.requests import Request

    from legato.console.auth import COOKIE, cookie_options, seal, secret_of

    request = Request(scope)
    options = cookie_options(request, session)  # type: ignore[arg-type]
    cookie: SimpleCookie = SimpleCookie()
    cookie[COOKIE] = seal(secret_of(fastapi.state), session)  # type: ignore[arg-type]
    morsel = cookie[COOKIE]
    morsel["path"] = options["path"]
    morsel["max-age"] = str(options["max_age"])
    morsel["httponly"] = True
    morsel["samesite"] = "Strict"
    if options["secure"]:
        morsel["secure"] = True
    return morsel.OutputString()
