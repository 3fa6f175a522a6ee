"""E-mail over SMTP: ``email: {kind: smtp, host: 127.0.0.1, port: 2525}``.

A message becomes a MIME e-mail (:func:`compose`): ``multipart/alternative`` with the text
body kept as the text part and the creative's HTML part beside it when it has one; its
``Message-ID`` is made from the message id (``<message-id@sender-domain>``), so a message sent
again carries the same Message-ID, and that is the provider id recorded; the headers the
dispatcher built go with it (RFC 8058 ``List-Unsubscribe`` and ``List-Unsubscribe-Post`` on
marketing mail). The envelope sender and ``From`` are the channel's ``from_address`` (else the
brand's support contact when it is an address) with the brand's sender name.

Connections (``connections`` of them, :mod:`smtplib`) are opened when first needed and
reused across messages and batches; one that the server closed while idle is opened again.
``security`` is none, starttls (upgrade after EHLO) or tls (implicit TLS); ``username`` logs in
with the password from ``password_env`` or ``password_file_env`` (:mod:`legato.deliver.secrets`;
never in the playbook, the store, a log line or an error).

**TLS.** The server's certificate is checked (chain and host name) against the system's CAs, or
only against ``ca_file`` (a private CA's PEM, relative to the playbook's folder, read when the
transport is built: a missing or unreadable file is named with its playbook line before
anything is decided). A certificate that fails, a TLS handshake that fails, or a server that
does not offer STARTTLS under ``security: starttls`` is refused: the message is retried and
never sent in clear (no silent downgrade). The login happens only after the upgrade.

What a server answers becomes the message's :class:`~legato.deliver.channels.Outcome`:
250 after the data is delivered; a 5xx to RCPT TO is a hard bounce (permanent, and the
dispatcher records a ``bounced`` event of the message's decision, which lists the address
undeliverable) unless its enhanced status code blames the sender, the system or the content
(5.3.x, 5.5.x, 5.6.x, 5.7.x: a relay that denies relaying must not list every recipient); a
5xx to DATA or to the message is a hard bounce when its enhanced code is about the mailbox
(5.1.x, 5.2.1: servers that check recipients late), else permanent without blaming the
address; a 5xx to MAIL FROM never blames it. A 4xx, a timeout, a refused or dropped
connection is transient (retried with the outbox's backoff; a server that cannot be reached
or answers 421 is ``unreachable``, whose retries are capped short). A connection lost, or a
timeout, *after the whole message and its final dot went* is
:func:`~legato.deliver.channels.lost`: the server may have taken it, so it is in doubt.

No SMTP server deduplicates, so this transport does not offer ``send`` to the dispatcher's
batch path: ``deduplicates`` is False and each connection is a lane that sends one message at
a time under the hand-over protocol (:mod:`legato.deliver.outbox`).
"""

from __future__ import annotations

import binascii
import re
import smtplib
import ssl
from datetime import datetime, timezone
from email.header import Header
from email.utils import format_datetime, formataddr
from pathlib import Path
from typing import Any

from legato.deliver.channels import Outcome, delivered, lost, permanent, transient
from legato.deliver.secrets import secret
from legato.errors import Invalid
from legato.playbook.channels import SmtpChannel

_LEADING_DOT = re.compile(rb"(?m)^\.")
_ADDRESS = re.compile(r"^[^@\s<>]+@[^@\s<>]+$")
_ENHANCED = re.compile(r"^\s*5\.(\d{1,3})\.(\d{1,3})\b")  # RFC 3463: class.subject.detail


def smtp_transport(
    channel: str, spec: SmtpChannel, *, sender_name: str | None = None, support_contact: str | None = None,
    base_dir: Path | None = None, ca_file_at: str | None = None,
) -> SmtpTransport:
    """The transport of one channel's SMTP settings; its password and its CA file read now (a
    missing one is named here, before anything is decided). Nothing is connected yet.
    ``ca_file_at`` says where ``ca_file`` is written in the playbook (its line), for the error."""
    from_address = spec.from_address or (support_contact.strip() if support_contact and _ADDRESS.match(support_contact.strip()) else None)
    if from_address is None:
        raise Invalid(
            f"channels.{channel}: no sender address for SMTP",
            hint=f"add from_address: news@your-domain.example under channels.{channel} (the brand's support_contact is not an e-mail address)",
        )
    password = None
    if spec.username is not None:
        password = secret(f"channels.{channel}.password", env=spec.password_env, file_env=spec.password_file_env)
    context = tls_context(spec, base_dir or Path("."), ca_file_at or f"channels.{channel}.ca_file")
    return SmtpTransport(spec, channel, from_address=from_address, sender_name=sender_name, password=password, context=context)


