"""When an agent's cycle is due: the ``schedule:`` of an agent in the playbook.

Three forms, each a line of text:

- ``every 6h``, ``every 30m``: at every multiple of the period since the Unix epoch, in UTC
  (``every 6h`` is 00:00, 06:00, 12:00 and 18:00 UTC). From 1 minute to 7 days.
- ``daily 08:00`` (or ``daily 08:00, 18:00``): at that local time every day, in the brand's
  time zone (``brand.time_zone``, an IANA name; UTC when not given).
- ``weekly mon 08:00`` (or ``weekly mon,thu 08:00``): those days at that local time.

A schedule names **slots**: instants at which the agent's cycle is due. :meth:`Schedule.latest`
is the last slot at or before a time (the one a worker runs if it has not run yet: a worker
that was down for three days runs the latest missed slot once, not every one it missed) and
:meth:`Schedule.next` the first after it (when to look again). Local times that a daylight
saving change skips or repeats resolve as :mod:`zoneinfo` does with ``fold=0``: a skipped 02:30
is the instant an hour-earlier offset gives (03:30 local), a repeated one its first occurrence;
either way one slot a day. Which slots ran is the store's (``legato.cycle.slots``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_UNITS = {"m": 60, "min": 60, "minute": 60, "minutes": 60, "h": 3600, "hour": 3600, "hours": 3600}
_DAY_UNITS = {**_UNITS, "d": 86_400, "day": 86_400, "days": 86_400}
_DURATION = re.compile(r"^(\d+)\s*([a-z]+)$")
_EVERY = re.compile(r"^every\s+(\d+)\s*([a-z]+)$")
_TIME = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")
HINT = "write it as `every 6h`, `every 30m`, `daily 08:00` (the brand's time zone), `daily 08:00, 18:00` or `weekly mon,thu 08:00`"
MIN_PERIOD = timedelta(minutes=1)
MAX_PERIOD = timedelta(days=7)


@dataclass(frozen=True)
class Schedule:
    """A parsed schedule: a fixed ``period``, or local ``times`` on some ``days`` (0 = Monday)."""

    text: str
    period: timedelta | None = None
    times: tuple[time, ...] = ()
    days: frozenset[int] = frozenset(range(7))

    def latest(self, now: datetime, zone: ZoneInfo) -> datetime:
        """The last slot at or before ``now`` (UTC)."""
        if self.period is not None:
            step = int(self.period.total_seconds())
            return EPOCH + timedelta(seconds=(int((now - EPOCH).total_seconds()) // step) * step)
        today = now.astimezone(zone).date()
        for back in range(0, 9):
            found = [slot for slot in self._on(today - timedelta(days=back), zone) if slot <= now]
            if found:
                return max(found)
        raise AssertionError("a weekly schedule has a slot in every 8 days")  # pragma: no cover

    def next(self, now: datetime, zone: ZoneInfo) -> datetime:
        """The first slot after ``now`` (UTC)."""
        if self.period is not None:
            return self.latest(now, zone) + self.period
        today = now.astimezone(zone).date()
        for ahead in range(0, 9):
            found = [slot for slot in self._on(today + timedelta(days=ahead), zone) if slot > now]
            if found:
                return min(found)
        raise AssertionError("a weekly schedule has a slot in every 8 days")  # pragma: no cover

    def _on(self, day: date, zone: ZoneInfo) -> list[datetime]:
        if day.weekday() not in self.days:
            return []
        return [datetime.combine(day, at, tzinfo=zone).astimezone(timezone.utc) for at in self.times]


def parse_schedule(text: str) -> Schedule:
    """A schedule from its text; ``ValueError`` saying what is wrong and how to write it."""
    words = " ".join(str(text).strip().lower().split())
    every = _EVERY.match(words)
    if every:
        count, unit = int(every.group(1)), every.group(2)
        if unit not in _UNITS:
            raise ValueError(f"'{text}': '{unit}' is not a unit of `every`; use m (minutes) or h (hours), e.g. `every 6h`")
        period = timedelta(seconds=count * _UNITS[unit])
        if not MIN_PERIOD <= period <= MAX_PERIOD:
            raise ValueError(f"'{text}': the period must be from 1 minute to 7 days (168h); for a time of day use `daily HH:MM`")
        return Schedule(text=text, period=period)
    head, _, rest = words.partition(" ")
    if head == "daily":
        return Schedule(text=text, times=_times(text, rest))
    if head == "weekly":
        names, _, at = rest.partition(" ")
        days = set()
        for name in filter(None, names.split(",")):
            if name[:3] not in DAYS:
                raise ValueError(f"'{text}': '{name}' is not a day; use mon, tue, wed, thu, fri, sat or sun, e.g. `weekly mon,thu 08:00`")
            days.add(DAYS.index(name[:3]))
        if not days:
            raise ValueError(f"'{text}': name the days, e.g. `weekly mon,thu 08:00`")
        return Schedule(text=text, times=_times(text, at), days=frozenset(days))
    raise ValueError(f"'{text}' is not a schedule; {HINT}")


def _times(text: str, rest: str) -> tuple[time, ...]:
    parts = [part.strip() for part in rest.split(",") if part.strip()]
    if not parts:
        raise ValueError(f"'{text}': give the local time, e.g. `daily 08:00`")
    found = []
    for part in parts:
        match = _TIME.match(part)
        if not match:
            raise ValueError(f"'{text}': '{part}' is not a time of day; write it as HH:MM on a 24-hour clock, e.g. 08:00 or 18:30")
        found.append(time(int(match.group(1)), int(match.group(2))))
    return tuple(sorted(set(found)))


def parse_duration(text: str, *, least: timedelta = MIN_PERIOD, most: timedelta = timedelta(days=30)) -> timedelta:
    """A span written ``90m``, ``24h`` or ``2d``; ``ValueError`` saying how to write it."""
    match = _DURATION.match(" ".join(str(text).strip().lower().split()))
    if not match or match.group(2) not in _DAY_UNITS:
        raise ValueError(f"'{text}' is not a duration; write it as minutes, hours or days, e.g. 90m, 24h or 2d")
    span = timedelta(seconds=int(match.group(1)) * _DAY_UNITS[match.group(2)])
    if not least <= span <= most:
        raise ValueError(f"'{text}': give a duration from {_span(least)} to {_span(most)}")
    return span


def _span(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    return f"{seconds // 86_400}d" if seconds % 86_400 == 0 else f"{seconds // 3600}h" if seconds % 3600 == 0 else f"{seconds // 60}m"


def zone_named(name: str) -> ZoneInfo:
    """The IANA zone ``name``; ``ValueError`` naming it when there is none."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"'{name}' is not a time zone; use an IANA name such as Europe/Paris, America/New_York or UTC") from None
