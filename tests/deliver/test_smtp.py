"""E-mail over SMTP to a real server on loopback (aiosmtpd), on SQLite and PostgreSQL.

What the server receives is parsed with the standard ``email`` package: headers, the text
and HTML parts, the one-click unsubscribe headers and link, the Message-ID the outbox
recorded. Refusals (5xx: a hard bounce that lists the address; 4xx: retried), a server that
is stopped across several retry attempts (delayed, none lost, none twice), an answer lost
after the whole message went (in doubt: resent or held) and a login whose password comes
from the environment.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import sqlalchemy as sa
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from sqlalchemy import Engine

from legato.clock import FixedClock
from legato.cycle import run_cycle
from legato.deliver import outbox as outbox_writer
from legato.deliver.dispatch import DispatchReport, dispatch_due, transports
from legato.deliver.secrets import MissingSecret
from legato.errors import Invalid, LegatoError
from legato.store.ingest import import_customers
from legato.store.schema import decisions, outbox, suppressions
from legato.validation import parse_playbook
from tests.smtp_box import Mailbox, free_port

AT = datetime(2024, 3, 4, 8, 0, tzinfo=timezone.utc)
SEND = AT + timedelta(hours=2)

PLAYBOOK = """
brand:
  name: Mail Co
  legal: {sender_name: Mail Co, postal_address: "3 Pier Rd", support_contact: "help@mail.example", unsubscribe_url: "https://mail.example/u"}
objectives:
  - {id: grow, goal: engagement, why: testing, stages: [any], kpis: [{metric: visit_rate, target: 0.1}]}
lifecycle:
  - {stage: any, when: "true"}
channels:
  email: CHANNEL
creatives:
  - id: hello
    channel: email
    subject: "Hi {{ customer.id }}"
    body: "Hello {{ customer.id }}. Unsubscribe: {{ unsubscribe_url }} {{ brand.postal_address }}"
    html: "<p>Hello <b>{{ customer.id }}</b></p><p><a href=\\"{{ unsubscribe_url }}\\">Unsubscribe</a> {{ brand.postal_address }}</p>"
agents:
  - id: mailer
    objective: grow
    audience: "true"
    actions: {creatives: [hello], send_windows: ["09:00-17:00"], do_nothing: false}
    policy: {name: uniform_random}
    holdout: 0
    trust_stage: 3
