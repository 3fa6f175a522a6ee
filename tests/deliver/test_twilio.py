"""SMS and WhatsApp through a Twilio-compatible Messages API, against a real HTTP server on 127.0.0.1.

The server (tests/twilio_server.py) follows Twilio's documented request and answer shapes;
it can be told to answer 429 with Retry-After and 5xx. Done-when of issue 13: "429 and 5xx
from the SMS provider: retried, none lost, none twice", on SQLite and PostgreSQL.
"""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pyarrow as pa
import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from legato.clock import FixedClock
from legato.cycle import run_cycle
from legato.deliver.dispatch import dispatch_due, transports
from legato.deliver.secrets import MissingSecret
from legato.deliver.twilio import TwilioTransport, retry_after, signature, valid_signature
from legato.errors import LegatoError
from legato.playbook.channels import TwilioChannel
from legato.store.ingest import import_customers
from legato.store.schema import outbox
from legato.validation import parse_playbook
from tests.twilio_server import ACCOUNT, PLAYBOOK, TOKEN, TOKEN_ENV, TwilioServer, playbook_text

AT = datetime(2024, 3, 4, 8, 0, tzinfo=timezone.utc)
SEND = AT + timedelta(hours=2)



@pytest.fixture
def twilio(monkeypatch: pytest.MonkeyPatch) -> Iterator[TwilioServer]:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    with TwilioServer() as server:
        yield server


def spec(server: TwilioServer, **changes: object) -> TwilioChannel:
    settings = {"base_url": server.url, "account_sid": ACCOUNT, "auth_token_env": TOKEN_ENV, "from": "+14155550100",
                "status_callback": "https://legato.example/v1/twilio/status", **changes}
    return TwilioChannel.model_validate(settings)


def message(n: int, to: str = "+14155550199", body: str = "Text Co: hello. Reply STOP to opt out.") -> dict[str, object]:
    return {"message_id": f"00000000-0000-8000-8000-{n:012x}", "to": to, "body": body, "channel": "sms"}


def test_a_text_is_the_messages_resources_form_and_its_sid_is_the_provider_id(twilio: TwilioServer) -> None:
    with TwilioTransport("sms", spec(twilio)) as transport:
        [outcome] = transport.send([message(1)])
    assert outcome.delivered and outcome.provider_id is not None and outcome.provider_id.startswith("SM")
    [sent] = twilio.accepted
    assert sent["sid"] == outcome.provider_id
    assert (sent["To"], sent["From"], sent["Body"]) == ("+14155550199", "+14155550100", "Text Co: hello. Reply STOP to opt out.")
    callback = urlsplit(sent["StatusCallback"])
    assert callback.path == "/v1/twilio/status" and parse_qs(callback.query) == {"message_id": [str(message(1)["message_id"])]}
    assert transport.parts == Counter({"GSM-7": 1})


def test_whatsapp_numbers_carry_the_prefix_and_a_messaging_service_replaces_from(twilio: TwilioServer) -> None:
    with TwilioTransport("whatsapp", spec(twilio, **{"from": None, "messaging_service_sid": "MG" + "1" * 32})) as transport:
        [outcome] = transport.send([message(1)])
    assert outcome.delivered
    [sent] = twilio.accepted
    assert sent["To"] == "whatsapp:+14155550199" and "From" not in sent and sent["MessagingServiceSid"] == "MG" + "1" * 32
    assert transport.parts == Counter()  # WhatsApp is not billed by SMS parts


def test_a_refused_number_is_permanent_with_the_providers_code_and_message(twilio: TwilioServer) -> None:
    with TwilioTransport("sms", spec(twilio)) as transport:
        refused, fine = transport.send([message(1, to="12345"), message(2)])
    assert refused.permanent and "21211" in str(refused.error) and "not a valid phone number" in str(refused.error)
    assert fine.delivered  # one message refused stops nothing else


def test_429_stops_the_batch_and_the_rest_wait_without_using_an_attempt(twilio: TwilioServer) -> None:
    twilio.plan(429, retry_after="30")
    with TwilioTransport("sms", spec(twilio)) as transport:
        first, second, third = transport.send([message(1), message(2), message(3)])
    assert not first.delivered and not first.permanent and first.attempted and first.retry_after == 30
    assert "20429" in str(first.error)
    for rest in (second, third):
        assert not rest.delivered and not rest.permanent and not rest.attempted and rest.retry_after == 30
    assert twilio.requests == 1 and twilio.accepted == []


def test_5xx_is_transient_and_wrong_credentials_name_the_settings(twilio: TwilioServer, monkeypatch: pytest.MonkeyPatch) -> None:
    twilio.plan(503)
    with TwilioTransport("sms", spec(twilio)) as transport:
        down, _ = transport.send([message(1), message(2)])
    assert not down.permanent and down.retry_after is None and "503" in str(down.error)
    monkeypatch.setenv(TOKEN_ENV, "not-the-token")
    with TwilioTransport("sms", spec(twilio)) as transport:
        refused, untried = transport.send([message(3), message(4)])
    assert not refused.permanent and "20003" in str(refused.error) and TOKEN_ENV in str(refused.error)
    assert "not-the-token" not in str(refused.error) and not untried.attempted


