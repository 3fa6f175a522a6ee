"""The decision search reads each page straight off an index: no sort of the matching
decisions, whichever filter leads (SQLite's plan, which needs no statistics to be stable)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
import sqlalchemy as sa

from legato.monitor.decisions import _COLUMNS, _FROM, DecisionFilter, _clauses
from legato.store.db import connect
from legato.store.schema import decisions
from legato.store.status import DecisionStatus

T = datetime(2024, 3, 1, tzinfo=timezone.utc)
CASES = {
    "no filter": (DecisionFilter(), "ix_decisions_time"),
    "time": (DecisionFilter(since=T, until=T.replace(day=2)), "ix_decisions_time"),
    "status": (DecisionFilter(status=DecisionStatus.QUEUED), "ix_decisions_time"),
    "agent": (DecisionFilter(agent="a"), "ix_decisions_agent_time"),
    "agent and time": (DecisionFilter(agent="a", since=T), "ix_decisions_agent_time"),
    "customer": (DecisionFilter(customer="c"), "ix_decisions_customer_time"),
}


@pytest.mark.parametrize("case", CASES)
def test_a_page_is_read_off_an_index(tmp_path: object, case: str) -> None:
    where, index = CASES[case]
    engine = connect(f"sqlite:///{tmp_path}/plan.db")  # type: ignore[str-bytes-safe]
    query = sa.select(*_COLUMNS).select_from(_FROM).where(*_clauses(where))
    query = query.order_by(decisions.c.decided_at.desc(), decisions.c.id.desc()).limit(101)
    sql = str(query.compile(engine, compile_kwargs={"literal_binds": True}))
    with engine.connect() as connection:
        plan = " | ".join(str(row[-1]) for row in connection.exec_driver_sql("EXPLAIN QUERY PLAN " + sql))
    engine.dispose()
    assert f"USING INDEX {index}" in plan and "TEMP B-TREE" not in plan, plan
