"""Webhooks leave signed per Standard Webhooks, and a receiver verifying with the
``standardwebhooks`` library takes each message once, on both databases.

A real receiver on 127.0.0.1 checks every request; the dispatcher runs for real from a
cycle's decisions. What the receiver's answers mean: 2xx delivered, 5xx and 429 retried
(429's Retry-After honoured, the rest of the batch not sent), other 4xx dead.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from legato.clock import FixedClock
from legato.cycle import run_cycle
from legato.deliver.dispatch import dispatch_due, transports
from legato.deliver.secrets import MissingSecret
from legato.deliver.webhook import WebhookTransport, retry_after
from legato.errors import Invalid
from legato.playbook.loader import PlaybookError
from legato.store import rate_buckets
from legato.store.schema import outbox
from legato.validation import parse_playbook

from tests.deliver.receivers import WebhookReceiver, new_secret
from tests.deliver.test_dispatch import AT, SEND, customers

PLAYBOOK = """
brand:
  name: Hook Co
  legal: {sender_name: Hook Co, postal_address: "9 Harbour Road", support_contact: "help@hook.example", unsubscribe_url: "https://hook.example/u"}
attributes: {nickname: string}
objectives:
  - {id: grow, goal: engagement, why: testing, stages: [any], kpis: [{metric: visit_rate, target: 0.1}]}
lifecycle:
  - {stage: any, when: "true"}
channels:
  webhook: {kind: webhook, url: "URL", secret_env: HOOK_SECRET, concurrency: 4}
creatives:
  - {id: ping, channel: webhook, purpose: transactional, body: "Hello {{ customer.nickname }}, your order shipped."}
agents:
  - id: notifier
    objective: grow
    audience: "true"
    actions: {creatives: [ping], send_windows: ["09:00-17:00"], do_nothing: false}
    policy: {name: uniform_random}
    holdout: 0
    trust_stage: 3
