"""A Twilio-like Messages API on 127.0.0.1, for tests: real HTTP, real sockets.

It follows Twilio's documented REST API (twilio.com/docs/messaging/api/message-resource):
``POST /2010-04-01/Accounts/{AccountSid}/Messages.json``, a form with ``To``, ``From`` or
``MessagingServiceSid``, ``Body`` and ``StatusCallback``, HTTP Basic with the account SID and
auth token; it answers 201 with the Message resource (``sid`` ``SM`` + 32 hex digits,
``status`` ``queued``, ``num_segments``, ``error_code`` null) and errors as Twilio does
(``{"code", "message", "more_info", "status"}``: 401 code 20003 for bad credentials, 400
21211 for a ``To`` that is not a number, 21602 for a missing body).

A test plans answers for the coming requests (``plan(429, retry_after="30")``, ``plan(503)``):
a planned failure keeps nothing (the message is not accepted). ``report`` posts a status
callback to the message's ``StatusCallback`` and ``inbound`` posts an incoming message to a
URL, both signed with ``X-Twilio-Signature`` computed here, independently of Legato's own
code, as the docs describe it (HMAC-SHA1 of the URL and the sorted parameters, base64).

Kept out of test files so that no test file imports another.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

import httpx

ACCOUNT = "AC" + "0" * 31 + "1"
TOKEN = "test-auth-token-0123456789abcdef"
TOKEN_ENV = "LEGATO_TEST_TWILIO_TOKEN"
NUMBER = re.compile(r"^(whatsapp:)?\+[1-9]\d{6,14}$")

# The one-agent SMS world the Twilio tests share: ``playbook_text`` fills in where Twilio
# answers (URL) and where its status callbacks go (CALLBACK).
PLAYBOOK = """
brand:
  name: Text Co
  legal: {sender_name: Text Co, postal_address: "2 Quay St", support_contact: "help@text.example", unsubscribe_url: "https://text.example/u"}
objectives:
  - {id: grow, goal: engagement, why: testing, stages: [any], kpis: [{metric: visit_rate, target: 0.1}]}
lifecycle:
  - {stage: any, when: "true"}
channels:
  sms: {kind: twilio, base_url: "URL", account_sid: ACCOUNT, auth_token_env: TOKEN_ENV, from: "+14155550100", status_callback: "CALLBACK"}
creatives:
  - {id: text, channel: sms, body: "Text Co: new boots are in. Reply STOP to opt out."}
agents:
  - {id: texter, objective: grow, audience: "true", actions: {creatives: [text], send_windows: ["09:00-17:00"], do_nothing: false}, policy: {name: uniform_random}, holdout: 0, trust_stage: 3}
guardrails:
  consent:
    - {channel: sms, purpose: marketing}
