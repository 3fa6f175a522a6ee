"""Time for the whole engine, injectable so a month can be simulated in seconds.

Every module asks a :class:`Clock` for "now" instead of calling ``datetime.now``; tests and
``legato run --at`` use :class:`FixedClock`, the demo advances a :class:`FixedClock` day by day.
All times are timezone-aware UTC.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    """The real wall clock, in UTC."""

    def now(self) -> datetime:
        return datetime.now(timezone.utc)


class FixedClock:
    """A clock that stands still until told to move; used for simulation and tests."""

    def __init__(self, at: datetime) -> None:
        self._at = as_utc(at)

    def now(self) -> datetime:
        return self._at

    def set(self, at: datetime) -> None:
        self._at = as_utc(at)

    def advance(self, delta: timedelta) -> datetime:
        self._at = self._at + delta
        return self._at


class ShiftedClock:
    """The wall clock moved to start at ``at``: time passes as it does, from that instant
    (``legato serve --at``: a server over a store whose cycles ran on a simulated clock, such
    as the demo's, acts and reports as at the end of that simulation, and its minutes still pass)."""

    def __init__(self, at: datetime) -> None:
        self._shift = as_utc(at) - datetime.now(timezone.utc)

    def now(self) -> datetime:
        return datetime.now(timezone.utc) + self._shift


def as_utc(value: datetime) -> datetime:
    """Interpret a naive datetime as UTC and convert an aware one to UTC."""
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def parse_instant(text: str) -> datetime:
    """Parse an ISO-8601 date or datetime as typed on a command line (``2024-03-01T09:00``)."""
    try:
        return as_utc(datetime.fromisoformat(text.strip()))
    except ValueError as exc:
        from legato.errors import LegatoError

        raise LegatoError(
            f"'{text}' is not a date or time",
            hint="use ISO-8601, for example 2024-03-01 or 2024-03-01T09:00 (UTC unless an offset is given)",
        ) from exc
