"""Signing in with an API key, and out.

``GET /sign-in`` shows the form (and why the person is asked: a code, :data:`legato.console.auth.WHY`);
``POST /sign-in`` checks the key through :mod:`legato.service.keys` and starts a session
(:mod:`legato.console.auth`); an unknown or revoked key is refused with 401 and a sentence that
says so, a key whose role cannot read (``ingest``) with 403. ``POST /sign-out`` ends it.
The sign-in form carries a double-submit token (:data:`legato.console.csrf.SIGN_IN_COOKIE`).
"""

from __future__ import annotations

import hmac
import secrets

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import RedirectResponse, Response

from legato.api.security import ROLES, Ability
from legato.console import auth
from legato.console.auth import COOKIE, WHY, Session, new_session, seal, secret_of
from legato.console.csrf import FIELD, SIGN_IN_COOKIE, BadToken, checked, form_of, same_origin
from legato.console.render import page

router = APIRouter()


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path of this console only (never another site)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target or target.startswith("/sign-"):
        return "/"
    return target


def _form(request: Request, *, status: int = 200, message: str | None = None, why: str | None = None, target: str = "/") -> Response:
    token = secrets.token_urlsafe(24)
    answer = page(request, "sign_in.html", status_code=status, session=None, csrf_token=token, message=message,
                  why=WHY.get(why or "", None), next=target)
    answer.set_cookie(SIGN_IN_COOKIE, token, httponly=True, samesite="strict", secure=auth.secure(request), path="/sign-in", max_age=3600)
    return answer


@router.get("/sign-in")
def sign_in_form(request: Request, why: str | None = Query(None, max_length=32), next: str | None = Query(None, max_length=2000)) -> Response:
    return _form(request, why=why, target=safe_next(next))


@router.post("/sign-in")
async def sign_in(request: Request) -> Response:
    from legato.service import keys

    form = await form_of(request)
    target = safe_next(form.get("next"))
    expected = request.cookies.get(SIGN_IN_COOKIE, "")
    given = form.get(FIELD, "")
    if not same_origin(request) or not expected or not hmac.compare_digest(expected.encode(), given.encode()):
        raise BadToken("the sign-in form is out of date or came from another site; open the sign-in page again")
    secret = form.get("key", "").strip()
    if not secret:
        return _form(request, status=422, message="Enter your API key.", target=target)
    found = keys.find(request.app.state.context.engine, secret)
    if found is None:
        return _form(request, status=401, target=target,
                     message="That key is unknown or revoked. Check it, or ask an admin for a new one (legato keys create).")
    if found.role not in ROLES[Ability.READ]:
        return _form(request, status=403, target=target,
                     message=f"A {found.role.value} key cannot use the console: it only sends data in. Use a viewer, marketer, reviewer or admin key.")
    session = new_session(found.id, found.name, found.role)
    answer = RedirectResponse(target, status_code=303)
    answer.set_cookie(COOKIE, seal(secret_of(request.app.state), session), **auth.cookie_options(request, session))
    answer.delete_cookie(SIGN_IN_COOKIE, path="/sign-in")
    return answer


@router.post("/sign-out")
async def sign_out(request: Request, session: Session = Depends(checked(Ability.READ))) -> Response:
    answer = RedirectResponse("/sign-in?why=signed_out", status_code=303)
    answer.delete_cookie(COOKIE, path="/")
    return answer
