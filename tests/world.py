"""The one-agent e-mail world many store tests share: its time, playbook and customers.

Its constants and builders live here, in no test file, so that no test file imports
another; the fixtures in ``conftest.py`` (``cycle_at``, ``make_playbook``,
``write_decisions``) build on them for tests that take fixtures.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import pyarrow as pa
from sqlalchemy import Engine

from legato.clock import FixedClock
from legato.playbook.models import Playbook
from legato.store.ingest import import_customers
from legato.validation import parse_playbook

AT = datetime(2024, 3, 4, 8, 0, tzinfo=timezone.utc)

PLAYBOOK = """
brand:
  name: Test Co
  legal: {sender_name: Test Co, postal_address: "1 Main St", support_contact: "help@test.example", unsubscribe_url: "https://test.example/u"}
attributes: {tier: string}
objectives:
  - {id: grow, goal: engagement, why: testing, stages: [any], kpis: [{metric: visit_rate, target: 0.1}]}
lifecycle:
  - {stage: any, when: "true"}
channels:
  email: {kind: file, path: out/email.jsonl}
creatives:
  - {id: hello, channel: email, subject: "Hi {{ customer.tier }}", body: "Hello {{ customer.id }}. Unsubscribe: {{ unsubscribe_url }} {{ brand.postal_address }}"}
agents:
  - id: mailer
    objective: grow
    audience: 'tier in ("gold", "silver")'
    actions: {creatives: [hello], send_windows: ["09:00-17:00"], do_nothing: false}
    policy: {name: uniform_random}
    features: ['tier = "gold"', "lifetime_spend / 100", "purchase_count"]
    holdout: HOLDOUT
    trust_stage: STAGE
    budget: BUDGET
guardrails:
  consent:
    - {channel: email, purpose: marketing}
  frequency_caps:
    - {channel: email, max: 1, days: 3, on_block: drop}
"""


def playbook(stage: int = 2, holdout: float = 0.0, budget: str = "{}") -> Playbook:
    text = PLAYBOOK.replace("STAGE", str(stage)).replace("HOLDOUT", str(holdout)).replace("BUDGET", budget)
    return parse_playbook(text)


def load_customers(engine: Engine, n: int = 40) -> None:
    """n customers: every 10th has revoked consent, every 10th (offset 5) no consent, every 4th is 'bronze'."""
    ids = [f"c{i:03d}" for i in range(n)]
    consent = ["revoked" if i % 10 == 0 else "" if i % 10 == 5 else "express" for i in range(n)]
    tiers = ["bronze" if i % 4 == 3 else "gold" for i in range(n)]
    table = pa.table(
        {
            "id": ids,
            "email": [f"{c}@test.example" for c in ids],
            "time_zone": ["UTC"] * n,
            "consent_email_marketing": consent,
            "tier": tiers,
        }
    )
    import_customers(engine, table, attribute_types={"tier": "string"}, clock=FixedClock(AT))


def expected_eligible(n: int = 40) -> set[str]:
    return {f"c{i:03d}" for i in range(n) if i % 4 != 3 and i % 10 not in (0, 5)}



def learning_playbook(policy: str = "{name: beta_thompson}") -> Playbook:
    """The e-mail world with a learning policy, a conversion KPI settled after one day, and "do nothing" allowed."""
    text = PLAYBOOK.replace("STAGE", "2").replace("HOLDOUT", "0").replace("BUDGET", "{}")
    text = text.replace("    policy: {name: uniform_random}", f"    policy: {policy}")
    text = text.replace(
        "kpis: [{metric: visit_rate, target: 0.1}]}",
        "kpis: [{metric: conversion_rate, target: 0.1}], attribution_days: 1}",
    )
    text = text.replace('do_nothing: false', 'do_nothing: true')
    return parse_playbook(text)


# --- a text-and-e-mail world: what each customer received, round by round --------------

TWO_CHANNELS = """
brand:
  name: Test Co
  legal: {sender_name: Test Co, postal_address: "1 Main St", support_contact: "help@test.example", unsubscribe_url: "https://test.example/u"}
objectives:
  - {id: grow, goal: engagement, why: testing, stages: [any], kpis: [{metric: visit_rate, target: 0.1}]}
lifecycle:
  - {stage: any, when: "true"}
channels:
  email: {kind: file, path: out/email.jsonl}
  sms: {kind: file, path: out/sms.jsonl}
creatives:
  - {id: text, channel: sms, body: "Test Co: new boots are in. Reply STOP to opt out."}
  - {id: mail, channel: email, subject: "New boots", body: "New boots are in. Unsubscribe: {{ unsubscribe_url }} {{ brand.postal_address }}"}
agents:
  - {id: texter, objective: grow, audience: "true", actions: {creatives: [text], send_windows: ["09:00-17:00"], do_nothing: false}, policy: {name: uniform_random}, holdout: 0, trust_stage: 3}
  - {id: mailer, objective: grow, audience: "true", actions: {creatives: [mail], send_windows: ["09:00-17:00"], do_nothing: false}, policy: {name: uniform_random}, holdout: 0, trust_stage: 3}
guardrails:
  consent:
    - {channel: email, purpose: marketing}
    - {channel: sms, purpose: marketing}
  quiet_hours: []
"""


def two_channel_playbook() -> Playbook:
    return parse_playbook(TWO_CHANNELS)


def send_round(engine: Engine, pb: Playbook, at: datetime, folder: Any) -> dict[str, dict[str, str]]:
    """A real cycle at ``at`` and the dispatcher two hours later, writing to a fresh
    ``folder``/out/*.jsonl: per channel, the customers reached and the address used."""
    from datetime import timedelta

    from legato.cycle import run_cycle
    from legato.deliver.dispatch import dispatch_due, transports

    sinks = transports(pb, folder)
    run_cycle(engine, pb, FixedClock(at), sinks)
    dispatch_due(engine, pb, FixedClock(at + timedelta(hours=2)), transports(pb, folder))
    reached: dict[str, dict[str, str]] = {}
    for channel in ("email", "sms"):
        path = folder / "out" / f"{channel}.jsonl"
        lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.exists() else []
        reached[channel] = {m["customer_id"]: m["to"] for m in lines}
    return reached
