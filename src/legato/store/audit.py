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


# --- reading the log back ----------------------------------------------------------------


@dataclass(frozen=True)
class Logged:
    """One audit row as stored, with its id (the page cursor)."""

    id: int
    at: datetime
    actor: str
    action: str
    entity: str
    entity_id: str
    detail: Mapping[str, Any]
    before_hash: str | None
    after_hash: str | None


@dataclass(frozen=True)
class AuditFilter:
    """Which rows: every field that is set must hold. ``agent`` matches a row about the agent
    (entity ``agent``), one naming it in its detail (a review item's ``agent``, a conversation's
    ``about_agent``) and one the agent wrote itself (actor ``agent:ID``, a cycle's ``decided``)."""

    action: str | None = None
    entity: str | None = None
    entity_id: str | None = None
    agent: str | None = None
    actor: str | None = None


def entries(connection: Connection, where: AuditFilter, *, limit: int, before: int | None = None) -> list[Logged]:
    """Up to ``limit`` rows ``where`` matches, newest first (by id), only older than ``before``.

    By id, not by ``at``: rows are only appended, so the id orders them as written and a page
    read while others are written neither shifts nor repeats. A filter on the action or the
    entity is read off its index; the agent filter reads the detail's JSON, checked along the
    primary key until the page is full.
    """
    query = sa.select(audit_log).where(*_clauses(where)).order_by(audit_log.c.id.desc()).limit(limit)
    if before is not None:
        query = query.where(audit_log.c.id < before)
    return [
        Logged(int(r.id), r.at, r.actor, r.action, r.entity, r.entity_id, r.detail or {}, r.before_hash, r.after_hash)
        for r in connection.execute(query)
    ]


def actions(connection: Connection) -> list[str]:
    """Every action the log holds, in order: one index seek per action (ix_audit_log_action_at), not a scan of the log."""
    return _distinct(connection, "action")


def entity_kinds(connection: Connection) -> list[str]:
    """Every kind of entity the log names, in order (ix_audit_log_entity), one seek each."""
    return _distinct(connection, "entity")


def _distinct(connection: Connection, column: str) -> list[str]:
    # A loose index scan written as a recursive query (SQLite and PostgreSQL both run it):
    # each step seeks the next value after the last. ``column`` is one of two names above.
    query = sa.text(
        f"WITH RECURSIVE seen(value) AS ("
        f" SELECT MIN({column}) FROM audit_log"
        f" UNION ALL SELECT (SELECT MIN({column}) FROM audit_log WHERE {column} > seen.value) FROM seen WHERE seen.value IS NOT NULL"
        f") SELECT value FROM seen WHERE value IS NOT NULL"
    )
    return [str(v) for v in connection.execute(query).scalars()]


def _clauses(where: AuditFilter) -> list[sa.ColumnElement[bool]]:
    clauses: list[sa.ColumnElement[bool]] = []
    for column, value in ((audit_log.c.action, where.action), (audit_log.c.entity, where.entity),
                          (audit_log.c.entity_id, where.entity_id), (audit_log.c.actor, where.actor)):
        if value is not None:
            clauses.append(column == value)
    if where.agent is not None:
        clauses.append(sa.or_(
            sa.and_(audit_log.c.entity == "agent", audit_log.c.entity_id == where.agent),
            audit_log.c.actor == f"agent:{where.agent}",
            audit_log.c.detail["agent"].as_string() == where.agent,
            audit_log.c.detail["about_agent"].as_string() == where.agent,
        ))
    return clauses