"""


def playbook_text(port: int, **settings: Any) -> str:
    extra = "".join(f", {k}: {v}" for k, v in settings.items())
    return PLAYBOOK.replace("CHANNEL", f"{{kind: smtp, host: 127.0.0.1, port: {port}{extra}}}")


def world(engine: Engine, folder: Path, text: str, customers: int) -> Any:
    """Customers c0000…, a cycle that schedules one e-mail to each; returns the playbook."""
    ids = [f"c{i:04d}" for i in range(customers)]
    import_customers(
        engine, pa.table({"id": ids, "email": [f"{c}@mail.example" for c in ids], "time_zone": ["UTC"] * customers}),
        attribute_types={}, clock=FixedClock(AT),
    )
    playbook = parse_playbook(text)
    report = run_cycle(engine, playbook, FixedClock(AT), transports(playbook, folder))
    assert report.agents["mailer"].scheduled == customers
    return playbook


def dispatch(engine: Engine, playbook: Any, folder: Path, at: datetime = SEND) -> DispatchReport:
    channel_transports = transports(playbook, folder)
    try:
        return dispatch_due(engine, playbook, FixedClock(at), channel_transports)
    finally:
        for transport in channel_transports.values():
            getattr(transport, "close", lambda: None)()


def statuses(engine: Engine) -> dict[str, int]:
    with engine.connect() as c:
        return dict(c.execute(sa.select(outbox.c.status, sa.func.count()).group_by(outbox.c.status)).all())


def text_of(part: Any) -> str:
    return str(part.get_content()).replace("\r\n", "\n")


def test_each_message_arrives_as_multipart_text_and_html_with_its_message_id_and_one_click_unsubscribe(
    engine: Engine, tmp_path: Path
) -> None:
    with Mailbox() as box:
        playbook = world(engine, tmp_path, playbook_text(box.port, connections=3), 12)
        report = dispatch(engine, playbook, tmp_path)
        assert report.totals() == {"sent": 12, "retry": 0, "dead": 0}
        received = list(box.received)
    assert len(received) == 12
    with engine.connect() as c:
        rows = {r.customer_id: r for r in c.execute(sa.select(outbox.c.customer_id, outbox.c.message_id, outbox.c.provider_id, outbox.c.handed_over_at, outbox.c.in_doubt_at))}
        assert set(c.execute(sa.select(decisions.c.status)).scalars()) == {"sent"}
    seen = set()
    for envelope in received:
        mail = envelope.parsed()
        (to,) = envelope.rcpt_tos
        customer = to.split("@")[0]
        row = rows[customer]
        assert envelope.mail_from == "help@mail.example"
        assert mail["To"] == to and mail["Subject"] == f"Hi {customer}"
        assert mail["From"].addresses[0].display_name == "Mail Co" and mail["From"].addresses[0].addr_spec == "help@mail.example"
        # The Message-ID is the message id's, and it is what the outbox recorded as the provider's id.
        assert mail["Message-ID"] == f"<{row.message_id}@mail.example>" == row.provider_id
        assert row.handed_over_at is None and row.in_doubt_at is None  # the mark is cleared with the result
        assert mail.get_content_type() == "multipart/alternative"
        text, html = mail.iter_parts()
        assert (text.get_content_type(), html.get_content_type()) == ("text/plain", "text/html")
        link = re.search(r"https://mail\.example/u\?t=[a-z2-7.]+", text_of(text))
        assert link is not None
        assert f'href="{link.group()}"' in text_of(html) and f"<b>{customer}</b>" in text_of(html)
        # RFC 8058: the same signed link in the header, and the one-click POST marker.
        assert mail["List-Unsubscribe"] == f"<{link.group()}>"
        assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        seen.add(customer)
    assert seen == set(rows)


def test_a_5xx_to_the_recipient_is_a_hard_bounce_that_lists_the_address_and_a_4xx_is_retried(engine: Engine, tmp_path: Path) -> None:
    with Mailbox() as box:
        box.refuse["c0001@mail.example"] = (550, "5.1.1 no such user")
        box.refuse["c0002@mail.example"] = (451, "4.3.0 try again later")
        playbook = world(engine, tmp_path, playbook_text(box.port, connections=2), 6)
        report = dispatch(engine, playbook, tmp_path)
        assert report.totals() == {"sent": 4, "retry": 1, "dead": 1}
        assert report.bounced == 1
        assert "550" in report.errors[0] and "no such user" in report.errors[0]
        assert "451" in report.retry_errors[0]
        with engine.connect() as c:
            listed = c.execute(sa.select(suppressions.c.kind, suppressions.c.value)).all()
            by_customer = dict(c.execute(sa.select(outbox.c.customer_id, outbox.c.status)).all())
        assert listed == [("undeliverable", "c0001@mail.example")]
        assert by_customer["c0001"] == "dead" and by_customer["c0002"] == "retry"
        # The next attempt, after the backoff, goes through; the bounced address is never tried again.
        del box.refuse["c0002@mail.example"]
        again = dispatch(engine, playbook, tmp_path, SEND + timedelta(minutes=5))
        assert again.totals() == {"sent": 1, "retry": 0, "dead": 0}
        assert sorted(r.rcpt_tos[0] for r in box.received) == [f"c{i:04d}@mail.example" for i in (0, 2, 3, 4, 5)]


def test_a_server_stopped_across_several_attempts_delays_the_mail_none_lost_none_twice(engine: Engine, tmp_path: Path) -> None:
    """The server stopped for real while three dispatch attempts fail on it (simulated clock:
    0, +2 and +5 minutes), then started again: every message arrives once. An unreachable
    server's retries are capped (``outbox.reconnect_cap``: 10 s this early), not the doubling
    schedule's minutes. The real minute, with `legato worker`, is ``test_smtp_outage.py``."""
    box = Mailbox().start()
    playbook = world(engine, tmp_path, playbook_text(box.port, connections=2, timeout=5), 10)
    box.stop()
    try:
        for minutes in (0, 2, 5):
            report = dispatch(engine, playbook, tmp_path, SEND + timedelta(minutes=minutes))
            assert report.totals()["sent"] == 0 and report.totals()["dead"] == 0
            assert report.totals()["retry"] == 10  # each attempt failed, each waits its capped backoff
            assert not report.in_doubt
            now = SEND + timedelta(minutes=minutes)
            with engine.connect() as c:
                rows = c.execute(sa.select(outbox.c.next_attempt_at, outbox.c.send_at, outbox.c.error)).all()
            assert all("cannot reach the SMTP server" in r.error for r in rows), rows
            assert all(now < r.next_attempt_at <= now + outbox_writer.reconnect_cap(now - r.send_at) for r in rows), (now, rows)
        assert statuses(engine) == {"retry": 10}
        box.start()
        for minutes in (30, 60):
            dispatch(engine, playbook, tmp_path, SEND + timedelta(minutes=minutes))
        assert statuses(engine) == {"sent": 10}
        ids = box.message_ids()
        assert len(ids) == 10 and set(ids.values()) == {1}
    finally:
        box.stop()
    with engine.connect() as c:
        assert set(c.execute(sa.select(outbox.c.attempts)).scalars()) == {4}  # three failed attempts, then the one that went


