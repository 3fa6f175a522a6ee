"""A schedule for tests whose worker runs on the real clock: its latest slot has just passed
(so a worker started now finds it due) and the next one is a day away.

An `every 1h` schedule came due again when such a test crossed the hour, and a second
cycle ran where the test counts one (a CI failure on PostgreSQL at 21:00 UTC).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo


def slot_just_passed(time_zone: str = "UTC") -> str:
    """``daily HH:MM`` two minutes ago in the brand's zone: due at once, due again in ~24 hours."""
    passed = datetime.now(ZoneInfo(time_zone)) - timedelta(minutes=2)
    return f"daily {passed:%H:%M}"