"""


def playbook_text(url: str, callback: str = "https://legato.example/v1/twilio/status", template: str = PLAYBOOK) -> str:
    """``template`` (the shared SMS world, or a variant of it) with Twilio at ``url`` and callbacks to ``callback``."""
    return template.replace("URL", url).replace("CALLBACK", callback).replace("ACCOUNT", ACCOUNT).replace("TOKEN_ENV", TOKEN_ENV)


def twilio_signature(token: str, url: str, params: dict[str, str]) -> str:
    data = url + "".join(f"{name}{params[name]}" for name in sorted(params))
    return base64.b64encode(hmac.new(token.encode(), data.encode(), hashlib.sha1).digest()).decode()


@dataclass
class Planned:
    status: int
    retry_after: str | None = None
    code: int | None = None
    message: str | None = None
    delay: float = 0.0  # seconds before answering; a 201 planned with a delay is accepted (a slow provider)


class TwilioServer:
    def __init__(self, account: str = ACCOUNT, token: str = TOKEN) -> None:
        self.account, self.token = account, token
        self.accepted: list[dict[str, str]] = []  # each accepted message's form, with its "sid"
        self.requests = 0
        self._plan: list[Planned] = []
        self._lock = threading.Lock()
        self._answering = threading.Lock()
        self.delay = 0.0
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive: the client's connections are reused

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("content-length") or 0)
                form = dict(parse_qsl(self.rfile.read(length).decode("utf-8"), keep_blank_values=True))
                with server._answering:
                    status, body, headers = server._answer(self.path, self.headers.get("authorization", ""), form)
                    delay = server.delay
                if delay:
                    time.sleep(delay)  # accepted already: the client that gave up never reads the answer
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up waiting (a planned delay)
                    self.close_connection = True

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> TwilioServer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def plan(self, status: int, retry_after: str | None = None, code: int | None = None, message: str | None = None, delay: float = 0.0) -> None:
        """The next request not yet planned for gets this answer instead of being accepted (a
        201 is accepted, after ``delay`` seconds: the answer a client that gave up never reads)."""
        with self._lock:
            self._plan.append(Planned(status, retry_after, code, message, delay))

    def _answer(self, path: str, authorization: str, form: dict[str, str]) -> tuple[int, dict[str, Any], dict[str, str]]:
        with self._lock:
            self.requests += 1
            if path != f"/2010-04-01/Accounts/{self.account}/Messages.json":
                return 404, _error(20404, "The requested resource was not found", 404), {}
            expected = "Basic " + base64.b64encode(f"{self.account}:{self.token}".encode()).decode()
            if authorization != expected:
                return 401, _error(20003, "Authenticate", 401), {}
            planned = self._plan.pop(0) if self._plan else None
            self.delay = planned.delay if planned is not None else 0.0
            if planned is not None and planned.status != 201:
                headers = {"Retry-After": planned.retry_after} if planned.retry_after else {}
                default = {429: (20429, "Too Many Requests")}.get(planned.status, (None, "Service unavailable"))
                code = planned.code if planned.code is not None else default[0]
                return planned.status, _error(code, planned.message or default[1], planned.status), headers
            to = form.get("To", "")
            if not NUMBER.match(to):
                return 400, _error(21211, f"The 'To' number {to} is not a valid phone number.", 400), {}
            if not form.get("From") and not form.get("MessagingServiceSid"):
                return 400, _error(21603, "A 'From' or 'MessagingServiceSid' parameter is required to send a message", 400), {}
            if not form.get("Body"):
                return 400, _error(21602, "Message body is required.", 400), {}
            sid = "SM" + uuid.uuid4().hex
            self.accepted.append({**form, "sid": sid})
            return 201, {
                "sid": sid, "account_sid": self.account, "to": to, "from": form.get("From"), "body": form["Body"],
                "status": "queued", "num_segments": "1", "direction": "outbound-api", "error_code": None, "error_message": None,
                "api_version": "2010-04-01", "uri": f"/2010-04-01/Accounts/{self.account}/Messages/{sid}.json",
            }, {}

    def message(self, sid: str) -> dict[str, str]:
        return next(m for m in self.accepted if m["sid"] == sid)

    def report(self, sid: str, status: str, error_code: int | None = None, *, token: str | None = None) -> httpx.Response:
        """Post the status callback of an accepted message, as Twilio does, signed."""
        sent = self.message(sid)
        params = {"MessageSid": sid, "SmsSid": sid, "AccountSid": self.account, "MessageStatus": status, "SmsStatus": status,
                  "To": sent["To"], "From": sent.get("From", ""), "ApiVersion": "2010-04-01"}
        if error_code is not None:
            params["ErrorCode"] = str(error_code)
        return post_signed(sent["StatusCallback"], params, token or self.token)

    def inbound(self, url: str, sender: str, body: str, to: str = "+14155550100", *, token: str | None = None, sid: str | None = None) -> httpx.Response:
        """Post an incoming message to ``url`` as Twilio's messaging webhook does, signed. The
        same ``sid`` again is Twilio delivering the same message again (its retry)."""
        params = {"MessageSid": sid or "SM" + uuid.uuid4().hex, "AccountSid": self.account, "From": sender, "To": to, "Body": body,
                  "NumMedia": "0", "NumSegments": "1", "ApiVersion": "2010-04-01"}
        return post_signed(url, params, token or self.token)


def post_signed(url: str, params: dict[str, str], token: str) -> httpx.Response:
    return httpx.post(url, data=params, headers={"X-Twilio-Signature": twilio_signature(token, url, params)}, timeout=30)


def _error(code: int | None, message: str, status: int) -> dict[str, Any]:
    return {"code": code, "message": message, "more_info": f"https://www.twilio.com/docs/errors/{code}", "status": status}


def serving() -> Iterator[TwilioServer]:
    with TwilioServer() as server:
        yield server
