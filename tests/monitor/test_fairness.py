"""The fairness audit finds an audience that leaves a protected group out, and records it."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy import Engine

from legato.clock import FixedClock
from legato.deliver.dispatch import transports
from legato.engine import run_cycle
from legato.monitor.fairness import audit_fairness
from legato.playbook.loader import parse_playbook
from legato.store.ingest import import_customers
from legato.store.schema import audit_log

from tests.test_engine import AT, PLAYBOOK


def load(engine: Engine, n: int = 200) -> None:
    ids = [f"c{i:03d}" for i in range(n)]
    # "gold" customers are mostly young: targeting gold is a proxy for targeting age.
    age = ["18-34" if i % 2 == 0 else "55+" for i in range(n)]
    tier = ["gold" if (i % 2 == 0 or i % 10 == 1) else "bronze" for i in range(n)]
    table = pa.table({"id": ids, "email": [f"{c}@t.example" for c in ids], "time_zone": ["UTC"] * n, "consent_email_marketing": ["express"] * n, "tier": tier, "age_band": age})
    import_customers(engine, table, attribute_types={"tier": "string", "age_band": "string"}, clock=FixedClock(AT))


def playbook(audience: str):  # type: ignore[no-untyped-def]
    text = PLAYBOOK.replace("STAGE", "2").replace("HOLDOUT", "0").replace("BUDGET", "{}")
    text = text.replace("attributes: {tier: string}", "attributes: {tier: string, age_band: string}")
    text = text.replace("""audience: 'tier in ("gold", "silver")'""", f"audience: '{audience}'")
    text = text.replace("  frequency_caps:", "  protected_attributes: [age_band]\n  frequency_caps:")
    return parse_playbook(text)


def test_proxy_targeting_is_a_breach(engine: Engine, tmp_path: Path) -> None:
    load(engine)
    pb = playbook('tier = "gold"')
    run_cycle(engine, pb, FixedClock(AT), transports(pb, tmp_path))
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
