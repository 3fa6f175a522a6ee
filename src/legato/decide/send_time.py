"""Each customer's best hour to receive a message, learned from when they engage.

A customer's engagements (opens, clicks, visits, purchases) of the last ``history_days`` are
counted per hour of their local day. With at least ``min_events`` of them, the customer's
hour profile is their own counts shrunk toward the population's profile with a prior worth
``min_events`` engagements (a Dirichlet–multinomial posterior mean, the usual empirical-Bayes
way to borrow strength from the population; e.g. Gelman et al., *Bayesian Data Analysis*,
ch. 5); with fewer, it is the population's profile, as vendors' send-time optimization falls
back to a project-wide profile when history is thin. The message goes at the most likely
hour *inside* the send window of the chosen action, so the window the marketer set always
holds.

The population profile counts every customer's engagements of the same period; the work is
grouped by (time zone, UTC quarter hour), so the database returns at most four buckets per
hour of the period and zone, not one row per event.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa
from sqlalchemy import Connection

from legato.decide.timing import zone_or_utc
from legato.playbook.models import SendTimeSettings, SendWindow
from legato.store.schema import customers, events

ENGAGEMENTS = ("open", "click", "visit", "purchase")
HOURS = 24
FloatArray = npt.NDArray[np.float64]


def _quarter_bucket(dialect: str) -> sa.ColumnElement[str]:
    """The UTC quarter hour of an event as text 'YYYY-MM-DD HH:MM' (MM in 00, 15, 30, 45).

    Quarter hours, not hours: every zone's offset is a multiple of 15 minutes (India's +5:30,
    Nepal's +5:45), so each bucket falls in exactly one local hour.
    """
    if dialect == "sqlite":  # SQLite stores UTC text
        minute = sa.cast(sa.func.strftime("%M", events.c.occurred_at), sa.Integer)
        return sa.func.strftime("%Y-%m-%d %H:", events.c.occurred_at).concat(sa.func.printf("%02d", minute // 15 * 15))
    utc = sa.func.timezone("UTC", events.c.occurred_at)
    minute = sa.cast(sa.func.extract("minute", utc), sa.Integer)
    return sa.func.to_char(utc, "YYYY-MM-DD HH24:").concat(sa.func.lpad(sa.cast(minute // 15 * 15, sa.Text), 2, "0"))


def _local_hours(zones: list[str | None], buckets: list[str]) -> npt.NDArray[np.int64]:
    """Local hour of day for each (zone, UTC quarter-hour bucket); each distinct pair is converted once."""
    cache: dict[tuple[str | None, str], int] = {}
    result = np.empty(len(buckets), dtype=np.int64)
    for i, key in enumerate(zip(zones, buckets, strict=True)):
        hour = cache.get(key)
        if hour is None:
            instant = datetime.strptime(key[1], "%Y-%m-%d %H:%M").replace(tzinfo=timezone.utc)
            hour = cache[key] = instant.astimezone(zone_or_utc(key[0])).hour
        result[i] = hour
    return result


def _engagements(since: datetime, now: datetime) -> sa.ColumnElement[bool]:
    return sa.and_(events.c.type.in_(ENGAGEMENTS), events.c.occurred_at >= since, events.c.occurred_at < now)


def population_profile(connection: Connection, now: datetime, settings: SendTimeSettings) -> FloatArray:
    """Share of all customers' engagements per local hour (uniform when there are none)."""
    bucket = _quarter_bucket(connection.dialect.name).label("bucket")
    rows = connection.execute(
        sa.select(customers.c.time_zone, bucket, sa.func.count())
        .select_from(events.join(customers, customers.c.id == events.c.customer_id))
        .where(_engagements(now - timedelta(days=settings.history_days), now))
        .group_by(customers.c.time_zone, bucket)
    ).all()
    counts = np.zeros(HOURS)
    if rows:
        zones, buckets, n = zip(*rows, strict=True)
        np.add.at(counts, _local_hours(list(zones), list(buckets)), np.array(n, dtype=np.float64))
    total = counts.sum()
    return counts / total if total > 0 else np.full(HOURS, 1.0 / HOURS)


def customer_counts(
    connection: Connection, ids: npt.NDArray[np.str_], now: datetime, settings: SendTimeSettings
) -> FloatArray:
    """Engagements per local hour for each of ``ids`` (a page of customers, sorted by id)."""
    counts = np.zeros((len(ids), HOURS))
    if len(ids) == 0:
        return counts
    bucket = _quarter_bucket(connection.dialect.name).label("bucket")
    rows = connection.execute(
        sa.select(events.c.customer_id, customers.c.time_zone, bucket, sa.func.count())
        .select_from(events.join(customers, customers.c.id == events.c.customer_id))
        .where(
            _engagements(now - timedelta(days=settings.history_days), now),
            events.c.customer_id >= str(ids[0]),
            events.c.customer_id <= str(ids[-1]),
        )
        .group_by(events.c.customer_id, customers.c.time_zone, bucket)
    ).all()
    if not rows:
        return counts
    customer, zones, buckets, n = zip(*rows, strict=True)
    position = {c: i for i, c in enumerate(ids.tolist())}
    rows_index = np.array([position.get(c, -1) for c in customer], dtype=np.int64)
    hours = _local_hours(list(zones), list(buckets))
    known = rows_index >= 0  # the id range may hold customers outside the audience
    np.add.at(counts, (rows_index[known], hours[known]), np.array(n, dtype=np.float64)[known])
    return counts


@dataclass(frozen=True)
class HourPreference:
    """Per customer, the probability of engaging at each local hour."""

    profile: FloatArray  # (n, 24)
    own_history: npt.NDArray[np.bool_]  # True where the customer's own engagements were used

    @classmethod
    def estimate(cls, counts: FloatArray, population: FloatArray, min_events: int) -> HourPreference:
        totals = counts.sum(axis=1)
        own = totals >= min_events
        shrunk = (counts + min_events * population) / (totals + min_events)[:, None]
        profile = np.where(own[:, None], shrunk, population[None, :])
        return cls(profile=profile, own_history=own)

    def best_hours(self, windows: list[SendWindow], window_index: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """The most likely hour inside each row's send window (earliest among ties)."""
        best = np.empty(len(window_index), dtype=np.int64)
        for index, window in enumerate(windows):
            rows = window_index == index
            if rows.any():
                inside = hours_in(window)
                masked = np.where(inside[None, :], self.profile[rows], -np.inf)
                best[rows] = np.argmax(masked, axis=1)
        return best


def hours_in(window: SendWindow) -> npt.NDArray[np.bool_]:
    """Hours of the day whose span overlaps the window."""
    start = window.start.hour
    end = window.end.hour + (1 if (window.end.minute or window.end.second) else 0)
    inside = np.zeros(HOURS, dtype=bool)
    inside[start:end] = True
    return inside
