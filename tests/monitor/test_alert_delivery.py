"""Alerts delivered: one per incident to each destination (a Slack-compatible webhook on a real
local HTTP server, e-mail through aiosmtpd, the log), a follow-up when it clears, recorded per
destination so a rerun sends nothing twice; failures retried with backoff and shown."""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from legato.monitor.alert_delivery import deliver_alerts, slack_payload
from legato.monitor.alerts import clear_alert, incident_key, list_alerts, raise_alert
from legato.playbook.models import Playbook
from legato.service import alerts as alert_service
from legato.store.schema import alert_deliveries
from legato.store.status import AlertKind, AlertPhase
from legato.validation import PlaybookError, parse_playbook
from tests.monitor.alert_receiver import SlackReceiver
from tests.smtp_box import Mailbox
from tests.world import PLAYBOOK

AT = datetime.fromisoformat("2024-03-05T09:00:00+00:00")
INCIDENT = incident_key(AlertKind.STOP_LOSS, "mailer")


def playbook(mailbox_port: int | None = None, alerts: str | None = None) -> Playbook:
    text = PLAYBOOK.replace("STAGE", "3").replace("HOLDOUT", "0").replace("BUDGET", "{}")
    if mailbox_port is not None:
        text = text.replace("  email: {kind: file, path: out/email.jsonl}",
                            f"  email: {{kind: smtp, host: 127.0.0.1, port: {mailbox_port}, from_address: legato@test.example}}")
    if alerts is None:
        alerts = "  destinations:\n    - {kind: slack, url_env: ALERTS_URL}\n    - {kind: email, to: [ops@test.example, ana@test.example]}\n"
    return parse_playbook(text + "alerts:\n" + alerts)


def raise_breach(engine: Engine, at: datetime = AT, agent: str = "mailer") -> int:
    with engine.begin() as c:
        alert_id, _ = raise_alert(c, incident_key(AlertKind.STOP_LOSS, agent), AlertKind.STOP_LOSS,
                                  f"agent {agent} paused by its stop-loss: unsubscribe_rate 0.12 over 100 sends crossed its max 0.02",
                                  {"breaches": []}, at, agent_id=agent)
    return alert_id


def rows(engine: Engine) -> list[tuple[str, str, str, int]]:
    with engine.connect() as c:
        found = c.execute(sa.select(alert_deliveries).order_by(alert_deliveries.c.id)).all()
    return [(r.phase, r.destination, r.status, r.attempts) for r in found]


def test_one_incident_is_one_alert_and_its_clearing_one_follow_up_at_each_destination(engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="legato.alerts")
    with SlackReceiver() as slack, Mailbox() as mailbox:
        pb = playbook(mailbox.port)
        env = {"ALERTS_URL": slack.url()}
        first = raise_breach(engine)
        assert raise_breach(engine, AT + timedelta(days=1)) == first  # the same incident seen again: counted, not a new alert
        report = deliver_alerts(engine, pb, AT + timedelta(days=1), environ=env)
        assert report.sent == {"log": 1, "slack": 1, "email:ops@test.example": 1, "email:ana@test.example": 1}
        for day in (2, 3):  # reruns and later runs, the breach still repeating: nothing more is sent
            raise_breach(engine, AT + timedelta(days=day))
            assert deliver_alerts(engine, pb, AT + timedelta(days=day), environ=env).to_dict() == {"sent": {}, "retry": {}, "failed": {}}
        [post] = slack.posts
        assert post["key"] == f"legato-alert-{first}-opened" and post["path"] == "/services/T000/B000/s3cr3tT0ken"
        blocks = post["json"]["blocks"]
        assert [b["type"] for b in blocks] == ["header", "section", "context"]
        assert blocks[0]["text"] == {"type": "plain_text", "text": "Legato alert: stop-loss on agent mailer"}
        assert post["json"]["text"].startswith("Legato alert: stop-loss on agent mailer: agent mailer paused by its stop-loss")
        assert any(INCIDENT in e["text"] for e in blocks[2]["elements"])
        assert sorted(m["To"] for m in mailbox.messages()) == ["ana@test.example", "ops@test.example"]
        assert mailbox.message_ids() == {f"<legato-alert-{first}-opened@test.example>": 2}  # one e-mail, to each address once
        [alert] = list_alerts_of(engine)
        assert alert.repeats == 3

        with engine.begin() as c:
            assert clear_alert(c, INCIDENT, AT + timedelta(days=4), by="ana") == first
        assert deliver_alerts(engine, pb, AT + timedelta(days=4), environ=env).sent == {
            "log": 1, "slack": 1, "email:ops@test.example": 1, "email:ana@test.example": 1}
        assert deliver_alerts(engine, pb, AT + timedelta(days=5), environ=env).sent == {}
        follow_up = slack.posts[1]
        assert len(slack.posts) == 2 and follow_up["key"] == f"legato-alert-{first}-cleared"
        assert follow_up["json"]["blocks"][0]["text"]["text"] == "Resolved: stop-loss incident of agent mailer cleared"
        assert "Cleared by ana at 2024-03-09 09:00 UTC" in follow_up["json"]["text"]
        assert any(INCIDENT in e["text"] and f"alert #{first}" in e["text"] for e in follow_up["json"]["blocks"][2]["elements"])
        cleared_mail = [m for m in mailbox.messages() if m["Subject"].startswith("Resolved")]
        assert len(cleared_mail) == 2 and INCIDENT in cleared_mail[0].get_content()
    logged = [r for r in caplog.records if r.name == "legato.alerts"]
    assert [r.getMessage().split(":")[0] for r in logged] == ["Legato alert", "Resolved"]
    [listed] = alert_service.listing(engine)
    assert listed["status"] == "cleared" and listed["cleared_by"] == "ana"
    assert [(d["phase"], d["destination"], d["status"], d["attempts"]) for d in listed["deliveries"]] == [
        ("opened", "log", "sent", 1), ("opened", "slack", "sent", 1), ("opened", "email:ops@test.example", "sent", 1),
        ("opened", "email:ana@test.example", "sent", 1),
        ("cleared", "log", "sent", 1), ("cleared", "slack", "sent", 1), ("cleared", "email:ops@test.example", "sent", 1),
        ("cleared", "email:ana@test.example", "sent", 1)]


