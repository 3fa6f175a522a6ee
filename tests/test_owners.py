"""One writer per state: a table's rows are created and changed only by the module that owns it.

The cycle, the review queue, the dispatcher, the CLI and every later face (API, workers) call
the owner; a second writer is how rules drift apart. Each owned table is checked the same
way: every module of the package is parsed, and any INSERT, UPDATE or DELETE of the table
(SQLAlchemy's ``insert(t)``/``t.insert()``, Legato's bulk helpers, or SQL text) outside its
owners fails the test with the file and line.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import legato

# table -> the modules (paths under src/) allowed to write it, and what each state is.
OWNERS: dict[str, tuple[str, ...]] = {
    "outbox": ("legato/deliver/outbox.py",),
    "audit_log": ("legato/store/audit.py",),
    "agents": ("legato/trust/agent_state.py",),
    # Opened by items.py; approved, rejected, resolved (actions.py) and expired (due.py) in the same package.
    "review_items": ("legato/trust/review/items.py", "legato/trust/review/actions.py", "legato/trust/review/due.py"),
    # The queue's totals: appended by the same writers through counts.py, in their transactions.
    "review_counts": ("legato/trust/review/counts.py",),
    "policy_states": ("legato/decide/versions.py",),
    "playbook_versions": ("legato/store/playbook_versions.py",),
    "playbook_uploads": ("legato/store/playbook_versions.py",),
    "cycle_partitions": ("legato/cycle/partitions.py",),
    "cycle_slots": ("legato/cycle/slots.py",),
    "api_keys": ("legato/store/api_keys.py",),
    "idempotency_records": ("legato/api/idempotency.py",),
    # Every consent statement, single or an import's set, through the one consent owner.
    "consents": ("legato/guard/consent.py",),
    "consent_history": ("legato/guard/consent.py",),
    "identity_links": ("legato/store/tracking.py",),
    "seen_messages": ("legato/store/tracking.py",),
    "rate_buckets": ("legato/store/rate_buckets.py",),
    # The webhooks a provider sent that were acted on, taken in the transaction of each effect.
    "provider_receipts": ("legato/store/receipts.py",),
    # The KPI counts: added to by the cycle, review, dispatcher, delivery reports and attribution through metrics.py.
    "metrics": ("legato/monitor/metrics.py",),
    # Raised, repeated and cleared by the one module; delivering them stamps them there too (mark_delivered).
    "alerts": ("legato/monitor/alerts.py",),
    "anomalies": ("legato/monitor/anomaly.py",),
    "alert_deliveries": ("legato/monitor/alert_delivery.py",),
    "metric_totals": ("legato/monitor/metrics.py",),
    "metric_groups": ("legato/monitor/metrics.py",),
}
# Only this module creates the table's rows (others may change their status).
CREATORS = {"review_items": "legato/trust/review/items.py"}

WRITES = {"insert", "update", "delete"}
BULK = {"insert_many", "insert_columns", "insert_driver_rows"}  # legato.store.bulk: (connection, table, ...)
ROOT = Path(legato.__file__).parent


def _names(node: ast.AST, table: str) -> bool:
    return (isinstance(node, ast.Name) and node.id == table) or (isinstance(node, ast.Attribute) and node.attr == table)


def writes(tree: ast.AST, table: str, verbs: set[str] = WRITES) -> list[int]:
    """Lines where code builds a write of ``table``."""
    lines = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        called = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
        if called in verbs and node.args and _names(node.args[0], table):
            lines.append(node.lineno)
        elif isinstance(func, ast.Attribute) and func.attr in verbs and _names(func.value, table):
            lines.append(node.lineno)
        elif "insert" in verbs and called in BULK and len(node.args) > 1 and _names(node.args[1], table):
            lines.append(node.lineno)
    return sorted(lines)


def raw_sql(source: str, table: str, verbs: tuple[str, ...] = ("insert into", "update", "delete from")) -> list[int]:
    return [n for n, line in enumerate(source.splitlines(), 1) if any(f"{verb} {table}" in line.lower() for verb in verbs)]


def _modules() -> list[tuple[str, str]]:
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        relative = path.relative_to(ROOT.parent).as_posix()
        if "/migrations/" not in relative:
            found.append((relative, path.read_text(encoding="utf-8")))
    return found


@pytest.mark.parametrize("table", sorted(OWNERS))
def test_only_the_owner_writes(table: str) -> None:
    offenders = {}
    for relative, source in _modules():
        if relative in OWNERS[table]:
            continue
        lines = sorted(set(writes(ast.parse(source), table) + raw_sql(source, table)))
        if lines:
            offenders[relative] = lines
    assert offenders == {}, f"{table} written outside {', '.join(OWNERS[table])}: {offenders}"


@pytest.mark.parametrize("table", sorted(CREATORS))
def test_only_the_creator_inserts(table: str) -> None:
    offenders = {}
    for relative, source in _modules():
        if relative == CREATORS[table]:
            continue
        lines = sorted(set(writes(ast.parse(source), table, {"insert"}) + raw_sql(source, table, ("insert into",))))
        if lines:
            offenders[relative] = lines
    assert offenders == {}, f"{table} rows created outside {CREATORS[table]}: {offenders}"


def test_the_detector_sees_each_way_of_writing() -> None:
    """The checks above are only as good as this detector."""
    source = (
        "sa.insert(outbox).values()\nupdate(outbox)\noutbox.delete()\nsa.update(schema.outbox)\nsa.select(outbox)\n"
        "insert_many(connection, outbox, cols, rows)\ninsert_columns(c, schema.outbox, {})\nfetch_columns(c, outbox)\n"
    )
    assert writes(ast.parse(source), "outbox") == [1, 2, 3, 4, 6, 7]
    assert writes(ast.parse(source), "outbox", {"insert"}) == [1, 6, 7]
    assert raw_sql("x = 'UPDATE outbox SET'\ny = 'SELECT * FROM outbox'\nINSERT INTO outbox", "outbox") == [1, 3]


def test_every_owner_exists() -> None:
    for table, modules in OWNERS.items():
        for module in modules:
            assert (ROOT.parent / module).is_file(), f"the owner of {table}, {module}, is gone: update OWNERS"
