"""What changed in the store since a cursor: new review items, trust stage changes, stop-loss
breaches, agents paused or resumed, review items decided, cycles started and finished.

Read from the store, not from the process that made the change, so a cycle run from the CLI,
another server or the dispatcher shows up like a change made here (``/v1/stream`` polls this).
The cursor is where a reader is in each sequence: the audit log's and the review queue's row
ids, the newest cycle id, and the cycles it saw start that have not ended. It is a short text
(``"120-45-7-7"``) an SSE client sends back as ``Last-Event-ID``.

**Rows committed out of id order.** On PostgreSQL two transactions can take ids 100 and 101
and commit 101 first; a reader that saw 101 would skip 100 for good. A :class:`Reader` keeps
the ids it skipped over as holes and looks for them again for :data:`HOLE_WAIT` (an id that
never comes was a rolled-back insert). Holes live in the reader, not in the cursor: a client
that reconnects exactly then may miss such a row.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Engine

from legato.errors import Invalid
from legato.store.schema import audit_log, cycles, review_items
from legato.store.status import CycleStatus

# Audit actions a stream reader is told of, and the event each becomes.
STAGE_CAUSES = ("trust_stage_changed", "trust_promoted", "trust_demoted", "compliance_breach")
STOP_LOSS = "stop_loss_breach"
REVIEW_ACTIONS = ("review_approved", "review_edited", "review_rejected", "review_escalated", "review_resolved", "review_withdrawn", "review_expired")
AGENT_STATUS = ("agent_paused", "agent_resumed")
RESUMED = "cycle_resumed"
WATCHED = (*STAGE_CAUSES, STOP_LOSS, *REVIEW_ACTIONS, *AGENT_STATUS, RESUMED)

HOLE_WAIT = 60.0  # seconds an id skipped over is looked for again (longer than any one transaction of the cycle)
BATCH = 500
_CURSOR = re.compile(r"(\d{1,18})-(\d{1,18})-(\d{1,18})(?:-(\d{1,18}(?:_\d{1,18}){0,15}))?")


@dataclass(frozen=True)
class Cursor:
    audit: int  # the last audit row read
    review: int  # the last review item read
    cycle: int  # the newest cycle read
    running: tuple[int, ...] = ()  # cycles seen starting, not yet seen ending

    def __str__(self) -> str:
        text = f"{self.audit}-{self.review}-{self.cycle}"
        return text + ("-" + "_".join(map(str, self.running)) if self.running else "")

    @classmethod
    def parse(cls, text: str) -> Cursor:
        found = _CURSOR.fullmatch(text.strip())
        if found is None:
            raise Invalid(f"{text!r} is not a stream position", hint="send back the id of the last event received, or nothing to start from now")
        audit, review, cycle, running = found.groups()
        return cls(int(audit), int(review), int(cycle), tuple(int(i) for i in running.split("_")) if running else ())


@dataclass(frozen=True)
class Change:
    event: str  # review_item, trust_stage_changed, stop_loss_breach, agent_paused, agent_resumed, review_item_decided, cycle_started, cycle_finished
    data: dict[str, Any]
    cursor: Cursor  # where a reader is once it has this change


def now_cursor(engine: Engine) -> Cursor:
    """The present: a reader starting here is told only of what changes from now on."""
    with engine.connect() as connection:
        audit = connection.execute(sa.select(sa.func.max(audit_log.c.id))).scalar() or 0
        review = connection.execute(sa.select(sa.func.max(review_items.c.id))).scalar() or 0
        cycle = connection.execute(sa.select(sa.func.max(cycles.c.id))).scalar() or 0
        running = connection.execute(sa.select(cycles.c.id).where(cycles.c.status == CycleStatus.RUNNING).order_by(cycles.c.id)).scalars().all()
    return Cursor(int(audit), int(review), int(cycle), tuple(int(i) for i in running))


@dataclass
class _Holes:
    seen: dict[int, float] = field(default_factory=dict)  # id -> when it was first missing

    def note(self, after: int, found: list[int]) -> None:
        now, expected = time.monotonic(), after + 1
        for got in found:
            for missing in range(expected, min(got, expected + BATCH)):
                self.seen.setdefault(missing, now)
            expected = max(expected, got + 1)

    def waiting(self) -> list[int]:
        limit = time.monotonic() - HOLE_WAIT
        self.seen = {i: t for i, t in self.seen.items() if t >= limit}
        return sorted(self.seen)


class Reader:
    """One reader's way through the changes, from a cursor on."""

    def __init__(self, engine: Engine, cursor: Cursor) -> None:
        self.engine, self.cursor = engine, cursor
        self._audit_holes, self._review_holes = _Holes(), _Holes()

    def read(self) -> list[Change]:
        """What changed since the last read, in order; each change carries the cursor after it."""
        changes: list[Change] = []
        with self.engine.connect() as connection:
            self._audit(connection, changes)
            self._reviews(connection, changes)
            self._cycles(connection, changes)
        return changes

    def _rows(self, connection: Connection, table: sa.Table, after: int, holes: _Holes, columns: list[Any]) -> list[Any]:
        waiting = holes.waiting()
        which = table.c.id > after
        if waiting:
            which = sa.or_(which, table.c.id.in_(waiting))
        rows = connection.execute(sa.select(table.c.id, *columns).where(which).order_by(table.c.id).limit(BATCH)).all()
        for row in rows:
            holes.seen.pop(row.id, None)
        holes.note(after, [row.id for row in rows if row.id > after])
        return rows

    def _audit(self, connection: Connection, changes: list[Change]) -> None:
        # Every row's id is read (the action too) so holes show; only watched rows' details.
        rows = self._rows(connection, audit_log, self.cursor.audit, self._audit_holes, [audit_log.c.action])
        watched = [row.id for row in rows if row.action in WATCHED]
        details = {}
        if watched:
            details = {row.id: row for row in connection.execute(sa.select(audit_log).where(audit_log.c.id.in_(watched)))}
        for row in rows:
            cursor = replace(self.cursor, audit=max(self.cursor.audit, row.id))
            entry = details.get(row.id)
            if entry is not None:
                event = _audit_change(entry)
                if entry.action == RESUMED:
                    cycle_id = int(entry.entity_id)
                    cursor = replace(cursor, running=tuple(sorted({*cursor.running, cycle_id})))
                changes.append(Change(event[0], event[1], cursor))
            self.cursor = cursor

    def _reviews(self, connection: Connection, changes: list[Change]) -> None:
        columns = [review_items.c.kind, review_items.c.agent_id, review_items.c.reason, review_items.c.priority, review_items.c.status,
                   review_items.c.created_at, review_items.c.due_at, review_items.c.assigned_role]
        for row in self._rows(connection, review_items, self.cursor.review, self._review_holes, columns):
            self.cursor = replace(self.cursor, review=max(self.cursor.review, row.id))
            changes.append(Change("review_item", {
                "id": row.id, "kind": row.kind, "agent": row.agent_id, "reason": row.reason, "priority": row.priority,
                "status": row.status, "created_at": _iso(row.created_at), "due_at": _iso(row.due_at), "assigned_role": row.assigned_role,
            }, self.cursor))

    def _cycles(self, connection: Connection, changes: list[Change]) -> None:
        watched = set(self.cursor.running)
        rows = connection.execute(
            sa.select(cycles).where(sa.or_(cycles.c.id > self.cursor.cycle, cycles.c.id.in_(sorted(watched)))).order_by(cycles.c.id).limit(BATCH)
        ).all()
        for row in rows:
            running = set(self.cursor.running)
            if row.id > self.cursor.cycle:
                running.add(row.id)
                self.cursor = replace(self.cursor, cycle=row.id, running=tuple(sorted(running)))
                changes.append(Change("cycle_started", {"cycle": row.id, "at": _iso(row.at), "started_at": _iso(row.started_at), "resumed": False}, self.cursor))
            if row.status != CycleStatus.RUNNING and row.id in running:
                running.discard(row.id)
                self.cursor = replace(self.cursor, running=tuple(sorted(running)))
                seconds = (row.finished_at - row.started_at).total_seconds() if row.finished_at else None
                changes.append(Change("cycle_finished", {
                    "cycle": row.id, "status": row.status, "started_at": _iso(row.started_at), "finished_at": _iso(row.finished_at),
                    "duration_seconds": seconds,
                }, self.cursor))
        # A watched cycle that is gone (a preview's, rolled back) is no longer watched.
        present = {row.id for row in rows}
        gone = {i for i in self.cursor.running if i <= self.cursor.cycle and i not in present}
        if gone:
            self.cursor = replace(self.cursor, running=tuple(i for i in self.cursor.running if i not in gone))


def _audit_change(row: Any) -> tuple[str, dict[str, Any]]:
    detail = dict(row.detail or {})
    base = {"at": _iso(row.at), "by": row.actor}
    if row.action == RESUMED:
        return "cycle_started", {"cycle": int(row.entity_id), "started_at": _iso(row.at), "resumed": True, **base}
    if row.action in REVIEW_ACTIONS:
        # Only the item and what was done: the audit detail can name a customer's decision or message.
        return "review_item_decided", {"id": int(row.entity_id), "action": row.action.removeprefix("review_"), **base}
    agent = {"agent": row.entity_id, "from": detail.get("from"), "to": detail.get("to"), "reason": detail.get("reason"), **base}
    if row.action in AGENT_STATUS:
        return row.action, agent
    if row.action == STOP_LOSS:
        breach = {k: v for k, v in detail.items() if k not in ("from", "to", "reason")}
        return STOP_LOSS, {**agent, "breach": breach}
    return "trust_stage_changed", {**agent, "cause": row.action}


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
