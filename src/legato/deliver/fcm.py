"""Push through Firebase Cloud Messaging's HTTP v1 API.

Each message is one ``POST {base_url}/v1/projects/{project}/messages:send`` of::

    {"message": {"token": <device token>, "notification": {"title": ..., "body": ...},
                 "data": {"message_id": ..., "decision_id": ..., "agent_id": ...}}}

authorized by an OAuth2 access token that the service account's key buys from its token
endpoint (a JWT-bearer grant signed with the key's RSA private key, by ``google-auth``),
kept until shortly before it expires. The key file's path is in the variable the channel's
``credentials_file_env`` names; the key never appears in the playbook, the store or a log.

The device token is the customer attribute the channel's ``token_attribute`` names
(``push_token`` by default: the app writes its FCM registration token there through an
import or an identify call); a customer without one cannot be reached by push (permanent).

What FCM's answer means (its ``FcmError`` codes): 200 delivered (the provider id is FCM's
message name); ``UNREGISTERED`` (the app was removed or the token expired) and
``INVALID_ARGUMENT`` (a malformed token or message) and ``SENDER_ID_MISMATCH`` are
permanent; 429 (``QUOTA_EXCEEDED``, with its ``Retry-After``) and 5xx (``UNAVAILABLE``,
``INTERNAL``) are transient; a 401 drops the cached access token and is transient.

**A dead token** (:func:`dead_token`) is a hard bounce (``Outcome.bounced``): the dispatcher
lists the token undeliverable and refuses the next push to it before sending, until the app
records a new one. FCM's error body is ``{"error": {"code", "message", "status", "details":
[...]}}`` (firebase.google.com/docs/cloud-messaging/error-codes, and the ``ErrorCode``
reference): a token is dead when FCM answers 404 with the ``FcmError`` detail
``UNREGISTERED`` ("App instance was unregistered from FCM": Firebase's token guide says to
delete such tokens), or 400 ``INVALID_ARGUMENT`` about the token: the ``FcmError`` detail
with the message "The registration token is not a valid FCM registration token", or a
``google.rpc.BadRequest`` field violation on ``message.token``. A 400 whose field violations
name other fields (``message.data[0].value``) is the message's fault: dead, the token kept.
``SENDER_ID_MISMATCH`` is not read as a dead token: a wrong ``project_id`` in the playbook
would otherwise list every customer's token.

FCM does not deduplicate: a process killed between the POST and the record cannot know
whether the push went. The transport says so (``deduplicates`` False) and offers lanes
(``concurrency`` of them) for the outbox's hand-over protocol, so such a push is named in
doubt, one per lane at most. After a 429 or a refused service account the lanes hand nothing
over until the wait is past (those messages wait without using an attempt).
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from google.auth import exceptions as auth_errors
from google.auth import transport as auth_transport
from google.oauth2 import service_account

from legato.deliver.channels import LaneHold, Outcome, delivered, permanent, transient
from legato.deliver.webhook import host, retry_after
from legato.errors import Invalid

SCOPES = ["https://www.googleapis.com/auth/firebase.messaging"]
PERMANENT_CODES = {"UNREGISTERED", "INVALID_ARGUMENT", "SENDER_ID_MISMATCH"}


class _Answer(auth_transport.Response):
    def __init__(self, response: httpx.Response) -> None:
        self._response = response

    @property
    def status(self) -> int:
        return self._response.status_code

    @property
    def headers(self) -> Any:
        return self._response.headers

    @property
    def data(self) -> bytes:
        return self._response.content


class HttpxRequest(auth_transport.Request):
    """google-auth's transport over the channel's own httpx client."""

    def __init__(self, client: httpx.Client) -> None:
        self._client = client

    def __call__(self, url: str, method: str = "GET", body: Any = None, headers: Any = None, timeout: Any = None, **kwargs: Any) -> _Answer:
        try:
            response = self._client.request(method, url, content=body, headers=headers, timeout=timeout or self._client.timeout)
        except httpx.HTTPError as exc:
            raise auth_errors.TransportError(f"the token endpoint could not be reached: {type(exc).__name__}") from None
        return _Answer(response)


def load_credentials(path: Path, variable: str, channel: str, token_uri: str | None = None) -> service_account.Credentials:
    """The service account of a key file, for FCM's scope; a file that is not one is named
    by its variable (its content never shown)."""
    where = f"channels.{channel}.credentials_file_env: the file {variable} names ({path})"
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise Invalid(f"{where} cannot be read: {exc.strerror or type(exc).__name__}",
                      hint="point the variable at the service account's JSON key file, readable by this user") from None
    except ValueError:
        raise Invalid(f"{where} is not JSON", hint="download the service account's key as JSON from the Firebase console") from None
    if not isinstance(info, dict) or info.get("type") != "service_account":
        raise Invalid(f"{where} is not a service account key", hint="use the JSON key of a service account (\"type\": \"service_account\")")
    if token_uri:
        info = {**info, "token_uri": token_uri}
    try:
        return service_account.Credentials.from_service_account_info(info, scopes=SCOPES)
    except (ValueError, KeyError) as exc:
        missing = f" (no {exc})" if isinstance(exc, KeyError) else ""
        raise Invalid(f"{where} is not a usable service account key{missing}",
                      hint="download a fresh key for the service account; it needs client_email, private_key and token_uri") from None


class FcmTransport:
    """FCM HTTP v1 sends for one project, ``concurrency`` at a time."""

    deduplicates = False

    def __init__(
        self,
        project_id: str,
        credentials: service_account.Credentials,
        *,
        base_url: str = "https://fcm.googleapis.com",
        timeout: float = 10.0,
        concurrency: int = 8,
        channel: str = "push",
    ) -> None:
        self.channel = channel
        self.endpoint = f"{base_url.rstrip('/')}/v1/projects/{project_id}/messages:send"
        self._where = f"FCM ({host(base_url)}) for channel {channel}"
        self._credentials = credentials
        self._client = httpx.Client(timeout=timeout, limits=httpx.Limits(max_connections=concurrency + 1, max_keepalive_connections=concurrency + 1))
        self._auth = HttpxRequest(self._client)
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix=f"legato-{channel}") if concurrency > 1 else None
        self.token_fetches = 0  # access tokens bought (one per expiry, not per message)
        self._hold = LaneHold(60.0)  # a provider's wait holds every lane
        self._lanes = [FcmLane(self) for _ in range(concurrency)]

    def lanes(self) -> list[FcmLane]:
        """The hand-over protocol's lanes: ``concurrency`` requests in flight at once."""
        return self._lanes

    def held(self, message_id: Any) -> Outcome | None:
        return self._hold.held(message_id)

    def hold(self, outcome: Outcome) -> None:
        self._hold.hold(outcome)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        self._client.close()

    def _access_token(self) -> str:
        with self._lock:
            if not self._credentials.valid:  # none yet, or expiring (google-auth keeps a margin)
                self._credentials.refresh(self._auth)
                self.token_fetches += 1
            return str(self._credentials.token)

    def _forget_token(self, used: str) -> None:
        with self._lock:
            if self._credentials.token == used:
                self._credentials.token = None

    @staticmethod
    def payload(message: dict[str, Any]) -> dict[str, Any]:
        data = {key: str(message[key]) for key in ("message_id", "decision_id", "agent_id", "customer_id") if message.get(key) is not None}
        notification = {"body": message.get("body") or ""}
        if message.get("title"):
            notification["title"] = message["title"]
        return {"message": {"token": message.get("device_token"), "notification": notification, "data": data}}

    def send(self, messages: list[dict[str, Any]]) -> list[Outcome]:
        if not messages:
            return []
        try:
            self._access_token()  # once for the batch, before the threads
        except auth_errors.RefreshError as exc:
            why = f"the token endpoint refused the service account ({_short(exc)}); check the key file is current and the account may send FCM messages"
            return [transient(m["message_id"], why) for m in messages]
        except auth_errors.TransportError as exc:
            return [transient(m["message_id"], f"{exc}") for m in messages]
        if self._pool is None or len(messages) == 1:
            return [self._post(m) for m in messages]
        return list(self._pool.map(self._post, messages))

    def _post(self, message: dict[str, Any]) -> Outcome:
        key = message["message_id"]
        if not message.get("device_token"):
            return permanent(key, "the customer has no device token (the channel's token_attribute); the app must record its FCM registration token")
        try:
            token = self._access_token()
            answer = self._client.post(self.endpoint, json=self.payload(message), headers={"authorization": f"Bearer {token}"})
        except (auth_errors.RefreshError, auth_errors.TransportError) as exc:
            return transient(key, f"no access token for {self._where}: {_short(exc)}")
        except httpx.TimeoutException:
            return transient(key, f"{self._where} did not answer in time")
        except httpx.TransportError as exc:
            return transient(key, f"{self._where} could not be reached: {type(exc).__name__}")
        status = answer.status_code
        if status == 200:
            try:
                name = answer.json().get("name")
            except ValueError:
                name = None
            return delivered(key, name or f"fcm:{key}")
        code = _error_code(answer)
        if dead_token(status, _error(answer)):
            why = ("the device token is no longer registered (the app was removed or the token expired)" if code == "UNREGISTERED"
                   else "the device token is not a valid FCM registration token")
            return permanent(key, f"{why}: FCM answered {status} {code}; the app must record a new one", bounced=True)
        if status == 401:
            self._forget_token(token)
            return transient(key, f"{self._where} refused the access token (401 {code or ''}); a new one is fetched")
        if status == 429:
            return transient(key, f"{self._where} answered 429 {code or 'QUOTA_EXCEEDED'}", retry_after=retry_after(answer.headers.get("retry-after")))
        if status >= 500:
            return transient(key, f"{self._where} answered {status} {code or ''}".rstrip())
        if code in PERMANENT_CODES or 400 <= status < 500:
            why = "the device token is no longer registered (the app was removed or the token expired)" if code == "UNREGISTERED" else f"{self._where} answered {status} {code or ''}".rstrip()
            return permanent(key, why)
        return transient(key, f"{self._where} answered {status}")