def list_alerts_of(engine: Engine) -> list:
    with engine.connect() as c:
        return list_alerts(c)


def test_a_failing_webhook_is_retried_with_backoff_shown_and_given_up_while_the_others_go(engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="legato.alerts")
    pb = playbook(alerts="  destinations:\n    - {kind: slack, url_env: ALERTS_URL}\n  give_up_after: 10m\n")
    with SlackReceiver() as slack:
        env = {"ALERTS_URL": slack.url()}
        slack.script = [(503, {}), (429, {"Retry-After": "200"})]
        raise_breach(engine)
        assert deliver_alerts(engine, pb, AT, environ=env).to_dict() == {"sent": {"log": 1}, "retry": {"slack": 1}, "failed": {}}
        [listed] = alert_service.listing(engine)
        slack_row = listed["deliveries"][1]
        assert (slack_row["status"], slack_row["attempts"], slack_row["due_at"]) == ("pending", 1, (AT + timedelta(minutes=1)).isoformat())
        assert slack_row["last_error"] == f"the slack webhook at 127.0.0.1:{slack.port} answered 503"
        assert deliver_alerts(engine, pb, AT + timedelta(seconds=59), environ=env).to_dict()["retry"] == {}  # not due yet: not tried
        # The second failure asks for 200 s (Retry-After): more than the doubled 2 minutes.
        assert deliver_alerts(engine, pb, AT + timedelta(minutes=1), environ=env).retry == {"slack": 1}
        assert rows(engine)[1] == ("opened", "slack", "pending", 2)
        assert alert_service.listing(engine)[0]["deliveries"][1]["due_at"] == (AT + timedelta(minutes=1, seconds=200)).isoformat()
        assert deliver_alerts(engine, pb, AT + timedelta(minutes=5), environ=env).sent == {"slack": 1}
        assert len(slack.posts) == 1

        # A destination that keeps failing: retried until give_up_after, then failed, logged as an error and listed.
        slack.script = [(500, {})] * 20
        with engine.begin() as c:
            clear_alert(c, INCIDENT, AT + timedelta(minutes=6), by="ana")
        minute = 6
        while rows(engine)[-1][2] != "failed" and minute < 60:
            deliver_alerts(engine, pb, AT + timedelta(minutes=minute), environ=env)
            minute += 1
        assert rows(engine)[-1] == ("cleared", "slack", "failed", 5)  # at 6, 7, 9, 13 and 16 (the give-up age) minutes
    assert any(r.levelno == logging.ERROR and "not delivered" in r.getMessage() and "answered 500" in r.getMessage() for r in caplog.records)
    assert alert_service.listing(engine)[0]["deliveries"][-1]["last_error"].endswith("answered 500")


