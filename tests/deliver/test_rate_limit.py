"""A channel's rate_limit is one token bucket in the store that every worker takes from, and a
provider's 429 holds it for everyone.

The bucket's arithmetic is tested by count at given instants (no timing); the dispatcher's use
of it with the bucket's clock stopped; and the point of it with two real dispatcher processes
on one PostgreSQL bucket, which cannot deliver N messages faster than the limit allows
((N − capacity) / rate seconds at the least; two buckets would take half that).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

import legato
from legato.clock import FixedClock
from legato.cycle import run_cycle
from legato.deliver import dispatch as dispatching
from legato.deliver.dispatch import dispatch_due, transports
from legato.store import rate_buckets
from legato.store.schema import outbox
from legato.validation import parse_playbook

from tests.deliver.receivers import WebhookReceiver, new_secret
from tests.deliver.test_dispatch import AT, SEND, customers
from tests.deliver.test_webhook import PLAYBOOK


def limited(url: str, rate: float) -> str:
    return PLAYBOOK.replace("URL", url).replace("concurrency: 4}", f"concurrency: 4, rate_limit: {rate}}}")


def test_the_bucket_grants_its_capacity_then_its_rate(engine: Engine) -> None:
    t = 1_000_000.0
    assert rate_buckets.take(engine, "sms", 10, 25, now=t) == rate_buckets.Grant(10, 0.1)  # full: one second's worth
    assert rate_buckets.take(engine, "sms", 10, 25, now=t).granted == 0
    assert rate_buckets.take(engine, "sms", 10, 25, now=t + 0.55).granted == 5  # 5.5 tokens refilled: 5 whole ones
    assert rate_buckets.take(engine, "sms", 10, 1, now=t + 0.6).granted == 1  # the half token and 0.05 s more
    assert rate_buckets.take(engine, "sms", 10, 100, now=t + 60).granted == 10  # never more than full
    assert rate_buckets.take(engine, "email", 0.5, 3, now=t) == rate_buckets.Grant(1, 2.0)  # at least one token; channels apart
    assert rate_buckets.take(engine, "push", None, 7, now=t) == rate_buckets.Grant(7)  # no limit


def test_a_hold_stops_every_taker_until_it_ends(engine: Engine) -> None:
    t = 2_000_000.0
    rate_buckets.hold(engine, "webhook", 30, now=t)
    rate_buckets.hold(engine, "webhook", 5, now=t)  # a shorter hold does not shorten it
    assert rate_buckets.take(engine, "webhook", None, 4, now=t + 10) == rate_buckets.Grant(0, 20.0)
    assert rate_buckets.take(engine, "webhook", 100, 4, now=t + 29).granted == 0
    assert rate_buckets.take(engine, "webhook", None, 4, now=t + 30).granted == 4
    assert rate_buckets.take(engine, "webhook", 100, 4, now=t + 31).granted == 4


def test_the_dispatcher_sends_what_the_bucket_grants_and_gives_the_rest_back(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = new_secret()
    monkeypatch.setenv("HOOK_SECRET", secret)
    monkeypatch.setattr(rate_buckets, "wall_clock", lambda: 3_000_000.0)  # the bucket's clock stands still
    monkeypatch.setattr(dispatching, "PACE_FOR", 0.0)  # and the dispatcher does not wait for it
    customers(engine, {f"c{i}": "" for i in range(12)})
    with WebhookReceiver(secret).running() as receiver:
        pb = parse_playbook(limited(receiver.url, 5))
        sinks = transports(pb, tmp_path)
        run_cycle(engine, pb, FixedClock(AT), sinks)
        report = dispatch_due(engine, pb, FixedClock(SEND), sinks)
        assert report.totals() == {"sent": 5, "retry": 7, "dead": 0} and len(receiver.unique) == 5
        with engine.connect() as c:
            waiting = c.execute(sa.select(outbox.c.status, outbox.c.attempts, outbox.c.send_at).where(outbox.c.status != "sent")).all()
        assert len(waiting) == 7 and {(w.status, w.attempts) for w in waiting} == {("pending", 0)}  # no attempt used
        assert {w.send_at for w in waiting} == {SEND + timedelta(seconds=0.2)}  # when the next token comes
        monkeypatch.setattr(rate_buckets, "wall_clock", lambda: 3_000_060.0)  # a minute later: the bucket is full again
        assert dispatch_due(engine, pb, FixedClock(SEND + timedelta(minutes=1)), sinks).totals()["sent"] == 5
    assert receiver.rejected == 0 and max(receiver.seen.values()) == 1


def test_a_429_holds_the_channel_for_every_worker(engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = new_secret()
    monkeypatch.setenv("HOOK_SECRET", secret)
    customers(engine, {f"c{i}": "" for i in range(3)})
    with WebhookReceiver(secret).running() as receiver:
        pb = parse_playbook(PLAYBOOK.replace("URL", receiver.url))  # no rate_limit: the hold applies all the same
        sinks = transports(pb, tmp_path)
        run_cycle(engine, pb, FixedClock(AT), sinks)
        receiver.script = [(429, {"retry-after": "120"})]
        dispatch_due(engine, pb, FixedClock(SEND), sinks)
    assert rate_buckets.take(engine, "webhook", None, 1, instant=SEND.timestamp()) == rate_buckets.Grant(0, 120.0)  # another worker asks: wait


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_two_dispatcher_processes_on_one_postgresql_bucket_stay_within_the_limit(
    database_url: str, engine: Engine, tmp_path: Path
) -> None:
    rate, n = 40.0, 120  # full bucket 40, then 40/s: at least (120 - 40) / 40 = 2 s; two buckets would take 0.5 s
    secret = new_secret()
    customers(engine, {f"c{i:03}": "" for i in range(n)})
    with WebhookReceiver(secret).running() as receiver:
        text = limited(receiver.url, rate)
        (tmp_path / "playbook.yaml").write_text(text)
        pb = parse_playbook(text)
        run_cycle(engine, pb, FixedClock(AT), {"webhook": transports_free()})
        env = {**os.environ, "HOOK_SECRET": secret, "PYTHONPATH": os.pathsep.join([str(Path(legato.__file__).parents[1]), os.environ.get("PYTHONPATH", "")])}
        child = Path(__file__).with_name("pace_child.py")
        go = tmp_path / "go"
        procs = [
            subprocess.Popen([sys.executable, str(child), database_url, str(tmp_path / "playbook.yaml"), str(tmp_path / f"ready{i}"), str(go), SEND.isoformat()],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for i in range(2)
        ]
        try:
            deadline = time.monotonic() + 60
            while not all((tmp_path / f"ready{i}").exists() for i in range(2)):
                assert time.monotonic() < deadline and all(p.poll() is None for p in procs), [p.communicate() for p in procs if p.poll() is not None]
                time.sleep(0.02)
            started = time.time()
            go.write_text("go")
            outs = [p.communicate(timeout=90) for p in procs]
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
    assert all(p.returncode == 0 for p in procs), [err for _, err in outs]
    sent = [json.loads(out.strip().splitlines()[-1])["sent"] for out, _ in outs]
    assert sum(sent) == n and all(s > 0 for s in sent)  # both took part
    assert len(receiver.unique) == n and max(receiver.seen.values()) == 1 and receiver.rejected == 0
    assert receiver.last_at is not None and receiver.last_at - started >= (n - rate) / rate - 0.01


def transports_free():  # type: ignore[no-untyped-def]
    """The cycle needs no real transport: it only schedules."""
    from legato.deliver.channels import ConsoleTransport

    return ConsoleTransport()

