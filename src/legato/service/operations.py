"""What operations watch in the store: the review queue's size, the outbox's backlog, cycles.

Read from the database each time (``/metrics`` asks at every scrape), so the figures are right
whichever process made the change: a cycle run from the CLI, another server, the dispatcher.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy import Engine

from legato.deliver.outbox import backlog
from legato.monitor.alert_delivery import delivery_counts
from legato.monitor.alerts import counts as alert_counts
from legato.store.schema import cycles
from legato.store.status import CycleStatus
from legato.trust.review.queue import waiting_by_reason


@dataclass(frozen=True)
class CycleFigures:
    by_status: dict[str, int]  # every status, 0 when none
    durations: list[tuple[str, float]]  # (finished | failed, seconds from start to end) of every ended cycle
    last_finished_at: datetime | None


@dataclass(frozen=True)
class StoreFigures:
    review_queue: dict[tuple[str, str], int]  # (open | audit, reason) -> items waiting for a person
    outbox: dict[str, int]  # pending, claimed, retry, dead -> messages
    cycles: CycleFigures
    alerts: dict[tuple[str, str], int]  # (kind, open | cleared) -> alerts raised
    alert_deliveries: dict[tuple[str, str, str], int]  # (kind, opened | cleared, pending | sending | sent | failed) -> deliveries


def store_figures(engine: Engine) -> StoreFigures:
    with engine.connect() as connection:
        queue = waiting_by_reason(connection)
        messages = backlog(connection)
        raised, delivered = alert_counts(connection), delivery_counts(connection)
        counts = {str(status): int(n) for status, n in connection.execute(sa.select(cycles.c.status, sa.func.count()).group_by(cycles.c.status))}
        # Cycles are few (one an hour is 8,760 a year), so every ended one is read rather than
        # bucketed in SQL, where the two databases subtract timestamps differently.
        ended = connection.execute(
            sa.select(cycles.c.status, cycles.c.started_at, cycles.c.finished_at).where(cycles.c.finished_at.is_not(None))
        ).all()
    durations = [(str(row.status), max(0.0, (row.finished_at - row.started_at).total_seconds())) for row in ended]
    finished = [row.finished_at for row in ended if row.status == CycleStatus.FINISHED]
    figures = CycleFigures({str(s): counts.get(str(s), 0) for s in CycleStatus}, durations, max(finished) if finished else None)
    return StoreFigures(queue, messages, figures, raised, delivered)
