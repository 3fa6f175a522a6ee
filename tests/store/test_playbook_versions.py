"""Playbook versions in the store: each cycle records the playbook it ran, decisions reference
it, and dispatch renders a decision's message from it whatever the file says later."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy import Engine

from legato.clock import FixedClock
from legato.deliver.dispatch import dispatch_due, transports
from legato.cycle import run_cycle
from legato.playbook.loader import playbook_text
from legato.validation import parse_playbook
from legato.playbook.models import Playbook
from legato.store.ingest import import_customers
from legato.store.playbook_versions import Versions
from legato.store.schema import cycles, decisions, outbox, playbook_versions

AT = datetime(2024, 3, 4, 8, 0, tzinfo=timezone.utc)

PLAYBOOK = """# the marketer's comments are kept with the text
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
  - {id: hello, channel: email, subject: "SUBJECT", body: "Hello {{ customer.id }}. Unsubscribe: {{ unsubscribe_url }} {{ brand.postal_address }}"}
agents:
  - id: mailer
    objective: grow
    audience: "true"
    actions: {creatives: [hello], send_windows: ["09:00-17:00"], do_nothing: false}
    policy: {name: uniform_random}
    holdout: 0
    trust_stage: 3
"""


def text_with(subject: str) -> str:
    return PLAYBOOK.replace("SUBJECT", subject)


def load_customers(engine: Engine, n: int = 6) -> None:
    ids = [f"c{i:03d}" for i in range(n)]
    table = pa.table({"id": ids, "email": [f"{c}@test.example" for c in ids], "time_zone": ["UTC"] * n})
    import_customers(engine, table, attribute_types={}, clock=FixedClock(AT))


def versions(engine: Engine) -> list[tuple[int, str, str]]:
    with engine.connect() as c:
        return [tuple(r) for r in c.execute(sa.select(playbook_versions.c.id, playbook_versions.c.hash, playbook_versions.c.text).order_by(playbook_versions.c.id))]


def test_each_cycle_records_its_playbook_once_per_distinct_text_and_decisions_reference_it(engine: Engine, tmp_path: Path) -> None:
    load_customers(engine)
    first, changed = parse_playbook(text_with("Hi")), parse_playbook(text_with("Hey"))
    for day, pb in enumerate((first, first, changed)):
        run_cycle(engine, pb, FixedClock(AT + timedelta(days=day)), transports(pb, tmp_path))
    stored = versions(engine)
    assert [text for _, _, text in stored] == [text_with("Hi"), text_with("Hey")]  # the file's own text, comments and all
    assert all(digest == hashlib.sha256(text.encode()).hexdigest() for _, digest, text in stored)
    with engine.connect() as c:
        by_cycle = dict(c.execute(sa.select(cycles.c.id, cycles.c.playbook_version_id)).all())
        per_decision = c.execute(
            sa.select(decisions.c.cycle_id, decisions.c.playbook_version_id).distinct().order_by(decisions.c.cycle_id)
        ).all()
    assert list(by_cycle.values()) == [stored[0][0], stored[0][0], stored[1][0]]
    assert [(cycle, version) for cycle, version in per_decision] == sorted(by_cycle.items())


def test_dispatch_sends_what_was_decided_not_what_the_file_says_now(engine: Engine, tmp_path: Path) -> None:
    """An autonomous decision scheduled with one creative, then the file changed before the
    send: the message is the decided one (before, the dispatcher rendered the new text)."""
    load_customers(engine)
    decided, edited = parse_playbook(text_with("Hi")), parse_playbook(text_with("ACT NOW!!!! LAST CHANCE!!!!"))
    clock = FixedClock(AT)
    run_cycle(engine, decided, clock, transports(decided, tmp_path))
    clock.set(AT + timedelta(hours=2))
    report = dispatch_due(engine, edited, clock, transports(edited, tmp_path))
    assert sum(report.sent.values()) == 6 and report.errors == []
    lines = [json.loads(line) for line in (tmp_path / "out/email.jsonl").read_text().splitlines()]
    assert {line["subject"] for line in lines} == {"Hi"}


def test_decisions_from_before_versions_render_from_the_playbook_given(engine: Engine, tmp_path: Path) -> None:
    """Without a stored version the playbook given is the only source: its creative is sent if
    it is still the one decided on (the content hash), and not at all if it changed."""
    load_customers(engine, 2)
    old, current = parse_playbook(text_with("Hi")), parse_playbook(text_with("Hello again"))
    clock = FixedClock(AT)
    run_cycle(engine, old, clock, transports(old, tmp_path))
    with engine.begin() as c:  # as migration 0010 leaves the decisions made before it
        c.execute(sa.update(decisions).values(playbook_version_id=None))
        first = c.execute(sa.select(decisions.c.id).order_by(decisions.c.id)).scalars().first()
        c.execute(sa.update(outbox).where(outbox.c.decision_id != first).values(send_at=AT + timedelta(days=1)))
    clock.set(AT + timedelta(hours=2))
    assert sum(dispatch_due(engine, parse_playbook(text_with("Hi")), clock, transports(old, tmp_path)).sent.values()) == 1
    clock.set(AT + timedelta(days=1, hours=2))
    changed = dispatch_due(engine, current, clock, transports(current, tmp_path))
    assert sum(changed.sent.values()) == 0 and "changed after the decision" in changed.errors[0]
    lines = [json.loads(line) for line in (tmp_path / "out/email.jsonl").read_text().splitlines()]
    assert [line["subject"] for line in lines] == ["Hi"]


def test_a_playbook_changed_in_code_is_recorded_as_what_it_is(engine: Engine) -> None:
    """A changed copy of a parsed playbook does not pass for the file it came from: its own
    fields are written out, and read back to an equal playbook."""
    parsed = parse_playbook(text_with("Hi"))
    copy = parsed.model_copy(update={"global_control": 0.25})
    assert playbook_text(parsed) == text_with("Hi")
    text = playbook_text(copy)
    assert text != text_with("Hi") and parse_playbook(text).model_dump() == copy.model_dump()
    with engine.begin() as c:
        from legato.store.playbook_versions import record

        ids = {record(c, pb, AT) for pb in (parsed, copy, parsed)}
        assert len(ids) == 2
        read: Playbook = Versions().get(c, max(ids))
    assert read.model_dump() == copy.model_dump()
