"""Push leaves in FCM HTTP v1's message shape, authorized by a token the service account's
key buys (a JWT-bearer grant that the fake token endpoint verifies with google-auth), once
per expiry; FCM's error codes map to permanent and transient outcomes."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from legato.clock import FixedClock
from legato.cycle import run_cycle
from legato.deliver.dispatch import dispatch_due, transports
from legato.deliver.fcm import FcmTransport, load_credentials
from legato.errors import Invalid
from legato.store.ingest import import_customers
from legato.store.schema import outbox
from legato.validation import parse_playbook

from tests.deliver.receivers import FakeFcm, service_account_key
from tests.deliver.test_dispatch import AT, SEND

PLAYBOOK = """
brand:
  name: Push Co
  legal: {sender_name: Push Co, postal_address: "9 Harbour Road", support_contact: "help@push.example", unsubscribe_url: "https://push.example/u"}
attributes: {push_token: string}
objectives:
  - {id: grow, goal: engagement, why: testing, stages: [any], kpis: [{metric: visit_rate, target: 0.1}]}
lifecycle:
  - {stage: any, when: "true"}
channels:
  push: {kind: fcm, project_id: test-project, credentials_file_env: FCM_KEY_FILE, base_url: "BASE", token_uri: "BASE/token", concurrency: 2}
creatives:
  - {id: shipped, channel: push, purpose: transactional, title: "On its way", body: "Your order shipped."}
agents:
  - id: pusher
    objective: grow
    audience: "true"
    actions: {creatives: [shipped], send_windows: ["09:00-17:00"], do_nothing: false}
    policy: {name: uniform_random}
    holdout: 0
    trust_stage: 3