def test_an_unreachable_provider_is_transient_and_nothing_is_tried_after_it(twilio: TwilioServer) -> None:
    with TwilioTransport("sms", spec(twilio, base_url="http://127.0.0.1:9")) as transport:
        first, second = transport.send([message(1), message(2)])
    assert not first.permanent and "cannot reach" in str(first.error) and not second.attempted


def test_a_text_longer_than_the_provider_takes_is_refused_before_sending(twilio: TwilioServer) -> None:
    with TwilioTransport("sms", spec(twilio)) as transport:
        [outcome] = transport.send([message(1, body="a" * 1601)])
    assert outcome.permanent and "1600" in str(outcome.error) and twilio.requests == 0


def test_retry_after_in_seconds_or_as_a_date() -> None:
    now = datetime(2024, 3, 4, 10, 0, tzinfo=timezone.utc)
    assert retry_after("120") == 120
    assert retry_after("Mon, 04 Mar 2024 10:01:30 GMT", now) == 90
    assert retry_after("soon") is None and retry_after(None) is None


def test_the_signature_of_twilios_documented_example() -> None:
    # twilio.com/docs/usage/security: auth token 12345, this URL and these parameters.
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    params = {"CallSid": "CA1234567890ABCDE", "Caller": "+14158675310", "Digits": "1234", "From": "+14158675310", "To": "+18005551212"}
    assert signature("12345", url, params) == "GvWf1cFY/Q7PnoempGyD5oXAezc="
    assert valid_signature(["other", "12345"], url, params, "GvWf1cFY/Q7PnoempGyD5oXAezc=")
    assert not valid_signature(["12345"], url, {**params, "Digits": "9999"}, "GvWf1cFY/Q7PnoempGyD5oXAezc=")
    assert not valid_signature(["12345"], url.replace("https", "http"), params, "GvWf1cFY/Q7PnoempGyD5oXAezc=")
    assert valid_signature(["12345"], "https://mycompany.com:443/myapp.php?foo=1&bar=2", params, "GvWf1cFY/Q7PnoempGyD5oXAezc=")


def test_the_settings_need_a_token_variable_and_one_sender(monkeypatch: pytest.MonkeyPatch) -> None:
    base = {"kind": "twilio", "account_sid": ACCOUNT}
    with pytest.raises(ValueError, match="auth_token_env"):
        TwilioChannel.model_validate({**base, "from": "+14155550100"})
    with pytest.raises(ValueError, match="exactly one sender"):
        TwilioChannel.model_validate({**base, "auth_token_env": TOKEN_ENV})
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    with pytest.raises(MissingSecret) as missing:
        TwilioTransport("sms", TwilioChannel.model_validate({**base, "auth_token_env": TOKEN_ENV, "from": "+14155550100"}))
    assert TOKEN_ENV in missing.value.message and "channels.sms.auth_token" in missing.value.message
    with pytest.raises(LegatoError, match="email: kind twilio carries sms and whatsapp only"):
        parse_playbook(playbook_text("http://x", template=PLAYBOOK.replace("  sms: {kind: twilio", "  email: {kind: twilio")))


# --- the done-when: 429 and 5xx from the SMS provider, retried, none lost, none twice ----


def _world(engine: Engine, server: TwilioServer, n: int) -> object:
    playbook = parse_playbook(playbook_text(server.url))
    ids = [f"t{i:03d}" for i in range(n)]
    table = pa.table({"id": ids, "phone": [f"+1415555{i:04d}" for i in range(n)], "time_zone": ["UTC"] * n,
                      "consent_sms_marketing": ["express"] * n})
    import_customers(engine, table, clock=FixedClock(AT))
    return playbook


def test_429_and_5xx_from_the_sms_provider_retried_none_lost_none_twice(engine: Engine, twilio: TwilioServer, tmp_path: Path) -> None:
    n = 24
    playbook = _world(engine, twilio, n)
    run_cycle(engine, playbook, FixedClock(AT), transports(playbook, tmp_path))
    # The provider's answers: the first request is rate limited (the lanes stop there), then
    # the next two fail with 500 and 503, and two more later with 502 and 429. One claim per
    # dispatch (chunk): a provider's wait also holds the channel's bucket, which a second claim
    # of the same run would wait out in real seconds.
    twilio.plan(429, retry_after="120")
    now = SEND
    first = dispatch_due(engine, playbook, FixedClock(now), transports(playbook, tmp_path), chunk=100)
    assert first.totals()["dead"] == 0
    with engine.connect() as connection:
        rows = connection.execute(sa.select(outbox.c.status, outbox.c.attempts, outbox.c.next_attempt_at, outbox.c.send_at)).all()
    waiting = [r for r in rows if r.status == "retry"]
    assert waiting and all(r.next_attempt_at.replace(tzinfo=timezone.utc) >= now + timedelta(seconds=120) for r in waiting)
    # Messages of the rate-limited batch that were never handed over wait without an attempt used.
    untried = [r for r in rows if r.status == "pending" and r.send_at.replace(tzinfo=timezone.utc) == now + timedelta(seconds=120)]
    assert untried and all(r.attempts == 0 for r in untried)
    for status in (500, 503):
        twilio.plan(status)
    rounds = 1
    while True:
        with engine.connect() as connection:
            left = connection.execute(sa.select(sa.func.count()).select_from(outbox).where(outbox.c.status != "sent")).scalar_one()
        if not left:
            break
        assert rounds < 20, "messages still unsent after 20 dispatches"
        if rounds == 3:
            twilio.plan(502)
            twilio.plan(429, retry_after="5")
        now += timedelta(hours=7)  # past any backoff (at most 6 hours)
        report = dispatch_due(engine, playbook, FixedClock(now), transports(playbook, tmp_path), chunk=100)
        assert report.totals()["dead"] == 0, report.errors
        rounds += 1
    bodies = Counter(m["To"] for m in twilio.accepted)
    assert len(bodies) == n and set(bodies.values()) == {1}, "each customer's text reached the provider exactly once"
    with engine.connect() as connection:
        provider_ids = set(connection.execute(sa.select(outbox.c.provider_id)).scalars())
    assert provider_ids == {m["sid"] for m in twilio.accepted}
    assert twilio.requests == n + 5  # every failure was retried once the provider took it, nothing else was asked twice