def tls_context(spec: SmtpChannel, base_dir: Path, where: str) -> ssl.SSLContext | None:
    """The client TLS context of a channel (None without TLS), built once for all its
    connections: certificates checked by default, against ``ca_file`` alone when it is set."""
    if spec.security == "none":
        return None
    if not spec.verify_tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    if spec.ca_file is None:
        return ssl.create_default_context()
    path = Path(spec.ca_file).expanduser()
    path = path if path.is_absolute() else base_dir / path
    hint = "give the PEM file of the CA that signed the SMTP server's certificate (a path relative to the playbook's folder), or leave ca_file out to trust the system's CAs"
    if not path.is_file():
        raise Invalid(f"{where}: no CA file at {path}", hint=hint)
    try:
        return ssl.create_default_context(cafile=str(path))
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise Invalid(f"{where}: {path} cannot be read as a PEM CA certificate ({type(exc).__name__}: {exc})"[:400], hint=hint) from None


class StartTlsMissing(smtplib.SMTPException):
    """``security: starttls`` and the server does not offer STARTTLS: nothing goes in clear."""


class SmtpTransport:
    """One channel's SMTP server: lanes (reused connections), each one message at a time."""

    deduplicates = False  # no SMTP server recognises a message it already has

    def __init__(
        self, spec: SmtpChannel, channel: str, *, from_address: str, sender_name: str | None = None, password: str | None = None,
        context: ssl.SSLContext | None = None,
    ) -> None:
        self.spec = spec
        self._context = context if context is not None or spec.security == "none" else tls_context(spec, Path("."), f"channels.{channel}.ca_file")
        self.channel = channel
        self.from_address = from_address
        self.from_header = formataddr((sender_name, from_address)) if sender_name else from_address
        self.domain = from_address.rpartition("@")[2]
        self._password = password
        self._lanes = [SmtpLane(self, n) for n in range(spec.connections)]

    @property
    def where(self) -> str:
        return f"{self.spec.host}:{self.spec.port}"

    def lanes(self) -> list[SmtpLane]:
        return self._lanes

    def send(self, messages: list[dict[str, Any]]) -> list[Outcome]:
        """Messages one after another on the first connection, outside the hand-over protocol
        (for trying a server by hand; the dispatcher uses :meth:`lanes`)."""
        return [self._lanes[0].send_one(message) for message in messages]

    def close(self) -> None:
        for lane in self._lanes:
            lane.close()

    def message_id_header(self, message_id: Any) -> str:
        return f"<{message_id}@{self.domain}>"

    def compose(self, message: dict[str, Any]) -> tuple[str, bytes]:
        return compose(message, self.from_header, self.message_id_header(message["message_id"]))

    def connect(self) -> smtplib.SMTP:
        """A new connection, greeted, upgraded and logged in as the settings say."""
        spec = self.spec
        context = self._context
        if spec.security == "tls":
            server: smtplib.SMTP = smtplib.SMTP_SSL(spec.host, spec.port, timeout=spec.timeout, context=context)
        else:
            server = smtplib.SMTP(spec.host, spec.port, timeout=spec.timeout)
        try:
            server.ehlo()
            if spec.security == "starttls":
                if not server.has_extn("starttls"):
                    raise StartTlsMissing("the server does not offer STARTTLS")
                server.starttls(context=context)
                server.ehlo()
            if spec.username is not None:
                self._login(server)
        except BaseException:
            _quietly_close(server)
            raise
        return server


    def _login(self, server: smtplib.SMTP) -> None:
        """Log in with one mechanism the server offers (PLAIN, else LOGIN, else CRAM-MD5): a
        refusal is final, not a reason to try the same password another way."""
        offered = server.esmtp_features.get("auth", "").upper().split()
        mechanism = next((m for m in ("PLAIN", "LOGIN", "CRAM-MD5") if m in offered), None)
        if mechanism is None:
            raise smtplib.SMTPNotSupportedError("the server offers no login (AUTH) this transport speaks; check security: starttls")
        server.user, server.password = self.spec.username or "", self._password or ""
        server.auth(mechanism, getattr(server, "auth_" + mechanism.lower().replace("-", "_")))


