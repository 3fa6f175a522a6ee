"""Webhooks: a JSON POST per message, signed per the Standard Webhooks specification.

Each request carries ``webhook-id`` (the message id: the same on every attempt of a
message, so a receiver that keeps the ids it has seen takes each message once),
``webhook-timestamp`` (seconds since the epoch, at the attempt) and ``webhook-signature``
(``v1,`` and the base64 of HMAC-SHA256 over ``{id}.{timestamp}.{body}`` with the channel's
``whsec_`` secret), made by the ``standardwebhooks`` library itself, the one receivers
verify with. The body follows the specification's suggested shape::

    {"type": "message.webhook", "timestamp": "...", "data": {"message_id": ..., "to": ..., "body": ...}}

What the receiver's answer means: 2xx delivered; 429 (its ``Retry-After`` honoured), 408,
5xx, a timeout or a dropped connection are transient (tried again later); any other answer
(4xx, a redirect) is permanent. After a 429 the rest of the batch is not sent: each such
message waits as long, without using up an attempt (``attempted`` False).

Because the receiver deduplicates by ``webhook-id``, sending a message again after a crash
between the POST and the record of its result is safe: the transport says so
(``deduplicates``), and the outbox's in-doubt rules do not apply to it.

Each channel keeps ``concurrency`` connections alive across messages and batches, one request
in flight on each, all driven from the dispatcher's thread by one selector loop
(:mod:`legato.deliver.http1`, a lean HTTP/1.1 client: httpx cost more CPU per request than
everything else the dispatcher does for a message). A batch whose receiver cannot be
connected to fails at once, each message transiently, rather than a connect timeout apiece.
The secret never leaves this object: errors name the channel, the host and the status.
"""

from __future__ import annotations

import base64
import json
import ssl
import threading
import time
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

from standardwebhooks.webhooks import Webhook

from legato.deliver.channels import Outcome, delivered, permanent, transient
from legato.deliver.http1 import Answer, Failure, FailureKind, Origin, Request
from legato.errors import Invalid

# The fields of a message the receiver gets (not the rendering's internals).
FIELDS = ("message_id", "decision_id", "agent_id", "channel", "to", "customer_id", "subject", "title", "body", "headers", "sent_at")


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delay-seconds or an HTTP date (RFC 9110
    §10.2.3); None when absent or unreadable."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def host(url: str) -> str:
    """The host and port of a URL, for messages: never its user, password, path or query
    (any of which may carry a credential)."""
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)


def signer(secret: str, setting: str) -> Webhook:
    """The ``standardwebhooks`` signer of a ``whsec_`` secret; a secret that is not one (no
    prefix, not base64, shorter than the specification's 24 bytes) is named by its setting,
    never shown."""
    hint = ("use whsec_ followed by base64 of 24 to 64 random bytes, e.g. "
            "python -c \"import os,base64;print('whsec_'+base64.b64encode(os.urandom(32)).decode())\"")
    if not secret.startswith("whsec_"):
        raise Invalid(f"{setting}: the secret does not start with whsec_ (a Standard Webhooks secret)", hint=hint)
    try:
        made = Webhook(secret)
    except Exception as exc:  # noqa: BLE001 - binascii.Error, ValueError, its own EmptyWebhookSecretError
        raise Invalid(f"{setting}: the secret is not a Standard Webhooks secret ({type(exc).__name__})", hint=hint) from None
    size = len(base64.b64decode(secret.removeprefix("whsec_") + "=="))  # what the library decoded without complaint
    if size < 24:  # the specification: between 24 and 64 bytes
        raise Invalid(f"{setting}: the secret is too short ({size} bytes; at least 24)", hint=hint)
    return made