# --- WhatsApp: a freeform message goes only inside the 24-hour service window ----------

WHATSAPP = (
    PLAYBOOK.replace("  sms: {kind: twilio", "  whatsapp: {kind: twilio")
    .replace("- {id: text, channel: sms,", "- {id: text, channel: whatsapp,")
    .replace("{channel: sms, purpose: marketing}", "{channel: whatsapp, purpose: marketing}")
)


def test_a_freeform_whatsapp_message_due_after_the_window_closed_is_not_sent(engine: Engine, twilio: TwilioServer, tmp_path: Path) -> None:
    from legato.service.replies import receive_text

    playbook = parse_playbook(playbook_text(twilio.url, template=WHATSAPP))
    numbers = {"w0": "+14155550180", "w1": "+14155550181", "w2": "+14155550182"}
    table = pa.table({"id": list(numbers), "phone": list(numbers.values()), "time_zone": ["UTC"] * 3,
                      "consent_whatsapp_marketing": ["express"] * 3})
    import_customers(engine, table, clock=FixedClock(AT))
    # w0 and w1 wrote an hour before the cycle; w2 never did (the cycle decides nothing for w2).
    for customer in ("w0", "w1"):
        receive_text(engine, playbook, numbers[customer], "do you have boots in size 9?", now=AT - timedelta(hours=1), channel="whatsapp")
    run_cycle(engine, playbook, FixedClock(AT), transports(playbook, tmp_path))
    with engine.connect() as connection:
        assert sorted(connection.execute(sa.select(outbox.c.customer_id)).scalars()) == ["w0", "w1"]
    # w1 writes again the next morning: its window is open at send time, w0's closed 24 hours after it wrote.
    later = AT + timedelta(days=1, hours=2)
    receive_text(engine, playbook, numbers["w1"], "still there?", now=later - timedelta(hours=1), channel="whatsapp")
    report = dispatch_due(engine, playbook, FixedClock(later), transports(playbook, tmp_path))
    assert [m["To"] for m in twilio.accepted] == ["whatsapp:" + numbers["w1"]]
    assert report.totals() == {"sent": 1, "retry": 0, "dead": 1}
    assert "whatsapp_outside_service_window" in report.errors[0] and "approved template" in report.errors[0]


def test_an_answer_that_never_comes_is_in_doubt_and_named_when_sent_again(engine: Engine, twilio: TwilioServer, tmp_path: Path) -> None:
    # No SMS provider deduplicates: a request that went out and whose answer never came may
    # have been taken. The dispatcher names the message in doubt and (in_doubt: resend) sends it again.
    playbook = _world(engine, twilio, 3)
    text = playbook_text(twilio.url)
    playbook = parse_playbook(text.replace('from: "+14155550100",', 'from: "+14155550100", timeout: 2, connections: 1,'))
    run_cycle(engine, playbook, FixedClock(AT), transports(playbook, tmp_path))
    twilio.plan(201, delay=5.0)  # taken, but answered long after the client gave up (2 s)
    first = dispatch_due(engine, playbook, FixedClock(SEND), transports(playbook, tmp_path))
    assert first.totals()["sent"] == 2 and first.totals()["dead"] == 0
    with engine.connect() as connection:
        [doubt] = connection.execute(sa.select(outbox.c.status, outbox.c.error, outbox.c.customer_id).where(outbox.c.status != "sent")).all()
    assert "no answer from the provider" in str(doubt.error) and "in doubt" in str(doubt.error)
    second = dispatch_due(engine, playbook, FixedClock(SEND + timedelta(hours=1)), transports(playbook, tmp_path))
    assert second.totals()["sent"] == 1
    reached = Counter(m["To"] for m in twilio.accepted)
    assert sorted(reached.values()) == [1, 1, 2], "the one in doubt went twice, and only it"