@pytest.mark.parametrize("in_doubt", ["resend", "hold"])
def test_an_answer_lost_after_the_whole_message_went_is_in_doubt_resent_or_held(engine: Engine, tmp_path: Path, in_doubt: str) -> None:
    with Mailbox() as box:
        box.vanish_after_data = 1  # the first message arrives whole; the server drops the connection instead of answering
        playbook = world(engine, tmp_path, playbook_text(box.port, connections=1, in_doubt=in_doubt), 4)
        report = dispatch(engine, playbook, tmp_path)
        assert report.totals()["sent"] == 3
        assert len(report.in_doubt) == 1 and "went away after the whole message was sent" in report.in_doubt[0]
        assert report.in_doubt_held == (in_doubt == "hold")
        (vanished,) = box.received_then_vanished
        with engine.connect() as c:
            row = c.execute(sa.select(outbox).where(outbox.c.in_doubt_at.is_not(None))).one()
        assert vanished.parsed()["Message-ID"] == f"<{row.message_id}@mail.example>"
        assert row.status == ("in_doubt" if in_doubt == "hold" else "retry")
        later = dispatch(engine, playbook, tmp_path, SEND + timedelta(hours=1))
        if in_doubt == "hold":
            assert later.totals()["sent"] == 0 and statuses(engine) == {"sent": 3, "in_doubt": 1}  # kept for a person
        else:
            assert later.totals()["sent"] == 1 and statuses(engine) == {"sent": 4}
            assert box.message_ids()[f"<{row.message_id}@mail.example>"] == 1  # the resend, with the same Message-ID


