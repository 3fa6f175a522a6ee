"""How each channel's messages leave Legato: the playbook's ``channels:`` section.

One settings class per transport kind, told apart by ``kind`` (a discriminated union, so a
misspelled setting of one kind is named as that kind's). Settings every kind shares:

- ``rate_limit``: messages per second for the channel as a whole (a token bucket that every
  worker shares through the store); the provider's own 429 answers are honoured as well.
- ``give_up_after``: how long after its send time a message that keeps failing for a passing
  reason (a timeout, a 4xx, a 429) is tried again; its last attempt is at that age, and a
  failure then makes it dead with the reason (default ``24h``; :mod:`legato.deliver.outbox`).
- ``in_doubt``: what becomes of a message a process was killed in the middle of handing over
  (the provider may or may not have it): ``resend`` (the default: at least once) or ``hold``
  it for a person.

Secrets are never written here: a setting ending in ``_env`` names an environment variable
that holds the secret, one ending in ``_file_env`` names a variable that holds the path of a
file with it (:mod:`legato.deliver.secrets` reads both, and names only the variable when it
is missing).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from legato.playbook.schedule import parse_duration

EnvName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=128, description="an environment variable's name")]


class ChannelSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    rate_limit: float | None = Field(None, gt=0, description="Messages per second for this channel, shared by every worker.")
    give_up_after: str = Field(
        "24h", description="Retry a message failing for a passing reason until it is this old (after its send time): 90m, 24h, 2d."
    )
    in_doubt: Literal["resend", "hold"] = Field(
        "resend",
        description="A message whose hand-over a crash interrupted: send it again (at least once) or hold it for a person.",
    )

    @field_validator("give_up_after")
    @classmethod
    def _duration(cls, value: str) -> str:
        parse_duration(value)
        return value

    @property
    def give_up(self) -> timedelta:
        """``give_up_after`` as a span."""
        return parse_duration(self.give_up_after)


class FileChannel(ChannelSettings):
    """JSON Lines, one message a line (dry runs and tests)."""

    kind: Literal["file"] = "file"
    path: str = Field(min_length=1, description="JSON Lines file, relative to the playbook, e.g. outbox/email.jsonl.")


class ConsoleChannel(ChannelSettings):
    """Printed to the terminal (trying a playbook by hand)."""

    kind: Literal["console"] = "console"


class SmtpChannel(ChannelSettings):
    """E-mail over SMTP (:mod:`legato.deliver.smtp`); a local server with no auth is just
    ``{kind: smtp, host: 127.0.0.1, port: 2525}``."""

    kind: Literal["smtp"] = "smtp"
    host: str = Field(min_length=1, max_length=255, description="The SMTP server (a relay or your provider's submission host).")
    port: int = Field(587, ge=1, le=65535, description="25 or 2525 (none), 587 (starttls), 465 (tls).")
    security: Literal["none", "starttls", "tls"] = Field(
        "none", description="none (a local relay), starttls (upgrade after connecting; 587) or tls (implicit TLS; 465)."
    )
    username: str | None = Field(None, min_length=1, description="Log in with this user (the password from password_env or password_file_env).")
    password_env: EnvName | None = None
    password_file_env: EnvName | None = None
    from_address: str | None = Field(
        None, pattern=r"^[^@\s<>]+@[^@\s<>]+$", description="The envelope sender and From address; the brand's sender name is shown with it."
    )
    timeout: float = Field(30.0, gt=0, le=600, description="Seconds to wait for the server at each step.")
    connections: int = Field(4, ge=1, le=64, description="SMTP connections kept open and reused, each sending one message at a time.")
    verify_tls: bool = Field(True, description="Check the server's certificate (turn off only for a test server).")
    ca_file: str | None = Field(
        None, min_length=1, max_length=1024,
        description="A PEM file of the CA that signed the server's certificate (a private CA), relative to the playbook's "
        "folder; only it is trusted for this channel. Without it, the system's CAs (or SSL_CERT_FILE's).",
    )

    @model_validator(mode="after")
    def _login_complete(self) -> SmtpChannel:
        if self.ca_file is not None and self.security == "none":
            raise ValueError("ca_file is for a server spoken to over TLS: set security: starttls (587) or tls (465), or leave ca_file out")
        if self.ca_file is not None and not self.verify_tls:
            raise ValueError("ca_file names the CA to check the server's certificate against, and verify_tls: false checks nothing; keep one")
        if self.username is not None and not (self.password_env or self.password_file_env):
            raise ValueError("username needs password_env (a variable holding the password) or password_file_env; the password itself never goes in the playbook")
        if self.username is None and (self.password_env or self.password_file_env):
            raise ValueError("a password is configured without a username; add username")
        return self


# The transports of issue 13 (SMTP, Twilio-compatible SMS and WhatsApp, FCM push, Standard
# Webhooks) add their settings classes here and to ``ChannelTransport``.


class TwilioChannel(ChannelSettings):
    """SMS or WhatsApp through Twilio's Messages API, or any provider that speaks it."""

    kind: Literal["twilio"] = "twilio"
    base_url: str = Field(
        "https://api.twilio.com", pattern=r"^https?://[^\s/]+(/\S*)?$",
        description="The API's address: Twilio's, or a compatible provider's (a local one in tests).",
    )
    account_sid: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9]+$", description="The account SID (AC...).")
    auth_token_env: EnvName | None = Field(None, description="The variable holding the auth token.")
    auth_token_file_env: EnvName | None = Field(None, description="The variable holding the path of a file with the auth token.")
    from_: str | None = Field(
        None, alias="from", min_length=3, max_length=64,
        description="The sender: a number in E.164 (+14155550100) or an alphanumeric sender id; without 'whatsapp:', which is added.",
    )
    messaging_service_sid: str | None = Field(
        None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9]+$", description="A Messaging Service (MG...) that picks the sender instead of from."
    )
    status_callback: str | None = Field(
        None, pattern=r"^https?://\S+$",
        description="The public address of this server's /v1/twilio/status: where the provider reports delivery.",
    )
    inbound_url: str | None = Field(
        None, pattern=r"^https?://\S+$",
        description="The public address of /v1/twilio/inbound exactly as configured at the provider (it signs that URL); "
        "by default the address the request came to.",
    )
    timeout: float = Field(10.0, gt=0, le=120, description="Seconds to wait for the provider's answer.")
    connections: int = Field(4, ge=1, le=64, description="Requests in flight at once, each one message (the hand-over protocol's lanes).")

    @model_validator(mode="after")
    def _complete(self) -> "TwilioChannel":
        if not self.auth_token_env and not self.auth_token_file_env:
            raise ValueError("a twilio channel needs auth_token_env (or auth_token_file_env): the variable that holds the auth token")
        if (self.from_ is None) == (self.messaging_service_sid is None):
            raise ValueError("a twilio channel needs exactly one sender: from (a number) or messaging_service_sid")
        return self


