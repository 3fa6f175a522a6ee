"""statuses: one spelling of a decision's route, and a CHECK on every status column

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 12:40:00

A decision's route and its status spelled one state two ways (gate/gated, suppress/suppressed,
review/queued, execute/scheduled, none/nothing). The route is now the status a decision was
written with; stored routes are respelled. Every status column then gets a CHECK, so a value
spelled any other way is refused by the database itself (legato.store.status has the enums).

The value lists are written out here, not read from legato.store.status: a migration is a
record of what the schema was at this revision, and later revisions change the enums with
migrations of their own.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None

RESPELLED = {'gate': 'gated', 'suppress': 'suppressed', 'review': 'queued', 'execute': 'scheduled', 'none': 'nothing'}

ROUTES = ('nothing', 'holdout', 'control', 'gated', 'suppressed', 'queued', 'scheduled')
CHECKS: dict[str, dict[str, tuple[str, ...]]] = {
    'agents': {'status': ('active', 'paused')},
    'cycles': {'status': ('running', 'finished', 'failed')},
    'decisions': {
        'status': ROUTES + ('sent', 'failed', 'rejected', 'expired'),
        'route': ROUTES,
    },
    'outbox': {'status': ('pending', 'sent', 'failed', 'cancelled')},
    'inbound_messages': {'status': ('open', 'resolved', 'expired', 'closed')},
    'review_items': {
        'status': ('open', 'audit', 'approved', 'rejected', 'expired', 'resolved'),
        'kind': ('decision', 'conversation', 'finding'),
    },
}


def condition(column: str, allowed: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in allowed)})"


def _sqlite_indexes(table: str) -> list[tuple[str, str]]:
    """The table's indexes as SQLite stored them (name, CREATE statement)."""
    rows = op.get_bind().execute(
        sa.text("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = :t AND sql IS NOT NULL"), {'t': table}
    )
    return [(name, sql) for name, sql in rows]


def _rebuild(table: str, change) -> None:  # type: ignore[no-untyped-def]
    """Apply ``change`` to a batch of ``table``, keeping its indexes exactly as they were.

    SQLite's batch mode copies the table and re-creates indexes from reflection, which drops
    a column's DESC (the review queue's index is read highest priority first), so on SQLite
    each index is re-created from its own stored statement afterwards.
    """
    sqlite = op.get_bind().dialect.name == 'sqlite'
    indexes = _sqlite_indexes(table) if sqlite else []
    with op.batch_alter_table(table) as batch:
        change(batch)
    for name, create in indexes:
        op.execute(f'DROP INDEX IF EXISTS {name}')
        op.execute(create)


def upgrade() -> None:
    bind = op.get_bind()
    for old, new in RESPELLED.items():
        bind.execute(sa.text('UPDATE decisions SET route = :new WHERE route = :old'), {'old': old, 'new': new})
    # A value no writer of this version produces would make the CHECK fail with the database's
    # own terse message; say which table, column and values instead.
    for table, columns in CHECKS.items():
        for column, allowed in columns.items():
            found = bind.execute(sa.text(f'SELECT DISTINCT {column} FROM {table} WHERE NOT ({condition(column, allowed)})')).scalars().all()
            if found:
                raise RuntimeError(
                    f'{table}.{column} holds values outside {", ".join(allowed)}: {", ".join(map(repr, found[:10]))}; '
                    'correct those rows, then run the migration again'
                )
    for table, columns in CHECKS.items():
        # SQLite cannot add a constraint in place: batch mode copies the table (foreign keys are
        # off for migrations, see env.py); PostgreSQL adds it with ALTER TABLE.
        def add(batch, columns=columns, table=table):  # type: ignore[no-untyped-def]
            for column, allowed in columns.items():
                batch.create_check_constraint(op.f(f'ck_{table}_{column}'), condition(column, allowed))

        _rebuild(table, add)


def downgrade() -> None:
    for table, columns in CHECKS.items():
        def drop(batch, columns=columns, table=table):  # type: ignore[no-untyped-def]
            for column in columns:
                batch.drop_constraint(op.f(f'ck_{table}_{column}'), type_='check')

        _rebuild(table, drop)
    bind = op.get_bind()
    for old, new in RESPELLED.items():
        bind.execute(sa.text('UPDATE decisions SET route = :old WHERE route = :new'), {'old': old, 'new': new})
