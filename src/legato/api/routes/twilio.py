"""Twilio's webhooks on ``legato serve``: incoming texts and delivery status callbacks.

These routes take no API key: Twilio (or a provider that speaks its API) calls them, and the
request is authenticated by its ``X-Twilio-Signature`` (:func:`legato.deliver.twilio.valid_signature`:
HMAC-SHA1 with the channel's auth token over the URL the provider was told and the sorted
form parameters). A request whose signature matches no twilio channel of the playbook in
force is refused with 403 and changes nothing.

- ``POST /v1/twilio/inbound``: Twilio's messaging webhook (``From``, ``To``, ``Body``,
  ``MessageSid``). The text goes through the inbound handling of each customer with that
  number (:func:`legato.service.replies.receive_text`: STOP revokes at once, HELP answers,
  the rest is recorded or queued for a person), and the reply is answered as TwiML
  (``<Response><Message>…</Message></Response>``), which the provider sends back on the
  same channel. ``From`` with ``whatsapp:`` is a WhatsApp message (it opens the 24-hour
  service window), else an SMS. **Once per ``MessageSid``**: Twilio retries a webhook whose
  answer it did not see, and each customer's handling takes the text's receipt
  (:mod:`legato.store.receipts`) in its own transaction, so a repeat — even one arriving while
  the first is being handled — changes nothing and is answered with an empty TwiML (no second
  HELP, no second confirmation).
- ``POST /v1/twilio/status``: the status callback the transport asked for with each message
  (``StatusCallback``, the channel's ``status_callback`` plus the message id). ``delivered``,
  ``read`` (WhatsApp), ``failed`` and ``undelivered`` with ``ErrorCode`` become delivery
  reports of the message's decision through :func:`legato.service.deliveries.record`, once
  each (the report's event id is made from the message and the report, so a callback with
  the same ``MessageSid`` and status, delivered twice or twice at once, is one event): an
  error code that means the number cannot take texts
  (:data:`legato.deliver.twilio.HARD_BOUNCES`) is a hard bounce, which lists the number
  undeliverable and cancels what waits for it; any other failure (30003, a handset switched
  off, among them) is recorded with its code and the number stays. A failure makes the
  message's ``delivery`` failed and a sent message's decision failed; callbacks arrive out of
  order and the state never goes back (the first of delivered and failed stands). The
  intermediate statuses (queued, sending, sent, accepted, scheduled) are acknowledged and not
  recorded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from legato.api.context import ApiContext, context
from legato.api.errors import ApiError, documented
from legato.api.security import signed_by
from legato.deliver.secrets import secret
from legato.deliver.twilio import HARD_BOUNCES, WHATSAPP, valid_signature
from legato.errors import Invalid
from legato.playbook.channels import TwilioChannel
from legato.service import deliveries, replies
from legato.service.deliveries import Bounce, Delivery, Report
from legato.store.receipts import Receipt

router = APIRouter(prefix="/v1/twilio", tags=["twilio"])

RECORDED = {"delivered": Report.DELIVERED, "read": Report.OPENED, "failed": Report.FAILED, "undelivered": Report.FAILED}
FORM = {"content": {"application/x-www-form-urlencoded": {"schema": {"type": "object", "additionalProperties": {"type": "string"}}}}}


@dataclass(frozen=True)
class Signed:
    """A request whose signature checked: its form, and the channels whose token signed it."""

    params: dict[str, str]
    channels: list[str]


def _channels(ctx: ApiContext) -> list[tuple[str, TwilioChannel]]:
    playbook = ctx.playbook()
    found = [(channel.value, spec) for channel, spec in playbook.channels.items() if isinstance(spec, TwilioChannel)]
    if not found:
        raise ApiError(404, "not_found", "the playbook in force has no twilio channel",
                       hint="give sms or whatsapp kind: twilio in the playbook's channels (docs/architecture.md, SMS and WhatsApp)")
    return found


def _urls(request: Request, configured: str | None) -> list[str]:
    """The URLs the provider may have signed: the one it was told (the channel's setting,
    with this request's query), and the one this request came to."""
    urls = [str(request.url)]
    if configured:
        query = request.url.query
        base = configured.split("?", 1)[0] if query else configured
        urls.insert(0, f"{base}?{query}" if query else configured)
    return urls


def _verified(setting: str) -> Any:
    async def check(request: Request, ctx: ApiContext = Depends(context)) -> Signed:
        raw = (await request.body()).decode("utf-8", errors="replace")
        params = dict(parse_qsl(raw, keep_blank_values=True))
        given = request.headers.get("x-twilio-signature")
        matched: list[str] = []
        for name, spec in _channels(ctx):
            if params.get("AccountSid") not in (None, spec.account_sid):
                continue
            token = secret(f"channels.{name}.auth_token", env=spec.auth_token_env, file_env=spec.auth_token_file_env)
            assert token is not None
            if any(valid_signature([token], url, params, given) for url in _urls(request, getattr(spec, setting))):
                matched.append(name)
        if not matched:
            raise ApiError(403, "forbidden", "the X-Twilio-Signature does not match this request; nothing was changed",
                           hint=f"the provider signs with the channel's auth token and the URL it was given: set channels.<sms|whatsapp>.{setting} "
                           "to that public URL exactly")
        return Signed(params, matched)

    check.__name__ = f"twilio_signature_{setting}"
    return signed_by("twilio", check)


@router.post(
    "/inbound", response_class=Response, openapi_extra={"requestBody": FORM}, responses={
        200: {"content": {"application/xml": {"schema": {"type": "string"}}}, "description": "TwiML: the reply to send back, if any"},
        **documented(403, 404, 409),
    },
    summary="A text from a customer (Twilio's messaging webhook): STOP, HELP and replies through the inbound handling, answered as TwiML",
)
def inbound(signed: Signed = Depends(_verified("inbound_url")), ctx: ApiContext = Depends(context)) -> Response:
    params = signed.params
    sender = params.get("From", "")
    channel = "whatsapp" if sender.startswith(WHATSAPP) else "sms"
    if channel not in signed.channels:
        raise Invalid(f"a {channel} message came signed for the {' and '.join(signed.channels)} channel",
                      hint=f"give {channel} a twilio channel in the playbook; nothing was recorded")
    sid = (params.get("MessageSid") or params.get("SmsSid") or "").strip()
    receipt = Receipt("twilio", sid) if 0 < len(sid) <= 128 else None
    done = replies.receive_text(ctx.engine, ctx.playbook(), sender.removeprefix(WHATSAPP), params.get("Body", ""), now=ctx.now(),
                                channel=channel, receipt=receipt)
    reply = f"<Message>{escape(done.reply)}</Message>" if done.reply else ""
    return Response(f'<?xml version="1.0" encoding="UTF-8"?><Response>{reply}</Response>', media_type="application/xml")


class StatusRecorded(BaseModel):
    recorded: bool = Field(description="Whether the status is one Legato records (delivered, read, failed, undelivered)")
    event_id: str | None = None
    event_type: str | None = None
    new: bool = Field(False, description="false: recorded before (a callback delivered twice), or not recorded")
    decision_id: int | None = None
    delivery: str | None = Field(None, description="The message's delivery state after this callback: delivered, opened, failed (never taken back)")


@router.post(
    "/status", response_model=StatusRecorded, openapi_extra={"requestBody": FORM}, responses=documented(403, 404, 409),
    summary="A message's delivery status (Twilio's status callback): an event of its decision; a number that cannot take texts is listed undeliverable",
)
def status(request: Request, signed: Signed = Depends(_verified("status_callback")), ctx: ApiContext = Depends(context)) -> JSONResponse:
    params = signed.params
    state = params.get("MessageStatus") or params.get("SmsStatus") or ""
    report = RECORDED.get(state)
    if report is None:
        return JSONResponse(StatusRecorded(recorded=False).model_dump())
    code = (params.get("ErrorCode") or "").strip()
    bounce = Bounce.HARD if report is Report.FAILED and code in HARD_BOUNCES else None
    message_id = request.query_params.get("message_id")
    done = deliveries.record(
        ctx.engine,
        Delivery(
            Report.BOUNCED if bounce else report,
            message_id=message_id or None,
            provider_id=None if message_id else params.get("MessageSid") or None,
            reason=f"{state}: Twilio error {code}" if code else state,
            bounce=bounce,
            source="twilio",
        ),
        now=ctx.now(),
    )
    answer = StatusRecorded(recorded=True, event_id=done.event_id, event_type=done.event_type, new=done.new, decision_id=done.decision_id,
                            delivery=done.delivery)
    return JSONResponse(answer.model_dump())