class FcmLane:
    """One push at a time over the transport's client (which pools the connections)."""

    def __init__(self, transport: FcmTransport) -> None:
        self.transport = transport

    def send_one(self, message: dict[str, Any]) -> Outcome:
        waiting = self.transport.held(message["message_id"])
        if waiting is not None:
            return waiting
        outcome = self.transport._post(message)
        if not outcome.delivered and not outcome.permanent and outcome.retry_after is not None:
            self.transport.hold(outcome)  # FCM asked every sender to wait: the other lanes too
        return outcome


def _error(answer: httpx.Response) -> dict[str, Any]:
    try:
        error = answer.json().get("error")
    except (ValueError, AttributeError):
        return {}
    return error if isinstance(error, dict) else {}


FCM_ERROR = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"


def dead_token(status: int, error: dict[str, Any]) -> bool:
    """Whether FCM's error answer says the device token itself is dead (see the module's docstring)."""
    details = [d for d in error.get("details") or [] if isinstance(d, dict)]
    codes = {str(d.get("errorCode")) for d in details if d.get("@type") == FCM_ERROR and d.get("errorCode")}
    if status == 404 and "UNREGISTERED" in codes:
        return True
    if status != 400 or error.get("status") != "INVALID_ARGUMENT":
        return False
    fields = [str(v.get("field")) for d in details if d.get("@type") == BAD_REQUEST for v in d.get("fieldViolations") or [] if isinstance(v, dict)]
    if fields:
        return "message.token" in fields
    return "INVALID_ARGUMENT" in codes and "registration token" in str(error.get("message", "")).lower()


def _error_code(answer: httpx.Response) -> str | None:
    """The FcmError code of an error answer (``details[].errorCode``), else its status."""
    try:
        error = answer.json().get("error") or {}
    except ValueError:
        return None
    for detail in error.get("details") or []:
        if isinstance(detail, dict) and detail.get("errorCode"):
            return str(detail["errorCode"])
    return str(error["status"]) if error.get("status") else None


def _short(exc: Exception) -> str:
    text = str(exc.args[0]) if exc.args else type(exc).__name__
    return text[:200]
