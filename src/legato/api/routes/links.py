"""The links a message carries, answered by ``legato serve`` with no key: the message's signed token
authenticates them (:func:`legato.api.security.token_authenticated`).

- ``/v1/unsubscribe?t=TOKEN``: the brand's ``unsubscribe_url`` is this route's public address
  and each message's link is it plus the message's token (:func:`legato.deliver.render.unsubscribe_link`).
  A **GET** shows a small confirmation page (mail scanners fetch links: a GET changes nothing)
  whose buttons POST; a **POST** with ``List-Unsubscribe=One-Click`` (RFC 8058, form-encoded,
  as mail providers send it from the ``List-Unsubscribe-Post`` header) revokes marketing on the
  message's channel at once, or on every channel with ``scope=all``, and cancels what waits
  there, through :func:`legato.trust.inbound.unsubscribe` (the consent owner and the outbox
  owner). A second POST changes nothing and answers the same page.
- ``/v1/open?t=TOKEN``: the open pixel (a 1x1 GIF), an ``open`` event of the message's decision.
- ``/v1/click?t=TOKEN&u=URL&s=SIG``: a tracked link: a ``click`` event, then a redirect to
  ``URL``, only when ``SIG`` is the message's signature of that very URL (no open redirect).

A token that was altered, made up or signed by a key retired since (``legato secret rotate``)
is refused with 400 and a page that says so; nothing is changed or recorded.

**Rate limit per client address.** The links take no key, so they are limited by the address
the request came from (``legato serve --link-rate-limit``, ``--link-burst``; one bucket per
address in :class:`legato.api.limits.RateLimiter`, the owner of the bucket arithmetic): past
it, 429 with ``Retry-After`` and a page that says to try again (the pixel answers its GIF with
the same status and header: nobody reads a pixel's body). The one exception is the one-click
unsubscribe POST: a customer's "no" must never be lost to a limit, and mailbox providers send
RFC 8058 POSTs from a few addresses of their own, in bulk. So a POST past the limit is still
carried out when its token holds (logged as taken past the limit); only a POST whose token
fails gets the 429 instead of the 400. The pages are
rendered by Jinja2 with autoescaping and show no personal data: the brand, the channel and
the choice, never the address.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, select_autoescape
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from legato.api.context import ApiContext, context
from legato.api.security import token_authenticated
from legato.errors import Invalid, LegatoError
from legato.deliver.tokens import token_message_id
from legato.service import deliveries
from legato.service.deliveries import Delivery, Report
from legato.trust import inbound

log = logging.getLogger("legato.api")
router = APIRouter(prefix="/v1", tags=["links"], dependencies=[Depends(token_authenticated)])

# A transparent 1x1 GIF (43 bytes).
PIXEL = bytes.fromhex("47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b")
CHANNEL_NAMES = {"email": "e-mail", "sms": "text message", "whatsapp": "WhatsApp", "push": "push notification", "webhook": "webhook"}
# No script, nothing from elsewhere, forms only to this server, never framed; the token stays out of Referer.
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Robots-Tag": "noindex",
}
TOKEN = Query("", description="The message's signed token, as the link carries it")
PIXEL_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}

_PAGES = Environment(autoescape=select_autoescape(default=True, default_for_string=True))
_PAGE = _PAGES.from_string("""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex"><title>{{ title }} - {{ brand }}</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:34em;margin:3em auto;padding:0 1em;color:#222}
button{font:inherit;padding:.5em 1em;margin:.25em 0;cursor:pointer}form{margin:.5em 0}.note{color:#555;font-size:.9em}</style>
</head><body><main>
<h1>{{ title }}</h1>
{% if state == "ask" %}
<p>Stop marketing messages from {{ brand }} by {{ channel }}?</p>
<form method="post" action="{{ action }}"><input type="hidden" name="List-Unsubscribe" value="One-Click">
<button type="submit">Unsubscribe from {{ channel }} marketing</button></form>
<form method="post" action="{{ action }}"><input type="hidden" name="List-Unsubscribe" value="One-Click"><input type="hidden" name="scope" value="all">
<button type="submit">Unsubscribe from everything</button></form>
<p class="note">"Everything" stops marketing from {{ brand }} on every channel: e-mail, text messages, WhatsApp and push notifications.
Messages you need, such as order updates, still reach you.</p>
{% elif state == "done" %}
<p>{{ brand }} will send you no more marketing by {{ what }}. It takes effect now.</p>
{% if not everything %}<form method="post" action="{{ action }}"><input type="hidden" name="List-Unsubscribe" value="One-Click"><input type="hidden" name="scope" value="all">
<button type="submit">Unsubscribe from everything</button></form>{% endif %}
<p class="note">Messages you need, such as order updates, still reach you.{% if support %} Questions: {{ support }}.{% endif %}</p>
{% else %}
<p>{{ message }}</p>
<p class="note">Nothing was changed.{% if support %} To unsubscribe another way, contact {{ support }}.{% endif %}</p>
{% endif %}
</main></body></html>
""")


def _brand(ctx: ApiContext) -> tuple[str, str | None]:
    try:
        playbook = ctx.playbook_or_none()
    except LegatoError:
        playbook = None
    if playbook is None:
        return "the sender", None
    return playbook.brand.name, playbook.brand.legal.support_contact


def _page(ctx: ApiContext, status: int, **values: object) -> HTMLResponse:
    brand, support = _brand(ctx)
    return HTMLResponse(_PAGE.render(brand=brand, support=support, **values), status_code=status, headers=HEADERS)


def _refused(ctx: ApiContext, error: LegatoError | None = None, *, status: int = 400) -> HTMLResponse:
    if status == 400:
        message = "This link is not valid: it was changed, or it is too old. Use the link in a recent message."
    else:
        message = "Your request could not be recorded just now. Please try again in a minute."
    return _page(ctx, status, title="Link not valid" if status == 400 else "Please try again", state="refused", message=message)


def _client(request: Request) -> str:
    """The address the request came from (uvicorn puts a trusted proxy's X-Forwarded-For there:
    ``--forwarded-allow-ips``)."""
    return request.client.host if request.client is not None else "unknown"


def _wait(request: Request) -> int:
    """0 when the client's address may send this request now, else the seconds to wait."""
    return int(request.app.state.link_limiter.wait_for(_client(request)))


def _slow_down(ctx: ApiContext, wait: int) -> HTMLResponse:
    page = _page(ctx, 429, title="Please try again", state="refused",
                 message=f"Too many requests came from your address just now. Please try again in {wait} seconds.")
    page.headers["Retry-After"] = str(wait)
    return page


def _action(request: Request, token: str) -> str:
    return f"{request.url.path}?t={token}"


PAGE_RESPONSES: dict[int | str, dict[str, object]] = {
    200: {"content": {"text/html": {}}, "description": "the page"},
    400: {"content": {"text/html": {}}, "description": "the link is not valid (altered, made up or too old): nothing was changed"},
    429: {"content": {"text/html": {}}, "description": "too many requests from this client address: try again after Retry-After seconds"},
    503: {"content": {"text/html": {}}, "description": "the store could not take it: try again"},
}


@router.get("/unsubscribe", response_class=HTMLResponse, responses=PAGE_RESPONSES,
            summary="The unsubscribe link's confirmation page: a button that unsubscribes, and one for everything")
def unsubscribe_page(request: Request, t: str = TOKEN, ctx: ApiContext = Depends(context)) -> HTMLResponse:
    wait = _wait(request)
    if wait:
        return _slow_down(ctx, wait)
    try:
        link = inbound.unsubscribe_link(ctx.engine, t)
    except Invalid as error:
        return _refused(ctx, error)
    except (LegatoError, SQLAlchemyError):
        return _refused(ctx, status=503)
    channel = CHANNEL_NAMES.get(link.channel, link.channel)
    return _page(ctx, 200, title="Unsubscribe", state="ask", channel=channel, action=_action(request, t))


_MULTIPART_ONE_CLICK = re.compile(rb'name="?List-Unsubscribe"?\r?\n(?:[^\r\n]+\r?\n)*\r?\n\s*One-Click\s*\r?\n', re.IGNORECASE)
_MULTIPART_ALL = re.compile(rb'name="?scope"?\r?\n(?:[^\r\n]+\r?\n)*\r?\n\s*all\s*\r?\n', re.IGNORECASE)


def _one_click(content_type: str, body: bytes) -> tuple[bool, bool]:
    """Whether the body holds ``List-Unsubscribe=One-Click`` (RFC 8058: form-encoded, or
    multipart/form-data) and whether it asks for every channel (``scope=all``)."""
    if content_type.lower().startswith("multipart/form-data"):
        return bool(_MULTIPART_ONE_CLICK.search(body)), bool(_MULTIPART_ALL.search(body))
    try:
        fields = parse_qsl(body.decode("utf-8"), keep_blank_values=True)
    except UnicodeDecodeError:
        return False, False
    one_click = any(k == "List-Unsubscribe" and v.strip() == "One-Click" for k, v in fields)
    return one_click, any(k == "scope" and v.strip().lower() == "all" for k, v in fields)


@router.post("/unsubscribe", response_class=HTMLResponse, responses=PAGE_RESPONSES,
             openapi_extra={"requestBody": {"content": {"application/x-www-form-urlencoded": {"schema": {
                 "type": "object", "required": ["List-Unsubscribe"],
                 "properties": {"List-Unsubscribe": {"type": "string", "enum": ["One-Click"]}, "scope": {"type": "string", "enum": ["channel", "all"]}}}}}}},
             summary="One-click unsubscribe (RFC 8058): marketing on the message's channel (or everything) revoked at once")
async def unsubscribe(request: Request, t: str = TOKEN, ctx: ApiContext = Depends(context)) -> HTMLResponse:
    # Past the limit, a valid token is still honoured (see the module's docstring): the wait
    # only refuses what would be refused anyway, and says to slow down instead of "not valid".
    wait = _wait(request)
    one_click, everything = _one_click(request.headers.get("content-type", ""), await request.body())
    if not one_click:
        if wait:
            return _slow_down(ctx, wait)
        return _page(ctx, 400, title="Unsubscribe", state="refused",
                     message="This request did not say List-Unsubscribe=One-Click; open the link in a browser to unsubscribe.")
    try:
        done = await run_in_threadpool(inbound.unsubscribe, ctx.engine, t, ctx.now(), every_channel=everything)
    except Invalid as error:
        return _slow_down(ctx, wait) if wait else _refused(ctx, error)
    except (LegatoError, SQLAlchemyError):
        return _refused(ctx, status=503)
    if wait:
        log.warning("a one-click unsubscribe from %s came past the link rate limit; taken, its token holds (message %s)", _client(request), done.message_id)
    what = "any channel" if everything else CHANNEL_NAMES.get(done.channel, done.channel)
    return _page(ctx, 200, title="You are unsubscribed", state="done", what=what, everything=everything, action=_action(request, t))


@router.get("/open", responses={200: {"content": {"image/gif": {}}, "description": "a transparent 1x1 GIF"},
                                400: {"content": {"image/gif": {}}, "description": "the token is not valid: nothing recorded"},
                                429: {"content": {"image/gif": {}}, "description": "too many requests from this client address: nothing recorded"}},
            response_class=Response, summary="The open pixel of a message: an open event of its decision, once")
def open_pixel(request: Request, t: str = TOKEN, ctx: ApiContext = Depends(context)) -> Response:
    wait = _wait(request)
    if wait:
        return Response(PIXEL, status_code=429, media_type="image/gif", headers={**PIXEL_HEADERS, "Retry-After": str(wait)})
    status = 200
    try:
        deliveries.opened(ctx.engine, t, now=ctx.now())
    except Invalid:
        status = 400
    except (LegatoError, SQLAlchemyError) as error:  # the reader sees the message either way
        log.warning("an open could not be recorded: %s", getattr(error, "message", type(error).__name__))
    return Response(PIXEL, status_code=status, media_type="image/gif", headers=PIXEL_HEADERS)


@router.get("/click", response_class=RedirectResponse, status_code=302,
            responses={302: {"description": "to the link's target"}, **{k: v for k, v in PAGE_RESPONSES.items() if k != 200}},
            summary="A tracked link: a click event of the message's decision, then the link's target (only if its signature holds)")
def click(request: Request, t: str = TOKEN, u: str = Query("", description="The link's target"), s: str = Query("", description="The target's signature"),
          ctx: ApiContext = Depends(context)) -> Response:
    wait = _wait(request)
    if wait:
        return _slow_down(ctx, wait)
    try:
        target = deliveries.click_target(ctx.engine, t, u, s)
    except Invalid as error:
        return _refused(ctx, error)
    except (LegatoError, SQLAlchemyError):
        return _refused(ctx, status=503)
    try:
        deliveries.record(ctx.engine, Delivery(Report.CLICKED, message_id=token_message_id(t), url=target, source="click link"), now=ctx.now())
    except (LegatoError, SQLAlchemyError) as error:  # the customer still reaches the page they asked for
        log.warning("a click could not be recorded: %s", getattr(error, "message", type(error).__name__))
    return RedirectResponse(target, status_code=302, headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})