def compose(message: dict[str, Any], from_header: str, message_id_header: str) -> tuple[str, bytes]:
    """The e-mail of one message: its Message-ID and its bytes (CRLF lines, as SMTP sends them).

    Written directly rather than through :class:`email.message.EmailMessage` (which took
    about 1 ms a message, more than the rest of sending it): headers folded as RFC 5322 asks
    and RFC 2047-encoded when not ASCII, each text part UTF-8 in quoted-printable, the text and
    HTML parts as ``multipart/alternative`` under a boundary that starts with ``=_``, which
    quoted-printable content can never hold. A header value with a line break is refused
    (ValueError: no header injection)."""
    lines = [
        _header("Message-ID", message_id_header),
        _header("Date", _date(message.get("sent_at"))),
        _header("From", from_header),
        _header("To", str(message["to"])),
        _header("Subject", message.get("subject") or ""),
    ]
    for name, value in (message.get("headers") or {}).items():
        lines.append(_header(name, str(value)))
    lines.append(b"MIME-Version: 1.0")
    text = _part(message["body"], "plain")
    html = message.get("html")
    if html:
        boundary = f"=_legato_{str(message['message_id']).replace('-', '')}".encode("ascii")
        lines.append(b'Content-Type: multipart/alternative; boundary="' + boundary + b'"')
        body = b"".join(
            [b"\r\n--" + boundary + b"\r\n" + text, b"\r\n--" + boundary + b"\r\n" + _part(html, "html"), b"\r\n--" + boundary + b"--\r\n"]
        )
        return message_id_header, b"\r\n".join(lines) + b"\r\n" + body
    return message_id_header, b"\r\n".join(lines) + b"\r\n" + text


def _date(sent_at: Any) -> str:
    if isinstance(sent_at, str):
        sent_at = datetime.fromisoformat(sent_at)
    return format_datetime(sent_at if isinstance(sent_at, datetime) else datetime.now(timezone.utc))


def _header(name: str, value: str) -> bytes:
    if "\r" in value or "\n" in value:
        raise ValueError(f"the {name} header holds a line break")
    if value.isascii():
        line = f"{name}: {value}"
        if len(line) <= 998:
            return line.encode("ascii")
    # Not ASCII (or too long a line): encoded words, folded.
    return f"{name}: ".encode("ascii") + Header(value, "utf-8", header_name=name).encode(linesep="\r\n").encode("ascii")


def _part(text: str, subtype: str) -> bytes:
    """One text part: its headers, a blank line, its content in quoted-printable (CRLF lines)."""
    raw = text.replace("\r\n", "\n").replace("\r", "\n").encode("utf-8")
    encoded = binascii.b2a_qp(raw, istext=True).replace(b"\n", b"\r\n")
    if not encoded.endswith(b"\r\n"):
        encoded += b"\r\n"
    return (
        b"Content-Type: text/" + subtype.encode("ascii") + b'; charset="utf-8"\r\n'
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n" + encoded
    )


