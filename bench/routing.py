"""Routing benchmark (issue 5): 1,000,000 decisions through escalation rules and trust stages.

Run: ``.venv/bin/python bench/routing.py``. Times the routing step of a cycle alone (the
trust stage, the approval memory, risk limits, two escalation rules — one on customer fields,
evaluated in SQL as part of the audience query and arriving here as a column, one mixing
customer and decision fields, evaluated on the arrays — and content escalations) for each
stage, median of 5 runs. Prints a table and writes bench/results/routing.json. Target ≤ 2 s.
"""

from __future__ import annotations

import json
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from legato.audience.fields import StoreResolver
from legato.decide.actions import action_space
from legato.cycle.action_table import ActionTable
from legato.cycle.trust_routing import Trust
from legato.validation import parse_playbook
from legato.trust.escalation import Escalations
from legato.trust.ladder import REVIEW

N = 1_000_000
RESULTS = Path(__file__).with_name("results") / "routing.json"
PLAYBOOK = """
brand:
  name: Bench Co
  legal: {sender_name: Bench Co, postal_address: "1 Main St, Springfield", support_contact: "help@bench.example", unsubscribe_url: "https://bench.example/u"}
attributes: {account_type: string, renewal_days: number}
objectives:
  - {id: grow, goal: upsell, why: benchmark, stages: [any], kpis: [{metric: revenue, target: 1}]}
lifecycle:
  - {stage: any, when: "true"}
offers:
  - {id: small, kind: amount_off, value: 10, cost: 10}
  - {id: big, kind: amount_off, value: 200, cost: 200}
channels:
  email: {kind: file, path: out.jsonl}
creatives:
  - {id: a, channel: email, subject: "Hello", body: "Hi. Unsubscribe: {{ unsubscribe_url }} {{ brand.postal_address }}"}
  - {id: b, channel: email, subject: "News", body: "News. Unsubscribe: {{ unsubscribe_url }} {{ brand.postal_address }}"}
agents:
  - id: upsell
    objective: grow
    audience: "true"
    actions: {creatives: [a, b], offers: [small, big], send_windows: ["09:00-11:00", "18:00-20:00"]}
    trust_stage: 1
    risk_limits: {max_offer_value: 100, max_customer_value: 5000}
    escalation:
      - {when: 'account_type = "business" and renewal_days <= 30', reason: b2b_renewal, priority: 90}
      - {when: "offer_value >= 100 and lifetime_spend >= 1000", reason: high_value_upsell, priority: 80}
"""


def main() -> int:
    playbook = parse_playbook(PLAYBOOK)
    agent = playbook.agents[0]
    table = ActionTable(playbook, action_space(playbook, agent))
    escalations = Escalations(agent, StoreResolver(playbook, datetime(2024, 3, 4, tzinfo=timezone.utc), "sqlite"), "sqlite")
    rng = np.random.default_rng(0)
    chosen = rng.integers(0, len(table.actions), N)
    allowed = rng.random(N) < 0.6
    spend = np.round(rng.gamma(2.0, 400.0, N), 2)
    columns = {
        "esc_0": (rng.random(N) < 0.01).astype(np.int64),
        "x_lifetime_spend": spend.astype(object),
        "customer_value": spend.astype(object),
    }
    expected, propensity = rng.random(N), rng.random(N)
    rows = []
    for stage in (0, 1, 2, 3):
        trust = Trust(stage, escalations, {("a", "small")}, table, playbook)
        times = []
        for _ in range(5):
            start = time.perf_counter()
            routes, reasons, _ = trust.route(agent, allowed, chosen, columns, expected, propensity)
            times.append(time.perf_counter() - start)
        rows.append({"stage": stage, "decisions": N, "seconds": statistics.median(times), "reviewed": int((routes == REVIEW).sum()), "target_s": 2.0})
    out = Table("stage", "decisions", "median s", "to review", "target s", "met", title="Routing 1,000,000 decisions", title_justify="left")
    for r in rows:
        out.add_row(str(r["stage"]), f"{r['decisions']:,}", f"{r['seconds']:.3f}", f"{r['reviewed']:,}", "2", "yes" if r["seconds"] <= 2 else "NO")
    Console().print(out)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
