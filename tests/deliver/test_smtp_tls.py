"""E-mail over TLS to a real server on loopback: aiosmtpd with STARTTLS and with implicit TLS,
its certificate issued by a throwaway CA (``trustme``) that the playbook trusts through
``ca_file``. The login and every message go over TLS; a certificate for another name, one
from a CA nobody trusts, and a server that does not offer STARTTLS are refused with the
reason and the message retried, never sent in clear. SQLite and PostgreSQL.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import trustme
from aiosmtpd.smtp import AuthResult
from sqlalchemy import Engine
from typer.testing import CliRunner

from legato.cli.app import app
from legato.errors import Invalid, LegatoError
from legato.deliver.dispatch import transports
from legato.store.schema import outbox
from legato.validation import parse_playbook
from tests.deliver.test_smtp import SEND, dispatch, playbook_text, statuses, world
from tests.smtp_box import Mailbox, free_port

PASSWORD = "tls-only-pass"


def server_context(ca: trustme.CA, *names: str) -> ssl.SSLContext:
    """The server's side: a certificate for ``names`` issued by ``ca``."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(context)
    return context


class Logins:
    """aiosmtpd's authenticator: who logged in, and whether that connection was TLS already."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str | None]] = []

    def __call__(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        user, password = auth_data.login.decode(), auth_data.password.decode()
        ssl_object = server.transport.get_extra_info("ssl_object")
        self.seen.append((user, password, ssl_object.version() if ssl_object is not None else None))
        return AuthResult(success=(user, password) == ("mailer", PASSWORD) and ssl_object is not None, handled=False)


def tls_box(security: str, context: ssl.SSLContext, logins: Logins | None = None) -> Mailbox:
    auth: dict[str, Any] = {"authenticator": logins, "auth_required": True} if logins is not None else {}
    if security == "starttls":
        # aiosmtpd offers AUTH only after STARTTLS (auth_require_tls defaults to True) and refuses mail before it.
        return Mailbox(tls_context=context, require_starttls=True, **auth)
    # Implicit TLS: the whole connection is TLS; aiosmtpd's auth_require_tls only knows STARTTLS,
    # so the authenticator itself refuses a login that did not come over TLS.
    return Mailbox(ssl_context=context, **auth, **({"auth_require_tls": False} if logins is not None else {}))


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_mail_goes_over_starttls_and_implicit_tls_with_the_login_inside_trusting_a_private_ca(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ca: trustme.CA, security: str
) -> None:
    ca.cert_pem.write_to_path(str(tmp_path / "relay-ca.pem"))
    monkeypatch.setenv("TEST_SMTP_TLS_PASSWORD", PASSWORD)
    logins = Logins()
    with tls_box(security, server_context(ca, "127.0.0.1"), logins) as box:
        text = playbook_text(box.port, security=security, ca_file="relay-ca.pem", username="mailer", password_env="TEST_SMTP_TLS_PASSWORD", connections=2, timeout=10)
        playbook = world(engine, tmp_path, text, 5)
        report = dispatch(engine, playbook, tmp_path)
        assert report.totals() == {"sent": 5, "retry": 0, "dead": 0}, report.retry_errors
        received = list(box.received)
    assert len(received) == 5 and all(r.tls is not None and r.tls.startswith("TLSv1") for r in received)  # every message inside TLS
    assert logins.seen and all(seen == ("mailer", PASSWORD, seen[2]) and seen[2] is not None for seen in logins.seen)  # each login inside TLS
    assert len(logins.seen) <= 2  # one login per connection, the connections reused
    assert statuses(engine) == {"sent": 5}


@pytest.mark.parametrize(
    "case", ["another host name", "a CA nobody trusts"],
)
def test_a_certificate_that_does_not_check_out_is_refused_with_the_reason_and_the_mail_retried_not_sent(
    engine: Engine, tmp_path: Path, ca: trustme.CA, case: str
) -> None:
    ca.cert_pem.write_to_path(str(tmp_path / "relay-ca.pem"))
    if case == "another host name":
        context, settings = server_context(ca, "mail.elsewhere.example"), {"ca_file": "relay-ca.pem"}
    else:  # verified against the system's CAs (no ca_file), which never signed a throwaway CA
        context, settings = server_context(trustme.CA(), "127.0.0.1"), {}
    for security in ("starttls", "tls"):
        box = tls_box(security, context)
        with box:
            text = playbook_text(box.port, security=security, timeout=10, **settings)
            if security == "starttls":
                playbook = world(engine, tmp_path, text, 3)
            else:
                playbook = parse_playbook(text)
                with engine.begin() as c:  # the same messages, due again, to the implicit-TLS server
                    c.execute(sa.update(outbox).values(status="retry", next_attempt_at=outbox.c.send_at))
            report = dispatch(engine, playbook, tmp_path, SEND)
            assert report.totals() == {"sent": 0, "retry": 3, "dead": 0}, (security, report.errors)
            assert box.received == []  # nothing went, in clear or otherwise
        reason = report.retry_errors[0]
        assert "certificate was refused" in reason and "not sent" in reason, reason
        if case == "another host name":
            assert "mismatch" in reason.lower(), reason  # Python names it: "IP address mismatch"
        else:
            assert "issuer" in reason, reason  # "unable to get local issuer certificate"
    assert statuses(engine) == {"retry": 3}


def test_a_server_that_does_not_offer_starttls_is_refused_under_security_starttls_never_downgraded(engine: Engine, tmp_path: Path) -> None:
    with Mailbox() as box:  # a plain server: it would take the mail in clear, and offers no STARTTLS
        playbook = world(engine, tmp_path, playbook_text(box.port, security="starttls", timeout=10), 3)
        report = dispatch(engine, playbook, tmp_path)
        assert report.totals() == {"sent": 0, "retry": 3, "dead": 0}
        assert box.received == []
    assert "does not offer STARTTLS" in report.retry_errors[0] and "not sent in clear" in report.retry_errors[0]


def test_implicit_tls_against_a_plain_server_fails_the_handshake_and_sends_nothing(engine: Engine, tmp_path: Path) -> None:
    with Mailbox() as box:
        playbook = world(engine, tmp_path, playbook_text(box.port, security="tls", timeout=10), 2)
        report = dispatch(engine, playbook, tmp_path)
        assert report.totals() == {"sent": 0, "retry": 2, "dead": 0}
        assert box.received == []
    assert "TLS with the SMTP server" in report.retry_errors[0]


def test_ca_file_is_checked_where_it_is_written_before_anything_is_sent(tmp_path: Path, database_url: str) -> None:
    port = free_port()
    text = playbook_text(port, security="starttls", ca_file="certs/relay-ca.pem")
    line = next(n for n, content in enumerate(text.splitlines(), 1) if "ca_file" in content)
    with pytest.raises(Invalid) as missing:
        transports(parse_playbook(text), tmp_path)
    assert f"playbook line {line}: channels.email.ca_file: no CA file at {tmp_path / 'certs/relay-ca.pem'}" in missing.value.message
    assert "PEM" in (missing.value.hint or "")
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs/relay-ca.pem").write_text("not a certificate\n", encoding="utf-8")
    with pytest.raises(Invalid) as unreadable:
        transports(parse_playbook(text), tmp_path)
    assert f"playbook line {line}: channels.email.ca_file" in unreadable.value.message and "cannot be read as a PEM CA certificate" in unreadable.value.message
    # The command a user runs says the same in one line, no traceback, and sends nothing.
    (tmp_path / "certs/relay-ca.pem").unlink()
    (tmp_path / "playbook.yaml").write_text(text, encoding="utf-8")
    result = CliRunner().invoke(app, ["dispatch", str(tmp_path / "playbook.yaml"), "--database", database_url, "--at", SEND.isoformat()])
    assert result.exit_code != 0 and f"line {line}: channels.email.ca_file: no CA file" in result.output, result.output
    assert "Traceback" not in result.output
    # ca_file without TLS, or with verification off, is a contradiction the playbook names.
    with pytest.raises(LegatoError) as without_tls:
        parse_playbook(playbook_text(port, ca_file="relay-ca.pem"))
    assert "ca_file is for a server spoken to over TLS" in str(without_tls.value)
    with pytest.raises(LegatoError) as unchecked:
        parse_playbook(playbook_text(port, security="tls", ca_file="relay-ca.pem", verify_tls="false"))
    assert "verify_tls: false checks nothing" in str(unchecked.value)