"""


@pytest.fixture
def fcm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    info, public = service_account_key()
    key_file = tmp_path / "sa.json"
    key_file.write_text(json.dumps(info))
    monkeypatch.setenv("FCM_KEY_FILE", str(key_file))
    fake = FakeFcm("test-project", public, info["client_email"])
    with fake.running():
        yield fake


def transport(fake: FakeFcm, tmp_path: Path) -> FcmTransport:
    credentials = load_credentials(tmp_path / "sa.json", "FCM_KEY_FILE", "push", f"{fake.base}/token")
    return FcmTransport("test-project", credentials, base_url=fake.base, concurrency=2)


def push(i: int, token: str | None = None) -> dict[str, object]:
    return {"message_id": f"m-{i}", "decision_id": i, "agent_id": "a", "channel": "push", "customer_id": f"c{i}",
            "title": "Hi", "body": f"Body {i}", "device_token": token if token is not None else f"device-{i}"}


def test_messages_go_in_the_v1_shape_with_one_access_token_for_many(fcm: FakeFcm, tmp_path: Path) -> None:
    sender = transport(fcm, tmp_path)
    outcomes = sender.send([push(i) for i in range(6)]) + sender.send([push(9)])
    assert all(o.delivered for o in outcomes) and outcomes[0].provider_id.startswith("projects/test-project/messages/")  # type: ignore[union-attr]
    assert len(fcm.issued) == 1 and sender.token_fetches == 1 and fcm.bad_assertions == 0  # cached until it expires
    first = next(m for m in fcm.sent if m["token"] == "device-0")
    assert first["notification"] == {"title": "Hi", "body": "Body 0"} and first["data"] == {"message_id": "m-0", "decision_id": "0", "agent_id": "a", "customer_id": "c0"}


def test_fcm_errors_map_to_permanent_and_transient(fcm: FakeFcm, tmp_path: Path) -> None:
    sender = transport(fcm, tmp_path)
    fcm.unregistered.add("gone")
    [gone] = sender.send([push(1, "gone")])
    [missing] = sender.send([push(2, "")])
    fcm.script = [503]
    [busy] = sender.send([push(3)])
    fcm.script = [429]
    [limited] = sender.send([push(4)])
    assert gone.permanent and "no longer registered" in str(gone.error)
    assert missing.permanent and "device token" in str(missing.error)
    assert not busy.permanent and not busy.delivered and "503" in str(busy.error)
    assert not limited.permanent and limited.retry_after == 7


def test_a_dead_token_is_a_hard_bounce_and_a_bad_message_is_not(fcm: FakeFcm, tmp_path: Path) -> None:
    sender = transport(fcm, tmp_path)
    fcm.unregistered.add("gone")
    fcm.invalid.add("garbled")
    fcm.bad_payload.add("fine-token")
    gone, garbled, bad, fine = sender.send([push(1, "gone"), push(2, "garbled"), push(3, "fine-token"), push(4, "ok")])
    assert gone.permanent and gone.bounced and "no longer registered" in str(gone.error) and "404 UNREGISTERED" in str(gone.error)
    assert garbled.permanent and garbled.bounced and "not a valid FCM registration token" in str(garbled.error)
    # A 400 about a field of the message (google.rpc.BadRequest) is the message's fault: dead, the token kept.
    assert bad.permanent and not bad.bounced
    assert fine.delivered


def test_push_uses_the_hand_over_protocol_and_a_429_holds_every_lane(fcm: FakeFcm, tmp_path: Path) -> None:
    from legato.deliver.channels import deduplicates

    sender = transport(fcm, tmp_path)
    assert not deduplicates(sender) and len(sender.lanes()) == 2  # FCM has no idempotency key: one message a lane, in doubt if killed
    first, second = sender.lanes()
    fcm.script = [429]
    limited = first.send_one(push(1))
    held = second.send_one(push(2))  # the other lane does not hand it over while FCM asked to wait
    assert limited.retry_after == 7 and limited.attempted and not held.attempted and held.retry_after == 7
    assert [m["token"] for m in fcm.sent] == []


def test_a_revoked_access_token_is_bought_again(fcm: FakeFcm, tmp_path: Path) -> None:
    sender = transport(fcm, tmp_path)
    sender.send([push(1)])
    fcm.issued.clear()  # FCM no longer takes the cached token
    [refused] = sender.send([push(2)])
    [again] = sender.send([push(3)])
    assert not refused.delivered and not refused.permanent and again.delivered and sender.token_fetches == 2


def test_a_key_the_token_endpoint_refuses_leaves_the_batch_waiting(fcm: FakeFcm, tmp_path: Path) -> None:
    other, _ = service_account_key()  # a key the endpoint does not know
    path = tmp_path / "other.json"
    path.write_text(json.dumps(other))
    sender = FcmTransport("test-project", load_credentials(path, "FCM_KEY_FILE", "push", f"{fcm.base}/token"), base_url=fcm.base)
    outcomes = sender.send([push(1), push(2)])
    assert all(not o.delivered and not o.permanent and "refused the service account" in str(o.error) for o in outcomes)
    assert other["private_key"][40:80] not in str(outcomes[0].error)


def test_a_key_file_that_is_not_one_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"type": "authorized_user"}')
    with pytest.raises(Invalid) as wrong:
        load_credentials(bad, "FCM_KEY_FILE", "push")
    assert "FCM_KEY_FILE" in wrong.value.message and "not a service account key" in wrong.value.message
    with pytest.raises(Invalid) as absent:
        load_credentials(tmp_path / "none.json", "FCM_KEY_FILE", "push")
    assert "cannot be read" in absent.value.message


def test_the_dispatcher_pushes_to_the_token_the_customer_attribute_holds(engine: Engine, fcm: FakeFcm, tmp_path: Path) -> None:
    import_customers(engine, pa.table({"id": ["a", "b", "c"], "time_zone": ["UTC"] * 3, "push_token": ["tok-a", "tok-b", None]}),
                     attribute_types={"push_token": "string"}, clock=FixedClock(AT))
    fcm.unregistered.add("tok-b")
    pb = parse_playbook(PLAYBOOK.replace("BASE", fcm.base))
    sinks = transports(pb, tmp_path)
    run_cycle(engine, pb, FixedClock(AT), sinks)
    report = dispatch_due(engine, pb, FixedClock(SEND), sinks)
    assert report.totals() == {"sent": 1, "retry": 0, "dead": 2}
    assert [m["token"] for m in fcm.sent] == ["tok-a"] and fcm.sent[0]["notification"] == {"title": "On its way", "body": "Your order shipped."}
    with engine.connect() as c:
        rows = {r.customer_id: (r.status, r.error) for r in c.execute(sa.select(outbox.c.customer_id, outbox.c.status, outbox.c.error))}
    assert rows["a"][0] == "sent" and rows["b"][0] == "dead" and "no longer registered" in str(rows["b"][1])
    assert rows["c"][0] == "dead" and "device token" in str(rows["c"][1])
    assert dispatch_due(engine, pb, FixedClock(SEND + timedelta(hours=1)), sinks).totals()["sent"] == 0


def test_a_dead_token_refuses_the_next_push_before_sending_until_a_new_token_is_imported(engine: Engine, fcm: FakeFcm, tmp_path: Path) -> None:
    from legato.store.schema import suppressions

    customers = pa.table({"id": ["a", "b", "c"], "time_zone": ["UTC"] * 3, "push_token": ["tok-a", "tok-b", "tok-c"]})
    import_customers(engine, customers, attribute_types={"push_token": "string"}, clock=FixedClock(AT))
    fcm.unregistered.add("tok-b")
    fcm.invalid.add("tok-c")
    pb = parse_playbook(PLAYBOOK.replace("BASE", fcm.base))
    sinks = transports(pb, tmp_path)
    run_cycle(engine, pb, FixedClock(AT), sinks)
    first = dispatch_due(engine, pb, FixedClock(SEND), sinks)
    assert first.totals() == {"sent": 1, "retry": 0, "dead": 2} and first.bounced == 2
    with engine.connect() as c:
        listed = c.execute(sa.select(suppressions.c.kind, suppressions.c.value)).all()
    assert len(listed) == 2 and all(kind == "undeliverable" and value.startswith("fcm-token:") for kind, value in listed)
    assert not any("tok-" in value for _, value in listed)  # a digest, not the token
    # The next day: FCM is not asked again for the dead tokens; the message is dead before sending.
    requests_before = fcm.requests
    run_cycle(engine, pb, FixedClock(AT + timedelta(days=1)), sinks)
    second = dispatch_due(engine, pb, FixedClock(SEND + timedelta(days=1)), sinks)
    assert second.totals() == {"sent": 1, "retry": 0, "dead": 2} and fcm.requests - requests_before == 1
    with engine.connect() as c:
        refused = c.execute(sa.select(outbox.c.customer_id, outbox.c.error).where(outbox.c.send_at > SEND)).all()
    assert all("device token dead" in str(error) for customer, error in refused if customer in ("b", "c"))
    # The app records a new token for b: pushed again.
    import_customers(engine, pa.table({"id": ["b"], "time_zone": ["UTC"], "push_token": ["tok-b2"]}), attribute_types={"push_token": "string"},
                     clock=FixedClock(AT + timedelta(days=2)))
    run_cycle(engine, pb, FixedClock(AT + timedelta(days=2)), sinks)
    third = dispatch_due(engine, pb, FixedClock(SEND + timedelta(days=2)), sinks)
    assert third.totals() == {"sent": 2, "retry": 0, "dead": 1}
    assert [m["token"] for m in fcm.sent].count("tok-b2") == 1
