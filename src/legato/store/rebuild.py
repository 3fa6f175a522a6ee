"""Changing a table's constraints in a migration on SQLite and PostgreSQL alike.

SQLite cannot add or drop a constraint in place: Alembic's batch mode copies the table,
drops the old one and renames the copy. That copy re-creates indexes from reflection, which
loses a column's ``DESC`` (the review queue's index is read highest priority first), so each
index is re-created afterwards from its own stored statement. Foreign keys are off while
migrations run (``migrations/env.py``), or dropping ``agents`` would cascade-delete its
``policy_states``. PostgreSQL alters the table in place.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from alembic import op


def rebuild(table: str, change: Callable[[Any], None]) -> None:
    """Apply ``change`` to a batch of ``table``, keeping its indexes exactly as they were."""
    bind = op.get_bind()
    indexes: list[tuple[str, str]] = []
    if bind.dialect.name == "sqlite":
        rows = bind.execute(
            sa.text("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = :t AND sql IS NOT NULL"), {"t": table}
        )
        indexes = [(name, sql) for name, sql in rows]
    with op.batch_alter_table(table) as batch:
        change(batch)
    for name, create in indexes:
        op.execute(f"DROP INDEX IF EXISTS {name}")
        op.execute(create)