def test_login_with_the_password_from_the_environment_and_a_missing_one_named(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tried: list[tuple[str, str]] = []

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        user, password = auth_data.login.decode(), auth_data.password.decode()  # LoginPassword (PLAIN or LOGIN)
        tried.append((user, password))
        return AuthResult(success=(user, password) == ("mailer", "s3cret-pass"), handled=False)

    box = Mailbox()
    box.start = lambda: _start_with_auth(box, authenticator)  # type: ignore[method-assign]
    text = playbook_text(box.port, username="mailer", password_env="TEST_SMTP_PASSWORD", timeout=5)
    monkeypatch.delenv("TEST_SMTP_PASSWORD", raising=False)
    with pytest.raises(MissingSecret) as missing:
        transports(parse_playbook(text), tmp_path)
    assert "TEST_SMTP_PASSWORD" in missing.value.message
    monkeypatch.setenv("TEST_SMTP_PASSWORD", "s3cret-pass")
    with box:
        playbook = world(engine, tmp_path, text, 3)
        assert dispatch(engine, playbook, tmp_path).totals()["sent"] == 3
        monkeypatch.setenv("TEST_SMTP_PASSWORD", "wrong")
        with engine.begin() as c:  # make one message due again: a wrong password is a transient error, the password never shown
            c.execute(sa.text("UPDATE outbox SET status = 'retry', next_attempt_at = send_at WHERE customer_id = 'c0000'"))
        report = dispatch(engine, playbook, tmp_path, SEND + timedelta(minutes=1))
        assert report.totals()["retry"] == 1
        assert "refused the login of mailer" in report.retry_errors[0] and "wrong" not in report.retry_errors[0]
    assert ("mailer", "s3cret-pass") in tried


def _start_with_auth(box: Mailbox, authenticator: Any) -> Mailbox:
    from tests.smtp_box import _Handler

    box._controller = Controller(
        _Handler(box), hostname="127.0.0.1", port=box.port, ready_timeout=10,
        authenticator=authenticator, auth_require_tls=False, auth_required=True,
    )
    box._controller.start()
    return box


def test_smtp_settings_are_checked_where_they_are_written(tmp_path: Path) -> None:
    port = free_port()
    with pytest.raises(LegatoError) as no_password:
        parse_playbook(playbook_text(port, username="mailer"))
    assert "password_env" in str(no_password.value)
    with pytest.raises(LegatoError) as bad_security:
        parse_playbook(playbook_text(port, security="ssl"))
    assert "security" in str(bad_security.value)
    no_sender = playbook_text(port).replace('support_contact: "help@mail.example"', 'support_contact: "call 555-0100"')
    with pytest.raises(Invalid) as unnamed:
        transports(parse_playbook(no_sender), tmp_path)
    assert "from_address" in (unnamed.value.hint or "")
    named = parse_playbook(playbook_text(port, from_address="news@mail.example"))
    assert transports(named, tmp_path)["email"].from_address == "news@mail.example"  # type: ignore[attr-defined]
    with pytest.raises(LegatoError) as html_on_sms:
        parse_playbook(PLAYBOOK.replace("CHANNEL", f"{{kind: smtp, host: 127.0.0.1, port: {port}}}\n  sms: {{kind: file, path: out/sms.jsonl}}").replace(
            "  - id: hello\n    channel: email", "  - {id: t, channel: sms, body: 'Hi. Reply STOP to opt out.', html: '<p>x</p>'}\n  - id: hello\n    channel: email"))
    assert "HTML part" in str(html_on_sms.value)


def test_a_5xx_in_the_session_is_the_bounced_event_of_its_decision_the_same_record_a_dsn_makes(engine: Engine, tmp_path: Path) -> None:
    """550 to one recipient of a batch (and 550 5.1.1 to another's data: a server that checks
    recipients late): those two dead with the reason, their addresses listed undeliverable,
    one ``bounce`` event each attributed to its decision, the others sent. A refusal that
    blames the sender or the content (5.7.x) is dead without listing anyone."""
    from legato.service import deliveries
    from legato.store.schema import events
    from tests.mail_reports import dsn

    with Mailbox() as box:
        box.refuse["c0002@mail.example"] = (550, "5.1.1 <c0002@mail.example>: Recipient address rejected: User unknown")
        box.refuse_data["c0003@mail.example"] = (550, "5.1.1 mailbox does not exist")
        box.refuse["c0004@mail.example"] = (554, "5.7.1 Relay access denied")
        box.refuse_data["c0005@mail.example"] = (554, "5.7.1 Message rejected as spam")
        playbook = world(engine, tmp_path, playbook_text(box.port, connections=2), 8)
        report = dispatch(engine, playbook, tmp_path)
        received = sorted(r.rcpt_tos[0] for r in box.received)
    assert report.totals() == {"sent": 4, "retry": 0, "dead": 4} and report.bounced == 2
    assert received == [f"c{i:04d}@mail.example" for i in (0, 1, 6, 7)]
    with engine.connect() as c:
        rows = {r.customer_id: r for r in c.execute(sa.select(outbox.c.customer_id, outbox.c.message_id, outbox.c.decision_id, outbox.c.status, outbox.c.error))}
        listed = sorted(c.execute(sa.select(suppressions.c.kind, suppressions.c.value)).all())
        found = c.execute(sa.select(events.c.id, events.c.customer_id, events.c.type, events.c.properties)).all()
        decision_status = dict(c.execute(sa.select(decisions.c.customer_id, decisions.c.status)).all())
    assert {k for k, r in rows.items() if r.status == "dead"} == {"c0002", "c0003", "c0004", "c0005"}
    assert "refused RCPT TO: 550 5.1.1" in rows["c0002"].error and "User unknown" in rows["c0002"].error
    assert "refused the message: 550 5.1.1" in rows["c0003"].error
    assert "Relay access denied" in rows["c0004"].error and "rejected as spam" in rows["c0005"].error
    assert {decision_status[k] for k in ("c0002", "c0003", "c0004", "c0005")} == {"failed"}
    assert listed == [("undeliverable", "c0002@mail.example"), ("undeliverable", "c0003@mail.example")]
    bounces = {e.customer_id: e for e in found if e.type == "bounce"}
    assert len(found) == 2 and set(bounces) == {"c0002", "c0003"}
    for customer, event in bounces.items():
        assert event.properties["decision_id"] == str(rows[customer].decision_id)
        assert event.properties["message_id"] == rows[customer].message_id
        assert event.properties["bounce_type"] == "hard" and "550 5.1.1" in event.properties["reason"]
    # A DSN about the same message, mailed back later (POST /v1/deliveries/returned-mail), is that same record.
    (again,) = deliveries.record_report_email(engine, dsn(rows["c0002"].message_id, "failed", "5.1.1", "550 5.1.1 User unknown"), now=SEND)
    assert again.new is False and again.event_id == bounces["c0002"].id and again.decision_id == rows["c0002"].decision_id
