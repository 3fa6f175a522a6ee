"""The fairness audit finds an audience that leaves a protected group out, and records it."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy import Engine

from legato.clock import FixedClock
from legato.deliver.dispatch import transports
from legato.cycle import run_cycle
from legato.monitor.fairness import audit_fairness
from legato.validation import parse_playbook
from legato.store.ingest import import_customers
from legato.store.schema import audit_log

from tests.world import AT, PLAYBOOK


def load(engine: Engine, n: int = 200) -> None:
    ids = [f"c{i:03d}" for i in range(n)]
    # "gold" customers are mostly young: targeting gold is a proxy for targeting age.
    age = ["18-34" if i % 2 == 0 else "55+" for i in range(n)]
    tier = ["gold" if (i % 2 == 0 or i % 10 == 1) else "bronze" for i in range(n)]
    table = pa.table({"id": ids, "email": [f"{c}@t.example" for c in ids], "time_zone": ["UTC"] * n, "consent_email_marketing": ["express"] * n, "tier": tier, "age_band": age})
    import_customers(engine, table, attribute_types={"tier": "string", "age_band": "string"}, clock=FixedClock(AT))


def playbook(audience: str, *, protect: bool = True):  # type: ignore[no-untyped-def]
    """``protect=False``: the same agent with no protected attribute, so the cycle itself does not audit."""
    text = PLAYBOOK.replace("STAGE", "2").replace("HOLDOUT", "0").replace("BUDGET", "{}")
    text = text.replace("attributes: {tier: string}", "attributes: {tier: string, age_band: string}")
    text = text.replace("""audience: 'tier in ("gold", "silver")'""", f"audience: '{audience}'")
    if protect:
        text = text.replace("  frequency_caps:", "  protected_attributes: [age_band]\n  frequency_caps:")
    return parse_playbook(text)


def decide(engine: Engine, tmp_path: Path, audience: str) -> None:
    """One cycle's decisions, without the cycle's own daily audit."""
    cycle = playbook(audience, protect=False)
    run_cycle(engine, cycle, FixedClock(AT), transports(cycle, tmp_path))


def test_proxy_targeting_is_a_breach(engine: Engine, tmp_path: Path) -> None:
    load(engine)
    pb = playbook('tier = "gold"')
    decide(engine, tmp_path, 'tier = "gold"')
    (audit,) = audit_fairness(engine, pb, AT)
    rates = {g.group: g.rate for g in audit.groups}
    assert rates == {"18-34": 1.0, "55+": 0.2}
    assert audit.disparate_impact == 0.2 and audit.parity_difference == 0.8
    (breach,) = audit.breaches
    assert breach["group"] == "55+" and breach["p_value"] < 0.001
    with engine.connect() as c:
        recorded = c.execute(sa.select(audit_log.c.detail).where(audit_log.c.action == "fairness_breach")).scalars().all()
    assert len(recorded) == 1 and recorded[0]["attribute"] == "age_band"


def test_everyone_targeted_is_fair(engine: Engine, tmp_path: Path) -> None:
    load(engine)
    pb = playbook("true")
    run_cycle(engine, pb, FixedClock(AT), transports(pb, tmp_path))
    (audit,) = audit_fairness(engine, pb, AT)
    assert audit.breaches == [] and audit.disparate_impact == 1.0


def test_small_groups_need_significance(engine: Engine, tmp_path: Path) -> None:
    load(engine, n=6)  # 3 per group: 100% vs 33% is below four-fifths but not significant
    pb = playbook('tier = "gold"')
    run_cycle(engine, pb, FixedClock(AT), transports(pb, tmp_path))
    (audit,) = audit_fairness(engine, pb, AT)
    assert abs(audit.disparate_impact - 1 / 3) < 1e-9 and audit.breaches == []


def test_a_breach_becomes_one_finding_in_the_review_queue(engine: Engine, tmp_path: Path) -> None:
    from datetime import timedelta

    from legato.trust.review import list_items, resolve

    load(engine)
    pb = playbook('tier = "gold"')
    decide(engine, tmp_path, 'tier = "gold"')
    (audit,) = audit_fairness(engine, pb, AT)
    (item,) = list_items(engine, kind="finding")
    assert audit.review_item_id == item.id
    assert (item.agent_id, item.reason, item.priority, item.decision_id, item.customer_id) == ("mailer", "fairness_breach", 80, None, None)
    assert item.due_at == AT + timedelta(hours=48)
    evidence = item.evidence
    assert evidence["attribute"] == "age_band" and evidence["period"] == "2024-03-04" and evidence["disparate_impact"] == 0.2
    assert evidence["breaches"][0]["group"] == "55+" and evidence["breaches"][0]["p_value"] < 0.001
    assert {g["group"]: g["rate"] for g in evidence["groups"]} == {"18-34": 1.0, "55+": 0.2}
    # Re-running the audit, the same day or while the finding is open, adds nothing.
    assert audit_fairness(engine, pb, AT + timedelta(hours=3))[0].review_item_id is None
    assert audit_fairness(engine, pb, AT + timedelta(days=1))[0].review_item_id is None
    assert len(list_items(engine, kind="finding", status="all")) == 1
    # Once a person has dealt with it, a breach that persists is raised again, once per period.
    resolve(engine, item.id, "ana", note="audience rewritten", now=AT + timedelta(days=1, hours=1))
    assert audit_fairness(engine, pb, AT + timedelta(hours=5))[0].review_item_id is None  # 2024-03-04 had its finding
    again = audit_fairness(engine, pb, AT + timedelta(days=1, hours=2))[0].review_item_id
    assert again is not None and again != item.id
    assert audit_fairness(engine, pb, AT + timedelta(days=1, hours=3))[0].review_item_id is None


def test_the_cycle_audit_runs_once_a_day(engine: Engine, tmp_path: Path) -> None:
    from datetime import timedelta

    from legato.monitor.fairness import audit_daily

    from legato.trust.review import list_items

    load(engine)
    pb = playbook('tier = "gold"')
    run_cycle(engine, pb, FixedClock(AT), transports(pb, tmp_path))
    (item,) = list_items(engine, kind="finding")  # the cycle audited after deciding
    assert (item.agent_id, item.reason) == ("mailer", "fairness_breach")
    assert audit_daily(engine, pb, AT + timedelta(hours=5)) == []  # already ran today
    (later,) = audit_daily(engine, pb, AT + timedelta(days=1))
    assert later.breaches and later.review_item_id is None  # still open: no second finding
    assert audit_daily(engine, playbook("true").model_copy(update={"guardrails": pb.guardrails.model_copy(update={"protected_attributes": []})}), AT + timedelta(days=5)) == []


def test_report_fairness_puts_the_breach_in_the_review_list(engine: Engine, tmp_path: Path, database_url: str) -> None:
    import json

    from typer.testing import CliRunner

    from legato.cli.app import app

    load(engine)
    decide(engine, tmp_path, 'tier = "gold"')
    path = tmp_path / "pb.yaml"
    text = PLAYBOOK.replace("STAGE", "2").replace("HOLDOUT", "0").replace("BUDGET", "{}")
    text = text.replace("attributes: {tier: string}", "attributes: {tier: string, age_band: string}")
    text = text.replace("""audience: 'tier in ("gold", "silver")'""", """audience: 'tier = "gold"'""")
    path.write_text(text.replace("  frequency_caps:", "  protected_attributes: [age_band]\n  frequency_caps:"))
    runner = CliRunner()
    report = runner.invoke(app, ["report", "fairness", str(path), "-d", database_url, "--at", "2024-03-04T09:00", "--json"])
    assert report.exit_code == 1, report.output
    item_id = json.loads(report.stdout)["audits"][0]["review_item"]
    again = runner.invoke(app, ["report", "fairness", str(path), "-d", database_url, "--at", "2024-03-04T10:00", "--json"])
    assert again.exit_code == 1 and json.loads(again.stdout)["audits"][0]["review_item"] is None
    listed = json.loads(runner.invoke(app, ["review", "list", "-d", database_url, "--json"]).stdout)["items"]
    findings = [i for i in listed if i["kind"] == "finding"]
    assert [(i["id"], i["reason"], i["agent_id"]) for i in findings] == [(item_id, "fairness_breach", "mailer")]
    shown = runner.invoke(app, ["review", "show", str(item_id), "-d", database_url])
    assert shown.exit_code == 0 and "finding about agent mailer" in shown.stdout and "age_band" in shown.stdout
