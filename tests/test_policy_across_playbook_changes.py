"""A creative added to the playbook between two cycles keeps what the policy learned (issue 9,
defect 6), for each policy family, end to end on both databases.

Day 0: one creative; its messages go out and some buyers purchase. Day 4: the cycle learns
from day 0 and saves the learned state. Then the playbook adds a creative. Day 8: the cycle
carries the learned state over to the larger action space (audited as
``policy_actions_changed``) instead of starting afresh (``policy_reset``, as before).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from legato.clock import FixedClock
from legato.cycle import run_cycle
from legato.deliver.dispatch import dispatch_due, transports
from legato.validation import parse_playbook
from legato.playbook.models import Playbook
from legato.store.ingest import import_customers, import_events
from legato.store.schema import audit_log, decisions, policy_states

AT = datetime(2024, 3, 4, 8, 0, tzinfo=timezone.utc)
HELLO, BYE = "hello/no_offer/09:00-17:00", "bye/no_offer/09:00-17:00"

PLAYBOOK = """
brand:
  name: Test Co
  legal: {sender_name: Test Co, postal_address: "1 Main St", support_contact: "help@test.example", unsubscribe_url: "https://test.example/u"}
objectives:
  - {id: sell, goal: retention, why: testing, stages: [any], kpis: [{metric: conversion_rate, target: 0.1}], attribution_days: 1}
lifecycle:
  - {stage: any, when: "true"}
channels:
  email: {kind: file, path: out/email.jsonl}
creatives:
  - {id: hello, channel: email, subject: "Hi", body: "Hello {{ customer.id }}. Unsubscribe: {{ unsubscribe_url }} {{ brand.postal_address }}"}
  - {id: bye, channel: email, subject: "Bye", body: "Bye {{ customer.id }}. Unsubscribe: {{ unsubscribe_url }} {{ brand.postal_address }}"}
agents:
  - id: mailer
    objective: sell
    audience: "true"
    actions: {creatives: CREATIVES, send_windows: ["09:00-17:00"], do_nothing: true}
    policy: POLICY
    features: ["purchase_count"]
    holdout: 0
    trust_stage: 3
guardrails:
  consent:
    - {channel: email, purpose: marketing}
"""

# One family each: Beta Thompson; shared LinTS (one action-feature row per action:
# nothing, hello, then bye); disjoint LinUCB.
FAMILIES: dict[str, tuple[str, str]] = {
    "beta_thompson": ("{name: beta_thompson}", "{name: beta_thompson}"),
    "lin_ts_shared": (
        "{name: lin_ts, params: {action_features: [[0, 0], [1, 0]]}}",
        "{name: lin_ts, params: {action_features: [[0, 0], [1, 0], [1, 1]]}}",
    ),
    "lin_ucb": ("{name: lin_ucb}", "{name: lin_ucb}"),
}


def playbook(policy: str, creatives: str) -> Playbook:
    return parse_playbook(PLAYBOOK.replace("CREATIVES", creatives).replace("POLICY", policy))


def customers(engine: Engine, n: int = 30) -> None:
    ids = [f"c{i:03d}" for i in range(n)]
    table = pa.table({"id": ids, "email": [f"{c}@test.example" for c in ids], "time_zone": ["UTC"] * n, "consent_email_marketing": ["express"] * n})
    import_customers(engine, table, clock=FixedClock(AT))


def states(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as c:
        return list(c.execute(sa.select(policy_states.c.state).where(policy_states.c.agent_id == "mailer").order_by(policy_states.c.version)).scalars())


@pytest.mark.parametrize("family", list(FAMILIES))
def test_a_creative_added_between_two_cycles_keeps_what_the_policy_learned(engine: Engine, tmp_path: Path, family: str) -> None:
    before, after = (playbook(policy, creatives) for policy, creatives in zip(FAMILIES[family], ("[hello]", "[hello, bye]"), strict=True))
    sinks = transports(after, tmp_path)
    customers(engine)
    run_cycle(engine, before, FixedClock(AT), sinks)
    dispatch_due(engine, before, FixedClock(AT + timedelta(hours=2)), sinks)  # 10:00, inside the send window
    with engine.connect() as c:
        sent = sorted(c.execute(sa.select(decisions.c.customer_id).where(decisions.c.status == "sent")).scalars())
    assert len(sent) >= 4, "the day-0 cycle sent too few messages to learn from"
    buyers = sent[::2]
    purchase_at = (AT + timedelta(hours=12)).isoformat()
    import_events(engine, pa.table({"id": [f"p-{c}" for c in buyers], "customer_id": buyers, "type": ["purchase"] * len(buyers), "occurred_at": [purchase_at] * len(buyers)}), clock=FixedClock(AT))
    learned = run_cycle(engine, before, FixedClock(AT + timedelta(days=4)), sinks).agents["mailer"]
    assert learned.learned_from > 0
    saved = states(engine)[-1]
    assert saved["action_keys"] == ["nothing", HELLO]

    # The playbook adds "bye"; the next cycle continues from the learned state.
    report = run_cycle(engine, after, FixedClock(AT + timedelta(days=8)), sinks).agents["mailer"]
    carried = states(engine)[len(states(engine)) - (2 if report.learned_from else 1)]
    assert carried["action_keys"] == ["nothing", HELLO, BYE]
    assert carried["n_updates"] == saved["n_updates"] > 0
    with engine.connect() as c:
        audited = dict(c.execute(sa.select(audit_log.c.action, audit_log.c.detail).where(audit_log.c.action.in_(["policy_reset", "policy_actions_changed"]))).all())
    assert "policy_reset" not in audited
    assert audited["policy_actions_changed"]["added"] == [BYE] and audited["policy_actions_changed"]["removed"] == []
    if family == "beta_thompson":
        # Each remaining arm's counts as learned, the new arm at the prior Beta(1, 1).
        assert [row[:2] for row in carried["alpha"]] == saved["alpha"] and [row[:2] for row in carried["beta"]] == saved["beta"]
        assert [row[2] for row in carried["alpha"]] == [1.0] and [row[2] for row in carried["beta"]] == [1.0]
    elif family == "lin_ts_shared":
        # One posterior shared by all actions: kept whole, and "bye" is scored from its features.
        assert carried["model"]["A"] == saved["model"]["A"] and carried["model"]["b"] == saved["model"]["b"]
    else:
        # One regression per action: the remaining ones kept, "bye" at the prior.
        assert carried["model"]["A"][:2] == saved["model"]["A"] and carried["model"]["b"][:2] == saved["model"]["b"]
        assert carried["model"]["A"][2] == [[1.0, 0.0], [0.0, 1.0]] and carried["model"]["b"][2] == [0.0, 0.0]
    with engine.connect() as c:
        day8 = set(c.execute(sa.select(decisions.c.action).where(decisions.c.decided_at == AT + timedelta(days=8))).scalars())
    assert day8 <= {"nothing", HELLO, BYE} and day8
