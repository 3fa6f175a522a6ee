"""Real HTTP servers on 127.0.0.1 for the webhook and push transports' tests.

:class:`WebhookReceiver` verifies every request with the ``standardwebhooks`` library (the
one real receivers use) and counts each ``webhook-id`` once, as a receiver that deduplicates
does; it can be told to answer a status for a while (503, 429 with Retry-After).
:class:`FakeFcm` is an OAuth2 token endpoint that checks the service account's signed JWT
assertion with ``google-auth`` and FCM HTTP v1's ``messages:send``, with its error shapes.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class _Quiet(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real receivers do

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("content-length") or 0))

    def _answer(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class WebhookReceiver:
    """Verifies each POST's signature; ``unique`` holds each webhook-id once, ``seen`` counts repeats."""

    def __init__(self, secret: str) -> None:
        self.verifier = Webhook(secret)
        self.lock = threading.Lock()
        self.unique: dict[str, dict[str, Any]] = {}  # webhook-id -> the verified payload
        self.seen: Counter[str] = Counter()
        self.rejected = 0  # requests whose signature did not verify
        self.requests = 0
        self.script: list[tuple[int, dict[str, str]]] = []  # answers to give first, one per request
        self.fail_once: dict[str, tuple[int, dict[str, str]]] = {}  # webhook-id -> an answer to give its first request
        self.first_at: float | None = None
        self.last_at: float | None = None
        receiver = self

        class Handler(_Quiet):
            def do_POST(self) -> None:  # noqa: N802
                body = self._body()
                with receiver.lock:
                    receiver.requests += 1
                    scripted = receiver.script.pop(0) if receiver.script else receiver.fail_once.pop(self.headers.get("webhook-id", ""), None)
                if scripted is not None:
                    self._answer(scripted[0], b"{}", scripted[1])
                    return
                try:
                    payload = receiver.verifier.verify(body, dict(self.headers.items()))
                except WebhookVerificationError:
                    with receiver.lock:
                        receiver.rejected += 1
                    self._answer(401, b'{"error":"bad signature"}')
                    return
                key = self.headers["webhook-id"]
                now = time.time()
                with receiver.lock:
                    receiver.seen[key] += 1
                    receiver.unique.setdefault(key, payload)
                    receiver.first_at = now if receiver.first_at is None else receiver.first_at
                    receiver.last_at = now
                self._answer(204)

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"

    @contextmanager
    def running(self) -> Iterator[WebhookReceiver]:
        thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.server.shutdown()
            self.server.server_close()


class FakeFcm:
    """A token endpoint and FCM's messages:send for one project and one service account."""

    def __init__(self, project: str, public_pem: bytes, client_email: str) -> None:
        from google.auth import jwt

        self.project = project
        self.lock = threading.Lock()
        self.issued: list[str] = []  # access tokens handed out
        self.sent: list[dict[str, Any]] = []  # the messages accepted
        self.unregistered: set[str] = set()  # device tokens FCM answers UNREGISTERED for (404)
        self.invalid: set[str] = set()  # device tokens FCM answers "not a valid FCM registration token" for (400)
        self.bad_payload: set[str] = set()  # device tokens whose messages FCM refuses for a field of the message (400)
        self.script: list[int] = []  # statuses to answer messages:send first
        self.bad_assertions = 0
        self.requests = 0  # messages:send requests answered
        fake = self

        class Handler(_Quiet):
            def do_POST(self) -> None:  # noqa: N802
                body = self._body()
                if self.path == "/token":
                    form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
                    try:
                        # google-auth addresses the assertion to Google's token endpoint, wherever it posts it
                        claims = jwt.decode(form.get("assertion", ""), certs=public_pem, audience="https://oauth2.googleapis.com/token")
                        assert form.get("grant_type") == "urn:ietf:params:oauth:grant-type:jwt-bearer"
                        assert claims["iss"] == client_email and "firebase.messaging" in claims["scope"]
                    except Exception:  # noqa: BLE001 - any bad assertion is refused as Google does
                        with fake.lock:
                            fake.bad_assertions += 1
                        self._answer(400, b'{"error":"invalid_grant","error_description":"Invalid JWT Signature."}', {"content-type": "application/json"})
                        return
                    with fake.lock:
                        token = f"ya29.test-{len(fake.issued)}"
                        fake.issued.append(token)
                    self._answer(200, json.dumps({"access_token": token, "expires_in": 3599, "token_type": "Bearer"}).encode(), {"content-type": "application/json"})
                    return
                if self.path != f"/v1/projects/{fake.project}/messages:send":
                    self._answer(404, b"{}")
                    return
                with fake.lock:
                    fake.requests += 1
                    authorized = self.headers.get("authorization", "").removeprefix("Bearer ") in fake.issued
                    scripted = fake.script.pop(0) if fake.script else None
                if not authorized:
                    self._error(401, "UNAUTHENTICATED", "THIRD_PARTY_AUTH_ERROR")
                    return
                if scripted is not None:
                    self._error(scripted, "UNAVAILABLE" if scripted >= 500 else "RESOURCE_EXHAUSTED", "UNAVAILABLE" if scripted >= 500 else "QUOTA_EXCEEDED",
                                {"retry-after": "7"} if scripted == 429 else None)
                    return
                message = json.loads(body)["message"]
                token = message.get("token")
                # FCM's error answers as its error-codes page shows them: a field of the request
                # in a google.rpc.BadRequest, the token's fate in an FcmError.
                if not token:
                    self._bad_request("message.token", "Invalid value at 'message.token'")
                    return
                if not isinstance(message.get("notification"), dict):
                    self._bad_request("message.notification", "Invalid value at 'message.notification'")
                    return
                if token in fake.bad_payload:
                    self._bad_request("message.data[0].value", "Invalid value at 'message.data[0].value' (TYPE_STRING), 12")
                    return
                if token in fake.invalid:
                    self._error(400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", message="The registration token is not a valid FCM registration token")
                    return
                if token in fake.unregistered:
                    self._error(404, "NOT_FOUND", "UNREGISTERED", message="Requested entity was not found.")
                    return
                with fake.lock:
                    fake.sent.append(message)
                    name = f"projects/{fake.project}/messages/0:{len(fake.sent)}"
                self._answer(200, json.dumps({"name": name}).encode(), {"content-type": "application/json"})

            def _error(self, status: int, grpc: str, code: str, headers: dict[str, str] | None = None, *, message: str | None = None) -> None:
                error = {"error": {"code": status, "message": message or code, "status": grpc,
                                   "details": [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": code}]}}
                self._answer(status, json.dumps(error).encode(), {"content-type": "application/json", **(headers or {})})

            def _bad_request(self, field: str, description: str) -> None:
                error = {"error": {"code": 400, "message": description, "status": "INVALID_ARGUMENT",
                                   "details": [{"@type": "type.googleapis.com/google.rpc.BadRequest",
                                                "fieldViolations": [{"field": field, "description": description}]}]}}
                self._answer(400, json.dumps(error).encode(), {"content-type": "application/json"})

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"

    @contextmanager
    def running(self) -> Iterator[FakeFcm]:
        thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.server.shutdown()
            self.server.server_close()


def service_account_key(client_email: str = "legato@test-project.iam.gserviceaccount.com") -> tuple[dict[str, Any], bytes]:
    """A service account key file's content (a fresh RSA key) and its public key in PEM."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    info = {
        "type": "service_account", "project_id": "test-project", "private_key_id": "k1", "private_key": private,
        "client_email": client_email, "client_id": "1", "token_uri": "https://oauth2.googleapis.com/token",
    }
    return info, public
