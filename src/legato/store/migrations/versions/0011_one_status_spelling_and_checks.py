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

from legato.store.rebuild import rebuild

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

        rebuild(table, add)


def downgrade() -> None:
    for table, columns in CHECKS.items():
        def drop(batch, columns=columns, table=table):  # type: ignore[no-untyped-def]
            for column in columns:
                batch.drop_constraint(op.f(f'ck_{table}_{column}'), type_='check')

        rebuild(table, drop)
    bind = op.get_bind()
    for old, new in RESPELLED.items():
        bind.execute(sa.text('UPDATE decisions SET route = :old WHERE route = :new'), {'old': old, 'new': new})
