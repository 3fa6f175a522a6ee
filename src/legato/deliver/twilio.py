"""SMS and WhatsApp through Twilio's Messages API (or a provider that speaks it).

One form POST per message to ``{base_url}/2010-04-01/Accounts/{AccountSid}/Messages.json``
with ``To``, ``From`` (or ``MessagingServiceSid``), ``Body`` and, when the channel names
one, ``StatusCallback``, authenticated with HTTP Basic (the account SID and the auth token,
read from the environment by :mod:`legato.deliver.secrets`). WhatsApp numbers carry the
``whatsapp:`` prefix on both ends. One ``httpx.Client`` per transport: its connections are
reused across messages.

The answer (Twilio's Message resource, ``sid``, ``status``, ``error_code``,
``error_message``) makes one :class:`~legato.deliver.channels.Outcome` per message:

- 2xx with a ``sid``: delivered to the provider; the sid is the provider id, by which its
  status callbacks are matched (and the message id rides in the callback's URL);
- 429, or a 5xx: transient, tried again no sooner than the ``Retry-After`` it gave (seconds
  or an HTTP date). The batch stops there: the messages after it are not handed over and
  wait without using an attempt, so a provider that is overloaded or down is not hammered
  with the rest of the batch;
- refused credentials or account (401, 403, 404): the channel's configuration, not the
  message's: transient, the batch stops, and the reason names the settings to check;
- any other 4xx (an invalid number 21211, a recipient who texted STOP to the provider 21610,
  a WhatsApp freeform message outside the 24-hour window 63016): permanent, with the
  provider's code and message; one of :data:`HARD_BOUNCES` (the number cannot take texts)
  is a hard bounce, and the dispatcher lists the number undeliverable.
- a connection that cannot be made: transient, the batch stops; no answer in time after the
  request went out: in doubt (the provider may have the message).

No SMS provider deduplicates by our message id: a message sent again after a crash between
the provider's acceptance and the record of it is sent twice. The transport says so
(:attr:`TwilioTransport.deduplicates` False) and offers lanes (``connections`` of them,
requests in flight at once over the one client), so the dispatcher runs the outbox's
hand-over protocol: each message is marked handed over before its request goes, and a crash
leaves at most one message per lane in doubt, named, which the channel's ``in_doubt``
setting resends or holds. A request that went out and got no answer in time is in doubt too
(:func:`~legato.deliver.channels.lost`), never silently retried. When a lane meets a 429, a
5xx, refused credentials or an unreachable provider, the transport holds every lane for the
provider's ``Retry-After`` (a minute without one): the messages that come meanwhile are not
handed over and wait that long without using an attempt.

Before a text goes out its parts are counted (:func:`legato.guard.sms.count_segments`, the
one owner of GSM-7 and UCS-2 segment counting; the content checks warn about texts of more
parts than the channel registry allows): :attr:`TwilioTransport.parts` sums them by encoding,
what the provider bills. A body longer than the provider takes (1,600 characters, Twilio
error 21617) is refused before it is sent.

WhatsApp outside the customer's 24-hour service window takes only templates Meta approved:
the cycle offers an agent nothing else there (``whatsapp_outside_service_window``,
:mod:`legato.guard.contact`), the dispatcher asks the same rule again at send time, and the
transport sends the creative as rendered and checked, an approved template's text with its
fields filled. A freeform message the provider still refuses outside the window (63016) is
dead with that reason.
"""

from __future__ import annotations

import email.utils
import logging
import threading
from collections import Counter
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlencode

import httpx

from legato import __version__
from legato.deliver.channels import LaneHold, Outcome, delivered, lost, permanent, transient
from legato.deliver.secrets import secret
from legato.guard.sms import count_segments
from legato.playbook.channels import TwilioChannel

log = logging.getLogger("legato.deliver.twilio")