"""


def message(i: int) -> dict[str, object]:
    return {"message_id": f"m-{i}", "decision_id": i, "channel": "webhook", "to": f"c{i}", "customer_id": f"c{i}", "body": f"Body {i} ✓", "sent_at": "2024-03-04T10:00:00+00:00"}


def test_every_request_verifies_with_the_standardwebhooks_library_and_a_resend_is_the_same_id() -> None:
    secret = new_secret()
    with WebhookReceiver(secret).running() as receiver:
        hook = WebhookTransport(receiver.url, secret, concurrency=4)
        first = hook.send([message(i) for i in range(20)])
        again = hook.send([message(i) for i in range(10)])  # a crash between the POST and the record: sent again
        hook.close()
    assert all(o.delivered and o.provider_id == f"webhook:{o.message_id}" for o in first + again)
    assert receiver.rejected == 0 and receiver.requests == 30
    assert len(receiver.unique) == 20 and sum(receiver.seen.values()) == 30  # each id taken once by a deduplicating receiver
    assert receiver.unique["m-3"]["type"] == "message.webhook" and receiver.unique["m-3"]["data"]["body"] == "Body 3 ✓"


def test_a_receiver_with_another_secret_rejects_every_request() -> None:
    with WebhookReceiver(new_secret()).running() as receiver:
        hook = WebhookTransport(receiver.url, new_secret(), concurrency=1)
        [outcome] = hook.send([message(1)])
    assert receiver.rejected == 1 and outcome.permanent and "answered 401" in str(outcome.error)


def test_statuses_map_to_delivered_transient_and_permanent_and_429_stops_the_batch() -> None:
    secret = new_secret()
    with WebhookReceiver(secret).running() as receiver:
        hook = WebhookTransport(receiver.url, secret, concurrency=1)
        receiver.script = [(503, {}), (408, {}), (404, {}), (301, {"location": "/elsewhere"})]
        outcomes = hook.send([message(i) for i in range(4)])
        receiver.script = [(429, {"retry-after": "30"})]
        after_429 = hook.send([message(i) for i in range(10, 15)])
    assert [(o.delivered, o.permanent) for o in outcomes] == [(False, False), (False, False), (False, True), (False, True)]
    assert all(not o.delivered and not o.permanent and o.retry_after == 30 for o in after_429)
    assert [o.attempted for o in after_429] == [True, False, False, False, False]  # the rest wait without using an attempt
    assert receiver.requests == 5  # after the 429 nothing more of that batch was posted
    assert "127.0.0.1" in str(outcomes[0].error) and secret not in str(outcomes[0].error)


def test_an_unreachable_receiver_is_transient() -> None:
    with WebhookReceiver(new_secret()).running() as receiver:
        url = receiver.url
    [outcome] = WebhookTransport(url, new_secret(), timeout=2).send([message(1)])
    assert not outcome.delivered and not outcome.permanent and "could not be reached" in str(outcome.error)


def test_errors_name_the_host_never_a_credential_in_the_url() -> None:
    [outcome] = WebhookTransport("http://user:pa55word@127.0.0.1:9/h?token=s3cret", new_secret(), timeout=2).send([message(1)])
    assert "127.0.0.1:9" in str(outcome.error) and "pa55word" not in str(outcome.error) and "s3cret" not in str(outcome.error)


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert retry_after("120") == 120.0 and retry_after(None) is None and retry_after("soon") is None
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412480.0 - 60) == 60.0


def test_a_secret_that_is_not_one_and_a_missing_one_are_named_without_the_value(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(Invalid) as bad:
        WebhookTransport("http://127.0.0.1:9/h", "whsec_@@not base64@@")
    assert "channels.webhook.secret" in bad.value.message and "@@" not in bad.value.message
    for weak in ("nope", "whsec_" + "QUJD" * 4):  # no prefix; 12 bytes
        with pytest.raises(Invalid) as refused:
            WebhookTransport("http://127.0.0.1:9/h", weak)
        assert weak not in refused.value.message
    pb = parse_playbook(PLAYBOOK.replace("URL", "http://127.0.0.1:9/h"))
    monkeypatch.delenv("HOOK_SECRET", raising=False)
    with pytest.raises(MissingSecret) as missing:
        transports(pb, tmp_path)
    assert "HOOK_SECRET" in missing.value.message
    with pytest.raises(PlaybookError) as unsigned:
        parse_playbook(PLAYBOOK.replace("URL", "http://127.0.0.1:9/h").replace(", secret_env: HOOK_SECRET", ""))
    assert "secret_env" in str(unsigned.value)


def test_the_dispatcher_delivers_each_decision_once_through_retries(engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """503 for the first round: every message waits (retry); the next round delivers each once."""
    secret = new_secret()
    monkeypatch.setenv("HOOK_SECRET", secret)
    ids = {f"c{i}": "" for i in range(12)}
    customers(engine, ids)
    with WebhookReceiver(secret).running() as receiver:
        pb = parse_playbook(PLAYBOOK.replace("URL", receiver.url))
        sinks = transports(pb, tmp_path)
        run_cycle(engine, pb, FixedClock(AT), sinks)
        receiver.script = [(503, {})] * 12
        first = dispatch_due(engine, pb, FixedClock(SEND), sinks)
        assert first.totals() == {"sent": 0, "retry": 12, "dead": 0} and receiver.unique == {}
        later = dispatch_due(engine, pb, FixedClock(SEND + timedelta(hours=1)), sinks)
        assert later.totals() == {"sent": 12, "retry": 0, "dead": 0}
    with engine.connect() as c:
        rows = c.execute(sa.select(outbox.c.message_id, outbox.c.customer_id, outbox.c.status, outbox.c.provider_id)).all()
    assert receiver.rejected == 0 and set(receiver.unique) == {r.message_id for r in rows}
    assert {r.status for r in rows} == {"sent"} and all(r.provider_id == f"webhook:{r.message_id}" for r in rows)
    assert {p["data"]["customer_id"] for p in receiver.unique.values()} == set(ids)
    assert all(p["data"]["body"] == "Hello Sam, your order shipped." for p in receiver.unique.values())


def test_a_429_from_the_receiver_is_honoured_as_the_message_s_next_attempt(engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = new_secret()
    monkeypatch.setenv("HOOK_SECRET", secret)
    customers(engine, {"a": ""})
    clock = FixedClock(SEND)
    with WebhookReceiver(secret).running() as receiver:
        pb = parse_playbook(PLAYBOOK.replace("URL", receiver.url))
        sinks = transports(pb, tmp_path)
        run_cycle(engine, pb, FixedClock(AT), sinks)
        receiver.script = [(429, {"retry-after": "3600"})]
        assert dispatch_due(engine, pb, clock, sinks).totals()["retry"] == 1
        with engine.connect() as c:
            row = c.execute(sa.select(outbox.c.status, outbox.c.next_attempt_at)).one()
        assert row.status == "retry" and row.next_attempt_at == SEND + timedelta(hours=1)  # the receiver's wait, not the backoff
        assert rate_buckets.take(engine, "webhook", None, 1, instant=clock.now().timestamp()).wait == 3600  # and every worker's
        clock.set(SEND + timedelta(minutes=59))
        assert dispatch_due(engine, pb, clock, sinks).totals()["sent"] == 0
        clock.set(SEND + timedelta(hours=1))
        assert dispatch_due(engine, pb, clock, sinks).totals()["sent"] == 1
    assert len(receiver.unique) == 1 and receiver.rejected == 0


def test_the_body_is_what_is_signed(tmp_path: Path) -> None:
    secret = new_secret()
    hook = WebhookTransport("http://127.0.0.1:9/h", secret, concurrency=1)
    body = hook.body(message(7))
    headers = hook.headers("m-7", body)
    from standardwebhooks.webhooks import Webhook

    assert Webhook(secret).verify(body.encode(), headers)["data"]["message_id"] == "m-7"
    assert json.loads(body)["data"]["decision_id"] == 7 and headers["webhook-id"] == "m-7"


def test_one_request_failing_among_concurrent_ones_is_retried_and_the_others_are_recorded_once(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """450 messages, 4 in flight: two answered 503 mid-batch wait for their next attempt; every
    other one is recorded sent and never posted again."""
    secret = new_secret()
    monkeypatch.setenv("HOOK_SECRET", secret)
    customers(engine, {f"c{i:03d}": "" for i in range(450)})
    with WebhookReceiver(secret).running() as receiver:
        pb = parse_playbook(PLAYBOOK.replace("URL", receiver.url))
        sinks = transports(pb, tmp_path)
        run_cycle(engine, pb, FixedClock(AT), sinks)
        with engine.connect() as c:
            ids = c.execute(sa.select(outbox.c.message_id).order_by(outbox.c.id)).scalars().all()
        assert len(ids) == 450
        failing = {ids[10], ids[250]}
        receiver.fail_once = {key: (503, {}) for key in failing}
        first = dispatch_due(engine, pb, FixedClock(SEND), sinks)
        assert first.totals() == {"sent": 448, "retry": 2, "dead": 0}
        with engine.connect() as c:
            waiting = set(c.execute(sa.select(outbox.c.message_id).where(outbox.c.status == "retry")).scalars())
        assert waiting == failing and set(receiver.unique) == set(ids) - failing
        later = dispatch_due(engine, pb, FixedClock(SEND + timedelta(hours=1)), sinks)
        assert later.totals() == {"sent": 2, "retry": 0, "dead": 0}
        sinks["webhook"].close()  # type: ignore[attr-defined]
    with engine.connect() as c:
        statuses = c.execute(sa.select(outbox.c.status, sa.func.count()).group_by(outbox.c.status)).all()
    assert dict(statuses) == {"sent": 450}
    assert set(receiver.unique) == set(ids) and set(receiver.seen.values()) == {1}  # each posted and taken once
    assert receiver.requests == 452 and receiver.rejected == 0


def test_a_receiver_nobody_listens_on_fails_the_batch_at_once_each_message_transiently() -> None:
    with WebhookReceiver(new_secret()).running() as receiver:
        url = receiver.url
    hook = WebhookTransport(url, new_secret(), concurrency=4, timeout=2)
    outcomes = hook.send([message(i) for i in range(200)])
    assert all(not o.delivered and not o.permanent and o.attempted and "could not be reached" in str(o.error) for o in outcomes)
    assert hook._origin.opened == 0  # no connection was ever made; nor tried 200 times (one failed connect ended the batch)
