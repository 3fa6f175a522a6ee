"""Reports over real HTTP on both databases: lift with intervals, guardrail findings by rule,
fairness of the playbook in force, KPIs by day; every role that reads may, ingest keys may not."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pyarrow as pa

from legato.clock import FixedClock
from legato.store.ingest import import_customers
from tests.api.conftest import Served, playbook_text
from tests.world import AT

Write = Callable[..., None]


def test_lift_per_agent_with_its_interval(served: Served, write_decisions: Write) -> None:
    write_decisions("sent", 60, visited=[i < 30 for i in range(60)])  # half of the treated visited
    write_decisions("holdout", 60, visited=[i < 6 for i in range(60)])  # a tenth of the held-out did
    with served.client("viewer") as client:
        answer = client.get("/v1/reports/lift", params={"agent": "mailer"})
    assert answer.status_code == 200, answer.text
    groups = {g["against"]: g for g in answer.json()["groups"]}
    holdout = groups["holdout"]
    assert (holdout["agent"], holdout["customers_treated"], holdout["customers_control"]) == ("mailer", 60, 60)
    visits = next(item for item in holdout["lifts"] if item["metric"] == "visit_rate")
    assert (visits["treated"], visits["control"]) == (0.5, 0.1)
    assert abs(visits["difference"] - 0.4) < 1e-9
    assert visits["low"] < 0.4 < visits["high"]
    # Nobody is in the global control: said in words, no lift of zero.
    assert groups["global_control"]["lifts"] == [] and "global control" in groups["global_control"]["nothing_yet"]


def test_lift_of_a_period_without_decisions_says_so(served: Served, write_decisions: Write) -> None:
    write_decisions("sent", 5)
    with served.client("viewer") as client:
        answer = client.get("/v1/reports/lift", params={"agent": "mailer", "since": (AT + timedelta(days=1)).isoformat()})
    assert answer.status_code == 200
    assert {g["nothing_yet"] for g in answer.json()["groups"]} == {"no decisions in this period"}


def test_a_period_that_ends_before_it_starts_is_422_naming_until(served: Served) -> None:
    with served.client("viewer") as client:
        answer = client.get("/v1/reports/kpis", params={"since": "2024-03-05", "until": "2024-03-04"})
        malformed = client.get("/v1/reports/kpis", params={"since": "last tuesday"})
    assert answer.status_code == 422
    assert answer.json()["error"]["message"].startswith("until (2024-03-04")
    assert answer.json()["error"]["hint"] == "give a period that ends after it starts"
    assert malformed.status_code == 422 and malformed.json()["error"]["problems"][0]["field"] == "query.since"


def test_guardrails_count_decisions_per_rule_and_day(served: Served, write_decisions: Write) -> None:
    write_decisions("suppressed", 4, findings=["frequency_cap:email 1 per 3 days"])
    write_decisions("suppressed", 2, findings=["consent_revoked:email", "frequency_cap:email 1 per 3 days"])
    write_decisions("sent", 3, findings=["delayed:quiet_hours:tcpa_quiet_hours"])
    write_decisions("sent", 5)  # no findings: not counted
    write_decisions("sent", 1, findings=["escalate:high_value"], decided_at=AT + timedelta(days=1))
    with served.client("marketer") as client:
        answer = client.get("/v1/reports/guardrails")
        later = client.get("/v1/reports/guardrails", params={"since": (AT + timedelta(hours=1)).isoformat()})
    assert answer.status_code == 200, answer.text
    rows = [(r["day"], r["rule"], r["outcome"], r["decisions"]) for r in answer.json()["rules"]]
    assert rows == [
        ("2024-03-04", "frequency_cap:email 1 per 3 days", "blocked", 6),
        ("2024-03-04", "delayed:quiet_hours:tcpa_quiet_hours", "delayed", 3),
        ("2024-03-04", "consent_revoked:email", "blocked", 2),
        ("2024-03-05", "escalate:high_value", "escalated", 1),
    ]
    assert [r["rule"] for r in later.json()["rules"]] == ["escalate:high_value"]


def test_kpis_by_day_are_per_settled_send_and_none_while_nothing_settled(served: Served, write_decisions: Write) -> None:
    write_decisions("sent", 10, visited=[i < 4 for i in range(10)], purchased=[i < 1 for i in range(10)], revenue=[50.0 if i < 1 else 0.0 for i in range(10)])
    write_decisions("holdout", 10, visited=True)  # not a send
    write_decisions("sent", 3, decided_at=AT + timedelta(days=1), settled_at=None, visited=None)
    with served.client("viewer") as client:
        answer = client.get("/v1/reports/kpis", params={"agent": "mailer"})
    assert answer.status_code == 200, answer.text
    first, second = answer.json()["days"]
    assert (first["day"], first["sends"], first["settled"]) == ("2024-03-04", 10, 10)
    assert (first["visit_rate"], first["conversion_rate"], first["revenue"], first["revenue_per_send"]) == (0.4, 0.1, 50.0, 5.0)
    assert (second["day"], second["sends"], second["settled"], second["visit_rate"], second["revenue"]) == ("2024-03-05", 3, 0, None, None)


def _customers_with_age(served: Served, n: int = 200) -> list[str]:
    ids = [f"c{i:03d}" for i in range(n)]
    table = pa.table({"id": ids, "email": [f"{c}@t.example" for c in ids], "time_zone": ["UTC"] * n,
                      "tier": ["gold"] * n, "age_band": ["18-34" if i % 2 == 0 else "55+" for i in range(n)]})
    import_customers(served.engine, table, attribute_types={"tier": "string", "age_band": "string"}, clock=FixedClock(AT))
    return ids


def test_fairness_finds_a_breach_and_writes_nothing(served: Served, write_decisions: Write) -> None:
    # The playbook in force protects age_band (the file is read at the first request that needs it).
    text = playbook_text().replace("attributes: {tier: string}", "attributes: {tier: string, age_band: string}")
    served.playbook.write_text(text.replace("  frequency_caps:", "  protected_attributes: [age_band]\n  frequency_caps:"), encoding="utf-8")
    ids = _customers_with_age(served)
    chosen = [c for i, c in enumerate(ids) if i % 2 == 0 or i % 10 == 1]  # the young, and a fifth of the old
    write_decisions("sent", len(chosen), customer_id=chosen)
    with served.client("viewer") as client:
        answer = client.get("/v1/reports/fairness")
        again = client.get("/v1/reports/fairness")
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    (audit,) = body["audits"]
    assert body["breach"] is True and audit["attribute"] == "age_band"
    assert {g["group"]: g["rate"] for g in audit["groups"]} == {"18-34": 1.0, "55+": 0.2}
    assert [b["group"] for b in audit["breaches"]] == ["55+"]
    assert again.json() == body
    import sqlalchemy as sa

    from legato.store.schema import audit_log, review_items

    with served.engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(review_items)).scalar_one() == 0
        assert connection.execute(sa.select(sa.func.count()).select_from(audit_log).where(audit_log.c.action.like("fairness%"))).scalar_one() == 0


def test_fairness_without_protected_attributes_says_where_to_declare_them(served: Served) -> None:
    with served.client("viewer") as client:
        answer = client.get("/v1/reports/fairness")
    assert answer.status_code == 422
    assert answer.json()["error"]["hint"] == "list them under guardrails.protected_attributes"


def test_reports_are_for_keys_that_read(served: Served) -> None:
    with served.client("ingest") as client:
        refused = [client.get(f"/v1/reports/{name}").status_code for name in ("lift", "guardrails", "fairness", "kpis")]
    with served.client(None) as client:
        anonymous = client.get("/v1/reports/kpis")
    assert refused == [403, 403, 403, 403]
    assert anonymous.status_code == 401
