"""One check of a message, five callers: the cycle, the review queue, the dispatcher,
`legato check message` and `legato validate` give one message the same verdict.

Each creative of the table is a message with a known verdict (pinned below, so agreement
cannot come from every caller being wrong alike), on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy import Engine
from typer.testing import CliRunner

from legato.cli.app import app
from legato.clock import FixedClock
from legato.deliver.dispatch import transports
from legato.cycle import run_cycle
from legato.guard.findings import verdict as worst
from legato.store.ingest import import_customers
from legato.store.schema import decisions, review_items
from legato.trust.review import show_item
from legato.validation import parse_playbook

AT = datetime(2024, 3, 4, 8, 0, tzinfo=timezone.utc)
OPT_OUT = "Unsubscribe: {{ unsubscribe_url }} Table Co, {{ brand.postal_address }}"

# creative -> (channel, purpose, subject, body, expected verdict class)
TABLE: dict[str, tuple[str, str, str | None, str, str]] = {
    "plain": ("email", "marketing", "Spring", f"Hello, the spring range is in. {OPT_OUT}", "pass"),
    "no_opt_out": ("email", "marketing", "Spring", "Hello, the spring range is in.", "block"),
    "receipt": ("email", "transactional", "Your order", "Thank you for your order; it ships tomorrow.", "pass"),
    "scarcity": ("email", "marketing", "Spring", f"Only 2 left in your size. {OPT_OUT}", "block"),
    "claim": ("email", "marketing", "Spring", f"Guaranteed to keep you dry. {OPT_OUT}", "escalate"),
    "loud": ("email", "marketing", "Spring", f"THE SPRING RANGE IS IN. {OPT_OUT}", "pass"),  # a warning only
    "text_no_stop": ("sms", "marketing", None, "Table Co: the spring range is in.", "block"),
    "text": ("sms", "marketing", None, "Table Co: the spring range is in. Reply STOP to opt out.", "pass"),
    "text_update": ("sms", "transactional", None, "Table Co: your order ships tomorrow. Reply STOP to opt out.", "pass"),
}


def playbook_text() -> str:
    creatives, agents = [], []
    for name, (channel, purpose, subject, body, _) in TABLE.items():
        heading = f", subject: {json.dumps(subject)}" if subject else ""
        creatives.append(f"  - {{id: {name}, channel: {channel}, purpose: {purpose}{heading}, body: {json.dumps(body)}}}")
        agents.append(
            f"  - {{id: {name}, objective: reach, audience: 'true', actions: {{creatives: [{name}], send_windows: ['09:00-17:00'], "
            "do_nothing: false}, policy: {name: uniform_random}, holdout: 0, trust_stage: 3}"
        )
    return f"""brand:
  name: Table Co
  legal: {{sender_name: Table Co, postal_address: "8 Table Road", support_contact: "help@table.example", unsubscribe_url: "https://table.example/u"}}
objectives:
  - {{id: reach, goal: engagement, why: testing, stages: [any], kpis: [{{metric: visit_rate, target: 0.1}}]}}
lifecycle:
  - {{stage: any, when: "true"}}
channels:
  email: {{kind: file, path: out/email.jsonl}}
  sms: {{kind: file, path: out/sms.jsonl}}
creatives:
{chr(10).join(creatives)}
agents:
{chr(10).join(agents)}
guardrails:
  quiet_hours: []
"""


def verdict_class(verdict: str) -> str:
    return {"block": "block", "escalate": "escalate"}.get(verdict, "pass")


def test_every_caller_gives_one_message_one_verdict(engine: Engine, tmp_path: Path, propose: Any, dispatch_all: Any) -> None:
    text = playbook_text()
    path = tmp_path / "playbook.yaml"
    path.write_text(text, encoding="utf-8")
    pb = parse_playbook(text)
    import_customers(
        engine, pa.table({"id": ["c1"], "email": ["c1@people.example"], "phone": ["+12125550100"], "time_zone": ["UTC"]}), clock=FixedClock(AT)
    )

    # The cycle: scheduled, queued for a person because of the content, or suppressed by it.
    run_cycle(engine, pb, FixedClock(AT), transports(pb, tmp_path / "cycle"))
    with engine.connect() as c:
        decided = {a: (s, json.loads(f) if isinstance(f, str) else f) for a, s, f in c.execute(sa.select(decisions.c.agent_id, decisions.c.status, decisions.c.findings))}
    cycle = {}
    for name, (status, findings) in decided.items():
        cycle[name] = "pass" if status == "scheduled" else "escalate" if findings == ["escalate:content_escalation"] else "block" if findings and findings[0].startswith("content:") else f"other:{status}:{findings}"

    # The review queue and the dispatcher, on the same message proposed to the same customer.
    ids = propose(engine, pb, ["c1"], AT + timedelta(hours=1))
    with engine.connect() as c:
        items = dict(c.execute(sa.select(review_items.c.decision_id, review_items.c.id)).all())
    review = {agent: verdict_class(worst(_Finding(f) for f in show_item(engine, items[d], playbook=pb, now=AT).findings)) for (agent, _), d in ids.items()}
    sent = dispatch_all(engine, pb, ids, AT + timedelta(hours=1))
    dispatch = {agent: "block" if status == "dead" and "content guardrails blocked" in str(error) else "not block" if status == "sent" else f"other:{error}" for (agent, _), (status, error) in sent.items()}

    # The two commands.
    runner = CliRunner()
    check = {}
    for name in TABLE:
        result = runner.invoke(app, ["check", "message", "--playbook", str(path), "--creative", name, "--json"])
        check[name] = verdict_class(json.loads(result.stdout)["verdict"])
    report = json.loads(runner.invoke(app, ["validate", str(path), "--json"]).stdout)
    lines = {"block": report.get("problems", []), "escalate": report.get("notes", [])}
    validate = {}
    for index, name in enumerate(TABLE):
        here = f"creatives[{index}]: content: "
        validate[name] = "block" if any(here + "block" in line for line in lines["block"]) else "escalate" if any(here + "escalate" in line for line in lines["escalate"]) else "pass"

    expected = {name: row[4] for name, row in TABLE.items()}
    assert cycle == review == check == validate == expected
    assert dispatch == {name: "block" if v == "block" else "not block" for name, v in expected.items()}


class _Finding:
    """A finding as ``show_item`` reports it, read back for :func:`verdict`."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.severity = data["severity"]
