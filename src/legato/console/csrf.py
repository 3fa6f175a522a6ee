"""Cross-site request forgery: every POST to the console carries its session's token.

Each session has one random token (:attr:`legato.console.auth.Session.csrf`), put in every
form as the hidden field ``csrf`` (templates: ``{{ csrf_field() }}``) and sent by
``console.js``'s fetch posts as the header ``X-CSRF-Token``. A POST whose token is missing or
not the session's is refused with 403 before anything is done; so is a POST whose ``Origin``
names another site. ``SameSite=Strict`` on the session cookie already keeps other sites'
requests from carrying it; the token is the second lock, and the one that holds when a
browser ignores SameSite.

The sign-in form has no session yet: its token is a double-submit cookie
(:data:`SIGN_IN_COOKIE`) set with the form, so another site cannot sign a visitor in under
its own key (login CSRF).

Forms are read here (:func:`form_of`), URL-encoded; the one form with a file (the playbook
upload) posts ``multipart/form-data``, whose text fields are read here too (python-multipart).
"""

from __future__ import annotations

import hmac
from urllib.parse import parse_qsl, urlsplit

from fastapi import Request

from legato.api.security import Ability
from legato.console.auth import Session, signed_in

HEADER = "x-csrf-token"
FIELD = "csrf"
SIGN_IN_COOKIE = "legato_console_signin"
FORM_LIMIT = 64 * 1024  # bytes of a console form: reasons and notes, never files
FILE_FORM_LIMIT = 1024 * 1024  # bytes of a form with a file (multipart): a playbook, within the API's body limit


class BadToken(Exception):
    """The POST's CSRF token (or its origin) is not this session's: refused with 403, nothing done."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why


async def form_of(request: Request) -> dict[str, str]:
    """The posted form's fields (the last value of a repeated name wins; ``getlist`` needs: :func:`form_lists`)."""
    return {name: values[-1] for name, values in (await form_lists(request)).items()}


async def form_lists(request: Request) -> dict[str, list[str]]:
    cached = getattr(request.state, "console_form", None)
    if cached is not None:
        return cached
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = await request.body()
    limit = FILE_FORM_LIMIT if content_type == "multipart/form-data" else FORM_LIMIT
    if len(body) > limit:
        raise BadToken(f"the form is larger than {limit // 1024} KiB")
    found: dict[str, list[str]] = {}
    if content_type in ("application/x-www-form-urlencoded", ""):
        for name, value in parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True):
            found.setdefault(name, []).append(value)
    elif content_type == "multipart/form-data":  # a form with a file (the playbook upload): its page reads the file from request.form()
        for name, value in (await request.form(max_files=1, max_fields=16)).multi_items():
            if isinstance(value, str):
                found.setdefault(name, []).append(value)
    request.state.console_form = found
    return found


def same_origin(request: Request) -> bool:
    """A POST from a page of this server (or from a client that sends no Origin, such as a script)."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    host = request.headers.get("host", "")
    return urlsplit(origin).netloc == host


async def check(request: Request, expected: str) -> None:
    if not same_origin(request):
        raise BadToken("this form was sent from another site")
    given = request.headers.get(HEADER) or (await form_of(request)).get(FIELD, "")
    if not given or not hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8")):
        raise BadToken("the form's security token is missing or out of date; reload the page and send it again")


def checked(ability: Ability):  # type: ignore[no-untyped-def]
    """The dependency of a console POST: signed in with ``ability`` (else sign-in or 403) and the session's CSRF token."""
    needs = signed_in(ability)

    async def dependency(request: Request) -> Session:
        session = needs(request)
        await check(request, session.csrf)
        return session

    dependency.__name__ = f"csrf_{ability.value}"
    return dependency
