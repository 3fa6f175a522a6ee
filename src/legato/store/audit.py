"""The one writer of the append-only audit log.

Every change a person, an agent or a rule makes is recorded here and nowhere else: who
(``actor``), what (``action``), to which thing (``entity``, ``entity_id``), the facts
(``detail``) and, for content, the hash before and after. Rows are only ever inserted, in
the caller's transaction, so the record commits or rolls back with the change it describes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from legato.store.schema import audit_log


@dataclass(frozen=True)
class Entry:
    at: datetime
    actor: str
    action: str
    entity: str
    entity_id: str
    detail: Mapping[str, Any] = field(default_factory=dict)
    before_hash: str | None = None
    after_hash: str | None = None

    def row(self) -> dict[str, Any]:
        return {
            "at": self.at, "actor": self.actor, "action": self.action, "entity": self.entity, "entity_id": str(self.entity_id),
            "detail": dict(self.detail), "before_hash": self.before_hash, "after_hash": self.after_hash,
        }


def record(
    connection: Connection,
    at: datetime,
    actor: str,
    action: str,
    entity: str,
    entity_id: str,
    detail: Mapping[str, Any] | None = None,
    *,
    before_hash: str | None = None,
    after_hash: str | None = None,
) -> None:
    """Append one audit row inside the caller's transaction."""
    record_many(connection, [Entry(at, actor, action, entity, str(entity_id), detail or {}, before_hash, after_hash)])


def record_many(connection: Connection, entries: Sequence[Entry]) -> None:
    """Append several audit rows in one statement (expiry of many review items, say)."""
    if not entries:
        return
    for entry in entries:
        if not entry.actor or not entry.action or not entry.entity:
            raise ValueError(f"an audit row needs an actor, an action and an entity: {entry}")
    connection.execute(sa.insert(audit_log), [entry.row() for entry in entries])