def test_the_webhook_url_is_a_secret_named_by_its_variable_and_never_shown(engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    pb = playbook(alerts="  destinations:\n    - {kind: slack, url_env: ALERTS_URL}\n")
    raise_breach(engine)
    assert deliver_alerts(engine, pb, AT, environ={}).retry == {"slack": 1}
    error = alert_service.listing(engine)[0]["deliveries"][1]["last_error"]
    assert "alerts.destinations[0].url: the environment variable ALERTS_URL is not set or empty" in error
    with SlackReceiver() as slack:
        slack.script = [(404, {})]  # Slack's answer to a revoked webhook: final
        assert deliver_alerts(engine, pb, AT + timedelta(minutes=1), environ={"ALERTS_URL": slack.url()}).failed == {"slack": 1}
    error = alert_service.listing(engine)[0]["deliveries"][1]["last_error"]
    assert error.startswith(f"the slack webhook at 127.0.0.1:{slack.port} answered 404") and "check the URL in ALERTS_URL" in error
    # Nothing logs the URL (httpx's client logs each request's URL at INFO: it is not used).
    assert [r.name for r in caplog.records if "s3cr3tT0ken" in r.getMessage()] == []
    assert "s3cr3tT0ken" not in str(alert_service.listing(engine))


def test_two_deliverers_at_once_send_each_alert_once(engine: Engine) -> None:
    pb = playbook(alerts="  destinations:\n    - {kind: slack, url_env: ALERTS_URL}\n")
    with SlackReceiver() as slack:
        env = {"ALERTS_URL": slack.url()}
        for agent in ("a1", "a2", "a3", "a4", "a5"):
            raise_breach(engine, agent=agent)
        start = threading.Barrier(3)

        def run() -> None:
            start.wait()
            deliver_alerts(engine, pb, AT, environ=env)

        threads = [threading.Thread(target=run) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(slack.keys.values()) == [1] * 5
    assert {r[2] for r in rows(engine)} == {"sent"} and len(rows(engine)) == 10


def test_a_follow_up_never_goes_before_its_alert(engine: Engine) -> None:
    pb = playbook(alerts="  destinations:\n    - {kind: slack, url_env: ALERTS_URL}\n")
    with SlackReceiver() as slack:
        env = {"ALERTS_URL": slack.url()}
        alert_id = raise_breach(engine)
        with engine.begin() as c:
            clear_alert(c, INCIDENT, AT + timedelta(minutes=1), by="ana")  # cleared before anything was delivered
        slack.script = [(503, {})]  # the alert itself fails once
        assert deliver_alerts(engine, pb, AT + timedelta(minutes=2), environ=env).retry == {"slack": 1}
        assert slack.posts == []  # its follow-up waited behind it
        deliver_alerts(engine, pb, AT + timedelta(minutes=3), environ=env)
        assert [p["key"] for p in slack.posts] == [f"legato-alert-{alert_id}-opened", f"legato-alert-{alert_id}-cleared"]


def test_kinds_chooses_the_kinds_a_destination_takes(engine: Engine) -> None:
    pb = playbook(alerts="  destinations:\n    - {kind: slack, url_env: ALERTS_URL, kinds: [anomaly]}\n")
    raise_breach(engine)
    assert deliver_alerts(engine, pb, AT, environ={}).sent == {"log": 1}
    assert [r[1] for r in rows(engine)] == ["log"]


def test_the_slack_payload_stays_within_slacks_limits_and_escapes_markup() -> None:
    from legato.monitor.alerts import Alert
    from legato.store.status import AlertStatus

    alert = Alert(7, "stop_loss:" + "x" * 190, AlertKind.STOP_LOSS, "x" * 190, AlertStatus.OPEN, "<!channel> & " + "y" * 5000, {}, AT, 0, None)
    payload = slack_payload(alert, AlertPhase.OPENED)
    assert len(payload["blocks"][0]["text"]["text"]) <= 150 and len(payload["blocks"][1]["text"]["text"]) <= 3000
    assert payload["blocks"][1]["text"]["text"].startswith("&lt;!channel&gt; &amp; ") and "<!channel>" not in payload["text"]


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ("  destinations:\n    - {kind: email, to: [ops@test.example]}\n",
         "alerts.destinations[0].channel: alert e-mail goes through an SMTP channel, and channels.email is of kind file"),
        ("  destinations:\n    - {kind: pager, to: [ops@test.example]}\n", "alerts.destinations[0]"),
        ("  destinations:\n    - {kind: slack, url: 'https://hooks.slack.com/services/x'}\n", "url_env"),
        ("  destinations:\n    - {kind: slack, url_env: A}\n    - {kind: slack, url_env: B}\n", "two destinations are called 'slack'"),
        ("  destinations:\n    - {kind: email, to: [not-an-address]}\n", "alerts.destinations[0].to: 'not-an-address' is not an e-mail address"),
    ],
)
def test_a_wrong_alerts_section_is_named_at_its_line(section: str, expected: str) -> None:
    text = PLAYBOOK.replace("STAGE", "3").replace("HOLDOUT", "0").replace("BUDGET", "{}") + "alerts:\n" + section
    with pytest.raises(PlaybookError) as caught:
        parse_playbook(text, "pb.yaml")
    line = next(problem for problem in caught.value.lines if expected in problem)
    number = text.splitlines().index("alerts:") + 1
    assert line.startswith("pb.yaml:") and int(line.split(":")[1]) > number, line
    assert expected in line, line