class WebhookChannel(ChannelSettings):
    """A JSON POST per message to ``url``, signed per the Standard Webhooks specification
    (``webhook-id`` is the message id, so a receiver sees each message once)."""

    kind: Literal["webhook"] = "webhook"
    url: str = Field(pattern=r"^https?://", max_length=2048, description="Where each message is POSTed, e.g. https://hooks.example/legato.")
    secret_env: EnvName | None = Field(None, description="Variable holding the signing secret (whsec_...).")
    secret_file_env: EnvName | None = Field(None, description="Variable holding the path of a file with the signing secret.")
    timeout: float = Field(10.0, gt=0, le=300, description="Seconds to wait for the receiver's answer.")
    concurrency: int = Field(8, ge=1, le=64, description="Requests in flight at once, over kept-alive connections.")

    @model_validator(mode="after")
    def _signed(self) -> "WebhookChannel":
        if not (self.secret_env or self.secret_file_env):
            raise ValueError("a webhook channel signs every message: name the variable that holds its whsec_ secret "
                             "with secret_env (or secret_file_env for a file)")
        return self


class FcmChannel(ChannelSettings):
    """Push through Firebase Cloud Messaging's HTTP v1 API, as a service account."""

    kind: Literal["fcm"] = "fcm"
    project_id: str = Field(min_length=1, max_length=128, pattern=r"^[a-z0-9-]+$", description="The Firebase project's id.")
    credentials_file_env: EnvName = Field(description="Variable holding the path of the service account's JSON key file.")
    token_attribute: str = Field("push_token", min_length=1, max_length=64, description="The customer attribute holding the device's FCM registration token.")
    base_url: str = Field("https://fcm.googleapis.com", pattern=r"^https?://", description="The FCM API (tests point it at a local server).")
    token_uri: str | None = Field(None, pattern=r"^https?://", description="The OAuth2 token endpoint; the key file's own by default.")
    timeout: float = Field(10.0, gt=0, le=300, description="Seconds to wait for an answer.")
    concurrency: int = Field(8, ge=1, le=64, description="Requests in flight at once.")


def _file_by_default(value: Any) -> Any:
    # Playbooks written before kinds were required name a file channel by its path alone.
    if isinstance(value, dict) and "kind" not in value:
        return {"kind": "file", **value}
    return value


# The channels each kind can carry; a kind not listed carries any.
CARRIES: dict[str, tuple[str, ...]] = {"twilio": ("sms", "whatsapp"), "webhook": ("webhook",), "fcm": ("push",)}


ChannelTransport = Annotated[
    Union[FileChannel, ConsoleChannel, TwilioChannel, WebhookChannel, FcmChannel, SmtpChannel],
    Field(discriminator="kind"),
    BeforeValidator(_file_by_default),
]