API_VERSION = "2010-04-01"
MAX_BODY = 1600  # characters Twilio takes in one Body (error 21617 beyond)
MAX_RETRY_AFTER = 24 * 3600.0  # a Retry-After beyond a day is read as a day
WHATSAPP = "whatsapp:"
CONFIGURATION = (401, 403, 404)  # the account or its credentials, not the message
# Twilio error codes that say the number cannot receive these messages at all: a hard bounce,
# the number listed undeliverable (no message of any purpose goes to it again), whether the
# code comes back when the message is created (HTTP 400) or later in a status callback. From
# Twilio's error reference (twilio.com/docs/api/errors/<code>):
#   21211 the 'To' number is not a valid phone number;
#   21610 the recipient replied STOP to the sender: nothing reaches it until it sends START;
#   21614 the 'To' number is not a mobile number (cannot take SMS);
#   21635 the 'To' number is a landline (Twilio does not attempt it);
#   30005 unknown destination handset: the number is unknown, inactive or no longer in service;
#   30006 landline or unreachable carrier: "the destination number cannot receive your message";
#   63014 (WhatsApp) the recipient blocked the sender or opted out.
# Not 30003 (unreachable destination handset): the docs name a handset switched off, out of
# signal or roaming, "a transient delivery failure", and say to try again; nor 30007 (carrier
# filtering: the content, not the number) or 30008 (unknown error). Those are failures of one
# message, recorded with their code, and the number stays.
HARD_BOUNCES = frozenset({"21211", "21610", "21614", "21635", "30005", "30006", "63014"})
HOLD_SECONDS = 60.0  # how long lanes wait after a failure that stops them, when the provider names no wait


def messages_path(account_sid: str) -> str:
    return f"/{API_VERSION}/Accounts/{account_sid}/Messages.json"


def retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks for (delay-seconds or an HTTP date, RFC 9110 §10.2.3)."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.isdigit():
        return min(float(text), MAX_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    seconds = (when - (now or datetime.now(timezone.utc))).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def with_message_id(url: str, message_id: Any) -> str:
    """The status callback URL of one message: the channel's, with the message id in its query."""
    return f"{url}{'&' if '?' in url else '?'}{urlencode({'message_id': str(message_id)})}"


class TwilioTransport:
    """One channel (``sms`` or ``whatsapp``) through a Twilio-compatible Messages API."""

    deduplicates = False  # no SMS provider recognises a message sent twice

    def __init__(self, channel: str, spec: TwilioChannel, *, environ: Mapping[str, str] | None = None) -> None:
        self.channel = channel
        self.spec = spec
        token = secret(f"channels.{channel}.auth_token", env=spec.auth_token_env, file_env=spec.auth_token_file_env, environ=environ)
        assert token is not None
        self._client = httpx.Client(
            base_url=spec.base_url.rstrip("/"),
            auth=(spec.account_sid, token),
            timeout=spec.timeout,
            headers={"User-Agent": f"legato/{__version__}", "Accept": "application/json"},
        )
        self._path = messages_path(spec.account_sid)
        self.parts: Counter[str] = Counter()  # SMS parts handed over, by encoding (GSM-7, UCS-2)
        self._lock = threading.Lock()
        self._hold = LaneHold(HOLD_SECONDS)  # a provider's wait holds every lane
        self._lanes = [TwilioLane(self, n) for n in range(spec.connections)]

    def lanes(self) -> list[TwilioLane]:
        """The hand-over protocol's lanes: ``connections`` requests in flight at once."""
        return self._lanes

    def held(self, message_id: Any) -> Outcome | None:
        return self._hold.held(message_id)

    def hold(self, outcome: Outcome) -> None:
        self._hold.hold(outcome)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> TwilioTransport:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _address(self, number: str) -> str:
        return f"{WHATSAPP}{number}" if self.channel == "whatsapp" and not number.startswith(WHATSAPP) else number

    def form(self, message: Mapping[str, Any]) -> dict[str, str]:
        """The Messages resource's form fields for one message."""
        fields = {"To": self._address(str(message["to"])), "Body": str(message["body"])}
        if self.spec.messaging_service_sid:
            fields["MessagingServiceSid"] = self.spec.messaging_service_sid
        else:
            assert self.spec.from_ is not None
            fields["From"] = self._address(self.spec.from_)
        if self.spec.status_callback:
            fields["StatusCallback"] = with_message_id(self.spec.status_callback, message["message_id"])
        return fields

    def send(self, messages: list[dict[str, Any]]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for index, message in enumerate(messages):
            outcome, stop = self._one(message)
            outcomes.append(outcome)
            if stop:
                why = f"not handed over: the provider answered the message before it with: {outcome.error}"
                outcomes += [transient(m["message_id"], why, retry_after=outcome.retry_after, attempted=False) for m in messages[index + 1 :]]
                break
        return outcomes

    def _one(self, message: Mapping[str, Any]) -> tuple[Outcome, bool]:
        """One message's outcome, and whether the rest of the batch must wait."""
        key = message["message_id"]
        body = str(message["body"])
        if len(body) > MAX_BODY:
            return permanent(key, f"the text has {len(body)} characters; the provider takes at most {MAX_BODY} (Twilio error 21617)"), False
        cost = count_segments(body) if self.channel == "sms" else None
        try:
            answer = self._client.post(self._path, data=self.form(message))
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            return transient(key, f"cannot reach the provider at {self.spec.base_url}: {type(exc).__name__}", attempted=False), True
        except httpx.TimeoutException as exc:
            # The request went out; the provider may have the message: in doubt, never a silent retry.
            return lost(key, f"no answer from the provider within {self.spec.timeout:g} s ({type(exc).__name__})"), False
        except httpx.HTTPError as exc:
            return lost(key, f"the provider's answer was cut off: {type(exc).__name__}: {exc}"), True
        status = answer.status_code
        data = _json(answer)
        if 200 <= status < 300:
            sid = data.get("sid") if isinstance(data.get("sid"), str) else None
            if sid is None:
                return transient(key, f"the provider accepted the message (HTTP {status}) without a sid"), False
            if data.get("status") in ("failed", "undelivered"):
                bounced = str(data.get("error_code")) in HARD_BOUNCES
                return permanent(key, _provider_error(data, "error_code", "error_message", status), bounced=bounced), False
            if cost is not None:
                with self._lock:
                    self.parts[cost.encoding] += cost.segments
            return delivered(key, sid), False
        error = _provider_error(data, "code", "message", status)
        wait = retry_after(answer.headers.get("retry-after"))
        if status == 429 or status >= 500:
            return Outcome(key, error=error, retry_after=wait), True
        if status in CONFIGURATION:
            hint = (f"check channels.{self.channel}.account_sid and the token in "
                    f"{self.spec.auth_token_env or self.spec.auth_token_file_env}")
            return Outcome(key, error=f"{error}; {hint}", retry_after=wait), True
        if status == 408:
            return transient(key, error, retry_after=wait), False
        # The number itself cannot take texts (an invalid number, a STOP to the provider): the
        # dispatcher lists it undeliverable, as a hard bounce, so nothing is tried on it again.
        return permanent(key, error, bounced=str(data.get("code")) in HARD_BOUNCES), False


class TwilioLane:
    """One request at a time over the transport's client (which pools the connections)."""

    def __init__(self, transport: TwilioTransport, number: int) -> None:
        self.transport = transport
        self.number = number

    def send_one(self, message: dict[str, Any]) -> Outcome:
        waiting = self.transport.held(message["message_id"])
        if waiting is not None:
            return waiting
        outcome, stop = self.transport._one(message)
        if stop:
            self.transport.hold(outcome)
        return outcome


def _json(answer: httpx.Response) -> dict[str, Any]:
    try:
        data = answer.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _provider_error(data: Mapping[str, Any], code_field: str, message_field: str, status: int) -> str:
    code = data.get(code_field)
    text = data.get(message_field)
    text = str(text)[:300] if text else f"HTTP {status}"
    return f"HTTP {status}, error {code}: {text}" if code is not None else f"HTTP {status}: {text}"


# --- what the provider sends us: its signature ---------------------------------------


def signature(token: str, url: str, params: Mapping[str, Any]) -> str:
    """``X-Twilio-Signature`` of a request to ``url`` with form ``params``: HMAC-SHA1 with the
    auth token over the full URL followed by each parameter's name and value in name order,
    base64 (twilio.com/docs/usage/security). A parameter given several times (a list) adds
    each of its values, in order of value."""
    import base64
    import hashlib
    import hmac

    data = url
    for name in sorted(params):
        value = params[name]
        values = value if isinstance(value, (list, tuple)) else [value]
        for each in sorted({str(v) for v in values}):
            data += f"{name}{each}"
    return base64.b64encode(hmac.new(token.encode("utf-8"), data.encode("utf-8"), hashlib.sha1).digest()).decode("ascii")


def _url_forms(url: str) -> list[str]:
    """The URL as signed: as given, and with a default port added or taken away (the provider
    signs the URL as configured; a proxy may show the port or not)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    default = {"https": 443, "http": 80}.get(parts.scheme)
    forms = [url]
    if default is None or parts.hostname is None:
        return forms
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    if parts.port is None:
        forms.append(urlunsplit(parts._replace(netloc=f"{host}:{default}")))
    elif parts.port == default:
        forms.append(urlunsplit(parts._replace(netloc=host)))
    return forms


def valid_signature(tokens: list[str], url: str, params: Mapping[str, Any], given: str | None) -> bool:
    """Whether ``given`` is the signature of this request under one of ``tokens`` (compared in constant time)."""
    import hmac

    if not given:
        return False
    return any(hmac.compare_digest(signature(token, form, params), given) for token in tokens for form in _url_forms(url))
