"""The outbox: globally unique message ids."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy import Engine, text

from legato.clock import FixedClock
from legato.deliver.dispatch import dispatch_due, transports
from legato.deliver.tokens import token_message_id
from legato.deliver.outbox import message_id, random_prefix
from legato.cycle import run_cycle
from legato.validation import parse_playbook
from legato.playbook.models import Playbook
from legato.store.db import alembic_config, connect
from legato.store.ingest import import_customers
from legato.store.schema import outbox

AT = datetime(2024, 3, 4, 8, 0, tzinfo=timezone.utc)
SENDS_FROM = AT + timedelta(hours=2)  # the send window opens at 09:00

PLAYBOOK = """
brand:
  name: Test Co
  legal: {sender_name: Test Co, postal_address: "1 Main St", support_contact: "help@test.example", unsubscribe_url: "https://test.example/u"}
objectives:
  - {id: grow, goal: engagement, why: testing, stages: [any], kpis: [{metric: visit_rate, target: 0.1}]}
lifecycle:
  - {stage: any, when: "true"}
channels:
  email: {kind: file, path: out/email.jsonl}
creatives:
  - {id: hello, channel: email, subject: "Hi", body: "Hello {{ customer.id }}. Unsubscribe: {{ unsubscribe_url }} {{ brand.postal_address }}"}
agents:
  - id: mailer
    objective: grow
    audience: "true"
    actions: {creatives: [hello], send_windows: ["09:00-17:00"], do_nothing: false}
    policy: {name: uniform_random}
    holdout: 0
    trust_stage: 3
"""


def autonomous() -> Playbook:
    return parse_playbook(PLAYBOOK)


def load_customers(engine: Engine, n: int) -> None:
    ids = [f"c{i:03d}" for i in range(n)]
    table = pa.table({"id": ids, "email": [f"{c}@test.example" for c in ids], "time_zone": ["UTC"] * n})
    import_customers(engine, table, attribute_types={}, clock=FixedClock(AT))


def cycle_and_dispatch(engine: Engine, pb: Playbook, folder: Path) -> int:
    """One cycle, then dispatch once the window opens, through a transport made afresh (as a new process would)."""
    clock = FixedClock(AT)
    run_cycle(engine, pb, clock, transports(pb, folder))
    clock.set(SENDS_FROM)
    return sum(dispatch_due(engine, pb, clock, transports(pb, folder)).sent.values())


def written(folder: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (folder / "out/email.jsonl").read_text(encoding="utf-8").splitlines()]


def test_a_fresh_database_writing_to_an_existing_outbox_file_writes_every_message(engine: Engine, tmp_path: Path) -> None:
    """Defect 4: ids restarted with each database, so the second database's messages were
    recorded sent but skipped as "already written" by the file transport."""
    pb = autonomous()
    load_customers(engine, 12)
    assert cycle_and_dispatch(engine, pb, tmp_path) == 12
    fresh = connect(f"sqlite:///{tmp_path / 'fresh.db'}")
    try:
        load_customers(fresh, 12)
        assert cycle_and_dispatch(fresh, pb, tmp_path) == 12
        with fresh.connect() as c:
            second = set(c.execute(sa.select(outbox.c.message_id).where(outbox.c.status == "sent")).scalars())
    finally:
        fresh.dispose()
    lines = written(tmp_path)
    ids = [line["message_id"] for line in lines]
    assert len(lines) == 24 and len(set(ids)) == 24
    assert second <= set(ids)  # every message the fresh database recorded as sent is in the file


def test_the_message_id_is_a_uuid_the_transport_and_the_unsubscribe_link_carry(engine: Engine, tmp_path: Path) -> None:
    pb = autonomous()
    load_customers(engine, 5)
    cycle_and_dispatch(engine, pb, tmp_path)
    with engine.connect() as c:
        stored = dict(c.execute(sa.select(outbox.c.decision_id, outbox.c.message_id)).all())
    lines = written(tmp_path)
    assert len(lines) == 5
    for line in lines:
        mid = line["message_id"]
        parsed = uuid.UUID(mid)
        assert isinstance(mid, str) and str(parsed) == mid
        assert parsed.version == 8 and parsed.variant == uuid.RFC_4122 and parsed.int & (2**48 - 1) == line["decision_id"]
        assert stored[line["decision_id"]] == mid  # the provider's idempotency key is the stored id
        token = str(line["body"]).split("?t=")[1].split()[0]
        assert token_message_id(token) == mid  # the unsubscribe link names this message


def test_a_message_already_in_the_file_is_not_written_twice(engine: Engine, tmp_path: Path) -> None:
    """The file transport still skips what it holds: a dispatcher that died after writing but
    before recording the send does not deliver twice when the same messages come again."""
    pb = autonomous()
    load_customers(engine, 4)
    cycle_and_dispatch(engine, pb, tmp_path)
    with engine.begin() as c:  # as if the marks had rolled back after the file was written
        c.execute(sa.update(outbox).values(status="pending", sent_at=None))
    clock = FixedClock(SENDS_FROM)
    assert sum(dispatch_due(engine, pb, clock, transports(pb, tmp_path)).sent.values()) == 4
    assert len(written(tmp_path)) == 4


def test_migration_0009_gives_every_existing_message_its_own_uuid(tmp_path: Path) -> None:
    from alembic import command

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    command.upgrade(alembic_config(engine), "0007")
    stamp = "'2024-03-01 00:00:00.000000'"
    with engine.begin() as c:
        c.execute(text(f"INSERT INTO cycles (id, at, started_at, status) VALUES (1, {stamp}, {stamp}, 'finished')"))
        for i in (1, 2, 3):
            c.execute(text(
                "INSERT INTO decisions (id, cycle_id, agent_id, customer_id, decided_at, action, propensity, holdout, findings, route, status) "
                f"VALUES ({i}, 1, 'a', 'c{i}', {stamp}, 'x', 1.0, 0, '[]', 'scheduled', 'sent')"
            ))
            c.execute(text(
                f"INSERT INTO outbox (id, decision_id, customer_id, channel, send_at, status, attempts) VALUES ({i}, {i}, 'c{i}', 'email', {stamp}, 'sent', 1)"
            ))
    engine.dispose()
    upgraded = connect(f"sqlite:///{tmp_path / 'old.db'}")
    with upgraded.connect() as c:
        ids = c.execute(sa.select(outbox.c.message_id)).scalars().all()
    upgraded.dispose()
    assert len(ids) == 3 and len(set(ids)) == 3 and all(uuid.UUID(i).version == 8 for i in ids)


def test_message_ids_of_two_writes_differ_in_their_random_part() -> None:
    """Two databases' decision 1 never share a message id: each write draws its own random part."""
    ids = {message_id(random_prefix(), 1) for _ in range(1000)}
    assert len(ids) == 1000
    assert all(uuid.UUID(i).version == 8 and uuid.UUID(i).variant == uuid.RFC_4122 for i in ids)


# The outbox's one writer (legato.deliver.outbox) is checked with the other owners in tests/test_owners.py.