class WebhookTransport:
    """Signed JSON POSTs to one URL, ``concurrency`` at a time over kept-alive connections."""

    deduplicates = True  # receivers take each webhook-id once

    def __init__(
        self,
        url: str,
        secret: str,
        *,
        timeout: float = 10.0,
        concurrency: int = 8,
        channel: str = "webhook",
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.url = url
        self.channel = channel
        self._where = f"{channel} webhook at {host(url)}"
        self._signer = signer(secret, f"channels.{channel}.secret")
        # Legato's own lean HTTP/1.1 client, not httpx: httpx cost about 500 µs of CPU a
        # request here, more than twice the dispatcher's own work per message (deliver.http1).
        try:
            self._origin = Origin(url, connections=concurrency, timeout=timeout, ssl_context=ssl_context)
        except ValueError as exc:
            raise Invalid(f"channels.{channel}.url: {exc}", hint="give the receiver's address, e.g. https://hooks.example.com/legato") from None
        self._base_headers = {"content-type": "application/json", "user-agent": "legato-webhooks"}
        self._lock = threading.Lock()  # one batch at a time on the connections

    def close(self) -> None:
        with self._lock:
            self._origin.close()

    @staticmethod
    def body(message: dict[str, Any]) -> str:
        """The JSON text POSTed for ``message`` (what is signed, byte for byte)."""
        data = {key: message[key] for key in FIELDS if key in message}
        return json.dumps(
            {"type": f"message.{message.get('channel', 'webhook')}", "timestamp": message.get("sent_at"), "data": data},
            ensure_ascii=False, default=str, separators=(",", ":"),
        )

    def headers(self, message_id: str, body: str, at: float | None = None) -> dict[str, str]:
        """The three Standard Webhooks headers of one attempt at ``at`` (now by default)."""
        stamp = int(time.time() if at is None else at)
        signature = self._signer.sign(message_id, datetime.fromtimestamp(stamp, timezone.utc), body)
        return {"webhook-id": message_id, "webhook-timestamp": str(stamp), "webhook-signature": signature}

    def send(self, messages: list[dict[str, Any]]) -> list[Outcome]:
        """One outcome per message, in the order given. Each request is signed as it goes
        (its timestamp is its attempt's); after a 429, or once no connection can be made, the
        rest of the batch is not posted."""
        if not messages:
            return []
        outcomes: dict[int, Outcome] = {}
        pending = iter(enumerate(messages))
        halt = _Halt()

        def take() -> Request | None:
            for index, message in pending:
                key = message["message_id"]
                if halt.wait is not None:
                    outcomes[index] = transient(key, f"not sent: the {self._where} answered 429 (too many requests) to an earlier message",
                                                retry_after=halt.wait, attempted=False)
                    continue
                if halt.unreachable is not None:
                    # No connection could be made a moment ago: trying each message would cost a
                    # connect timeout apiece, far past the claim's lease. Each waits its backoff.
                    outcomes[index] = transient(key, halt.unreachable)
                    continue
                try:
                    body = self.body(message)
                except (TypeError, ValueError) as exc:
                    outcomes[index] = permanent(key, f"the message cannot be written as JSON: {exc}")
                    continue
                return Request(index, {**self._base_headers, **self.headers(str(key), body)}, body.encode("utf-8"))
            return None

        def give(request: Request, answer: Answer | Failure) -> None:
            key = messages[request.key]["message_id"]
            if isinstance(answer, Answer):
                outcomes[request.key] = self.outcome(key, answer, halt)
            elif answer.kind is FailureKind.TIMEOUT:
                outcomes[request.key] = transient(key, f"the {self._where} did not answer in time")
            else:
                why = f"the {self._where} could not be reached: {answer.detail}"
                if answer.kind is FailureKind.CONNECT:
                    halt.unreachable = f"not sent: {why} (for an earlier message of this batch)"
                outcomes[request.key] = transient(key, why)

        with self._lock:
            self._origin.exchange(take, give)
        return [outcomes[index] for index in range(len(messages))]

    def outcome(self, key: Any, answer: Answer, halt: _Halt | None = None) -> Outcome:
        status = answer.status
        if 200 <= status < 300:
            return delivered(key, f"webhook:{key}")
        if status == 429:
            wait = retry_after(answer.headers.get("retry-after"))
            if halt is not None:
                halt.stop(wait if wait is not None else 1.0)
            return transient(key, f"the {self._where} answered 429 (too many requests)", retry_after=wait)
        if status == 408 or status >= 500:
            return transient(key, f"the {self._where} answered {status}")
        return permanent(key, f"the {self._where} answered {status}; fix the receiver or the channel's url")


class _Halt:
    """A batch's stop: the wait a 429 asked for, or why no connection could be made."""

    def __init__(self) -> None:
        self.wait: float | None = None
        self.unreachable: str | None = None

    def stop(self, wait: float) -> None:
        self.wait = wait if self.wait is None else max(self.wait, wait)
