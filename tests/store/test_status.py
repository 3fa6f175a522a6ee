"""Statuses: one enum per column, and the database refuses any other spelling.

Every (table, column) in :data:`legato.store.status.COLUMNS` is asked the same questions on
SQLite and PostgreSQL: does the migrated database carry a CHECK on it, does that CHECK allow
exactly the enum's values, and is a value outside the enum refused. Migration 0011 is tested
on a store written by the previous version: old route spellings are respelled and nothing
that references a rebuilt table is lost.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import IntegrityError

from legato.store.db import alembic_config, connect
from legato.store.schema import agents, cycles, decisions
from legato.store.status import COLUMNS, DecisionStatus, Route, check_name, values

AT = datetime(2024, 3, 4, 8, tzinfo=UTC)


def test_a_route_is_a_decision_status_in_the_same_spelling() -> None:
    assert set(values(Route)) <= set(values(DecisionStatus))


def test_every_status_column_carries_a_check_of_exactly_its_values(engine: Engine) -> None:
    inspector = inspect(engine)
    for (table, column), enum in COLUMNS.items():
        checks = {c["name"]: c["sqltext"] for c in inspector.get_check_constraints(table)}
        name = check_name(table, column)
        assert name in checks, f"{table}.{column} has no CHECK {name} (found {sorted(checks)})"
        # An IN list makes SQLite build a temporary table per statement run (0.45 s of a 100k cycle).
        assert " IN (" not in checks[name].upper(), f"{table}.{column}: write the CHECK as an OR chain (store.status.one_of)"
        allowed = set(re.findall(r"'([^']*)'", checks[name]))
        assert allowed == set(values(enum)), f"{table}.{column}: CHECK allows {sorted(allowed)}, the enum has {sorted(values(enum))}"


@pytest.mark.parametrize(("table", "column"), sorted(COLUMNS))
def test_a_value_outside_the_enum_is_refused(engine: Engine, table: str, column: str) -> None:
    # Each column is tried on a row written with valid values first, so only the bad value can fail.
    with engine.begin() as c:
        c.execute(sa.insert(agents).values(id="a", trust_stage=1, status="active", updated_at=AT))
        cycle = c.execute(sa.insert(cycles).values(at=AT, started_at=AT, status="finished").returning(cycles.c.id)).scalar_one()
        decision = c.execute(
            sa.insert(decisions).values(
                cycle_id=cycle, agent_id="a", customer_id="c1", decided_at=AT, action="x", propensity=1.0, holdout=False,
                findings=[], route=Route.SCHEDULED, status=DecisionStatus.SCHEDULED,
            ).returning(decisions.c.id)
        ).scalar_one()
        c.execute(text("INSERT INTO customers (id, attributes, created_at, updated_at) VALUES ('c1', '{}', :at, :at)"), {"at": AT})
        c.execute(text(
            "INSERT INTO outbox (message_id, decision_id, customer_id, channel, send_at, status, attempts) "
            "VALUES ('m1', :d, 'c1', 'email', :at, 'pending', 0)"
        ), {"d": decision, "at": AT})
        c.execute(text(
            "INSERT INTO inbound_messages (customer_id, channel, received_at, text, sentiment, intents, action, priority, status) "
            "VALUES ('c1', 'sms', :at, 'hi', 0, '[]', 'recorded', 0, 'closed')"
        ), {"at": AT})
        c.execute(text(
            "INSERT INTO review_items (kind, decision_id, agent_id, reason, priority, status, created_at) "
            "VALUES ('decision', :d, 'a', 'trust_stage_0', 50, 'open', :at)"
        ), {"d": decision, "at": AT})
        c.execute(text(
            "INSERT INTO api_keys (name, role, prefix, hash, created_at, created_by) VALUES ('k', 'viewer', 'lg_x', 'h', :at, 'test')"
        ), {"at": AT})
        c.execute(text(
            "INSERT INTO alerts (incident, kind, agent_id, status, summary, detail, opened_at, last_seen_at, repeats) "
            "VALUES ('stop_loss:a', 'stop_loss', 'a', 'open', 's', '{}', :at, :at, 0)"
        ), {"at": AT})
        c.execute(text(
            "INSERT INTO alert_deliveries (alert_id, phase, destination, status, attempts, due_at, created_at) "
            "VALUES (1, 'opened', 'log', 'pending', 0, :at, :at)"
        ), {"at": AT})
    with pytest.raises(IntegrityError), engine.begin() as c:
        c.execute(text(f"UPDATE {table} SET {column} = 'bogus'"))


def _old_store(url: str) -> Engine:
    """A store as version 0010 left it: decisions with the old route spellings, an agent with policy states."""
    engine = sa.create_engine(url)
    config = alembic_config(engine)
    command.upgrade(config, "0010")
    with engine.begin() as c:
        c.execute(text("INSERT INTO agents (id, trust_stage, status, updated_at) VALUES ('a', 2, 'active', :at)"), {"at": AT})
        c.execute(text(
            "INSERT INTO policy_states (agent_id, version, policy, state, created_at) VALUES ('a', 1, 'beta_ts', '{}', :at)"
        ), {"at": AT})
        c.execute(text("INSERT INTO cycles (at, started_at, status) VALUES (:at, :at, 'finished')"), {"at": AT})
        old = {"execute": "sent", "review": "queued", "suppress": "suppressed", "gate": "gated", "none": "nothing", "holdout": "holdout", "control": "control"}
        for i, (route, status) in enumerate(old.items()):
            c.execute(text(
                "INSERT INTO decisions (cycle_id, agent_id, customer_id, decided_at, action, propensity, holdout, findings, route, status) "
                "VALUES (1, 'a', :customer, :at, 'x', 1.0, false, '[]', :route, :status)"
            ), {"customer": f"c{i}", "at": AT, "route": route, "status": status})
    return engine


def test_migration_0011_respells_old_routes_and_keeps_what_references_rebuilt_tables(blank_database_url: str) -> None:
    engine = _old_store(blank_database_url)
    command.upgrade(alembic_config(engine), "head")
    with engine.connect() as c:
        routes = dict(c.execute(text("SELECT customer_id, route FROM decisions")).all())
        assert c.execute(text("SELECT COUNT(*) FROM policy_states")).scalar_one() == 1, "rebuilding agents deleted its policy states"
    assert routes == {"c0": "scheduled", "c1": "queued", "c2": "suppressed", "c3": "gated", "c4": "nothing", "c5": "holdout", "c6": "control"}
    # The rebuilt tables keep their indexes (SQLite copies each table).
    indexes = {i["name"] for i in inspect(engine).get_indexes("decisions")} | {i["name"] for i in inspect(engine).get_indexes("review_items")}
    assert {"ix_review_items_queue"} <= indexes
    command.downgrade(alembic_config(engine), "0010")
    with engine.connect() as c:
        assert c.execute(text("SELECT route FROM decisions WHERE customer_id = 'c0'")).scalar_one() == "execute"
        assert c.execute(text("SELECT COUNT(*) FROM policy_states")).scalar_one() == 1
    engine.dispose()
    connect(blank_database_url).dispose()  # and up again through Legato's own connect


def test_migration_0011_names_values_it_cannot_constrain(blank_database_url: str) -> None:
    engine = _old_store(blank_database_url)
    with engine.begin() as c:
        c.execute(text("UPDATE agents SET status = 'sleeping'"))
    with pytest.raises(RuntimeError, match=r"agents\.status holds values outside active, paused: 'sleeping'"):
        command.upgrade(alembic_config(engine), "head")
    with engine.connect() as c:
        # Nothing half-done: the respelling of routes rolled back with the failed migration.
        assert c.execute(text("SELECT route FROM decisions WHERE customer_id = 'c0'")).scalar_one() == "execute"
    engine.dispose()
