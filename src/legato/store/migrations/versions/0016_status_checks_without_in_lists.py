"""status CHECKs as OR chains: the same values, checked at no measurable cost on SQLite

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-01 14:30:00

0011 and 0013 wrote each status CHECK as ``status IN (...)``. SQLite evaluates such a list
by building a temporary table each time a statement runs, which made every insert of a
decision or an outbox row about 1.6 µs slower per CHECK: 0.45 s of a 100,000-customer cycle
and of its floor (bench/foundation.py). The values are unchanged; only the condition's form
is (legato.store.status.one_of). Values are written out, as of this revision.
"""

from __future__ import annotations

from legato.store.rebuild import rebuild
from legato.store.status import one_of

revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None

ROUTES = ('nothing', 'holdout', 'control', 'gated', 'suppressed', 'queued', 'scheduled')
CHECKS: dict[str, dict[str, tuple[str, ...]]] = {
    'agents': {'status': ('active', 'paused')},
    'cycles': {'status': ('running', 'finished', 'failed')},
    'decisions': {'status': ROUTES + ('sent', 'failed', 'rejected', 'expired'), 'route': ROUTES},
    'outbox': {'status': ('pending', 'claimed', 'sent', 'retry', 'dead', 'cancelled')},
    'inbound_messages': {'status': ('open', 'resolved', 'expired', 'closed')},
    'review_items': {
        'status': ('open', 'audit', 'approved', 'rejected', 'expired', 'resolved'),
        'kind': ('decision', 'conversation', 'finding'),
    },
}


def _recreate(as_condition) -> None:  # type: ignore[no-untyped-def]
    from alembic import op

    for table, columns in CHECKS.items():
        def change(batch, table=table, columns=columns):  # type: ignore[no-untyped-def]
            for column, allowed in columns.items():
                batch.drop_constraint(op.f(f'ck_{table}_{column}'), type_='check')
                batch.create_check_constraint(op.f(f'ck_{table}_{column}'), as_condition(column, allowed))

        rebuild(table, change)


def upgrade() -> None:
    _recreate(one_of)


def downgrade() -> None:
    _recreate(lambda column, allowed: f"{column} IN ({', '.join(repr(v) for v in allowed)})")