class SmtpLane:
    """One SMTP connection, opened when first needed, kept for the next message."""

    def __init__(self, transport: SmtpTransport, number: int) -> None:
        self.transport = transport
        self.number = number
        self._server: smtplib.SMTP | None = None

    def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            try:
                server.quit()
            except (smtplib.SMTPException, OSError):
                _quietly_close(server)

    def _drop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            _quietly_close(server)

    def send_one(self, message: dict[str, Any]) -> Outcome:
        key = message["message_id"]
        to = message.get("to")
        if not to:
            return permanent(key, "the message has no e-mail address to go to")
        try:
            message_id, data = self.transport.compose(message)
        except (ValueError, TypeError, KeyError) as exc:
            return permanent(key, f"the e-mail cannot be composed: {exc}")
        data = _LEADING_DOT.sub(b"..", data)
        if not data.endswith(b"\r\n"):
            data += b"\r\n"
        where = self.transport.where
        for attempt in (1, 2):
            reused = self._server is not None
            try:
                server = self._server or self.transport.connect()
            except smtplib.SMTPAuthenticationError as exc:
                return transient(key, f"the SMTP server {where} refused the login of {self.transport.spec.username}: {exc.smtp_code} {_text(exc.smtp_error)} (check the password the channel's password_env or password_file_env names)")
            except StartTlsMissing:
                return transient(key, f"the SMTP server {where} does not offer STARTTLS and the channel says security: starttls; not sent in clear (a server that stopped offering it may be under attack, or set up without TLS)")
            except ssl.SSLCertVerificationError as exc:
                return transient(key, f"the SMTP server {where}'s certificate was refused: {exc.verify_message or exc}; not sent (check that host is the name on the certificate, or name the CA that signed it with ca_file)")
            except ssl.SSLError as exc:
                return transient(key, f"TLS with the SMTP server {where} failed: {exc.reason or exc}; not sent (check security: tls is for port 465, starttls for 587)")
            except (smtplib.SMTPException, OSError) as exc:
                return transient(key, f"cannot reach the SMTP server {where}: {_why(exc)}", unreachable=True)
            self._server = server
            step = "MAIL FROM"
            try:
                code, reply = server.mail(self.transport.from_address)
                if code != 250:
                    return self._refused(key, code, reply, step)
                step = "RCPT TO"
                code, reply = server.rcpt(to)
                if code not in (250, 251):
                    return self._refused(key, code, reply, step, address=True)
                step = "DATA"
                code, reply = server.docmd("DATA")
                if code != 354:
                    return self._refused(key, code, reply, step, late=True)
                server.send(data + b".\r\n")
                step = "the answer to the message"  # from here on the server may have it
                code, reply = server.getreply()
            except (smtplib.SMTPException, OSError) as exc:
                self._drop()
                if step == "the answer to the message":
                    return lost(key, f"the SMTP server {where} went away after the whole message was sent, before answering: {_why(exc)}")
                if attempt == 1 and reused and step == "MAIL FROM":
                    continue  # the server closed the idle connection: once more on a new one
                return transient(key, f"the SMTP server {where} went away at {step}: {_why(exc)}", unreachable=True)
            if code == 250:
                return delivered(key, message_id)
            return self._refused(key, code, reply, "the message", reset=False, late=True)
        raise AssertionError("unreachable")  # pragma: no cover

    def _refused(self, key: Any, code: int, reply: bytes, step: str, *, address: bool = False, late: bool = False, reset: bool = True) -> Outcome:
        """A refusal: permanent for 5xx (a hard bounce when it is about the address, see
        :func:`blames_address`), else transient (421: the server is closing, unreachable)."""
        text = f"the SMTP server {self.transport.where} refused {step}: {code} {_text(reply)}"
        if code == 421 or not reset:
            if code == 421:
                self._drop()  # the server is closing this connection
        else:
            try:
                assert self._server is not None
                self._server.rset()
            except (smtplib.SMTPException, OSError):
                self._drop()
        if 500 <= code < 600:
            return permanent(key, text, bounced=blames_address(_text(reply), at_recipient=address, late=late))
        return transient(key, text, unreachable=code == 421)


def blames_address(reply: str, *, at_recipient: bool, late: bool) -> bool:
    """Whether a 5xx is a hard bounce of the recipient's address (RFC 3463's enhanced status
    codes, when the server gives one). To RCPT TO: yes, unless the code blames the mail system
    (5.3.x), the protocol (5.5.x), the content (5.6.x) or the sender's standing (5.7.x, e.g.
    "relay access denied", which would list every recipient). To DATA or the message (servers
    that check recipients late): only a code about the mailbox (5.1.x, 5.2.1). MAIL FROM: never."""
    found = _ENHANCED.match(reply)
    subject, detail = (int(found.group(1)), int(found.group(2))) if found else (None, None)
    if at_recipient:
        return subject not in (3, 5, 6, 7)
    if late:
        return subject == 1 or (subject, detail) == (2, 1)
    return False


def _text(reply: Any) -> str:
    if isinstance(reply, bytes):
        return reply.decode("utf-8", "replace").replace("\n", " ")
    return str(reply)


def _why(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if isinstance(exc, smtplib.SMTPException) else f"{type(exc).__name__}: {text}"


def _quietly_close(server: smtplib.SMTP) -> None:
    try:
        server.close()
    except OSError:
        pass
