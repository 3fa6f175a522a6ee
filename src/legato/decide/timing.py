"""Send times: the next moment a customer's local clock is inside a send window.

Work is done once per distinct time zone in the batch (a handful), not once per customer.
A customer without a known zone is scheduled in UTC here; the guardrails decide later
whether an unknown zone needs the strictest candidate instead.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import numpy.typing as npt

from legato.playbook.models import SendWindow

UTC_NAME = "UTC"


def next_send_times(
    now: datetime,
    zones: npt.NDArray[np.object_],
    windows: list[SendWindow],
    window_index: npt.NDArray[np.int64],
    hours: npt.NDArray[np.int64] | None = None,
) -> npt.NDArray[np.datetime64]:
    """For each row, the first instant at or after ``now`` inside ``windows[window_index]``,
    in the row's local zone, returned as naive UTC ``datetime64[us]``. With ``hours`` (a
    local hour per row, inside its window), only that hour of the window is used."""
    result = np.full(len(zones), np.datetime64("NaT"), dtype="datetime64[us]")
    zone_names = np.where(zones == None, UTC_NAME, zones)  # noqa: E711 - elementwise on objects
    for zone_name in np.unique(zone_names.astype(str)):
        zone = zone_or_utc(zone_name)
        local_now = now.astimezone(zone)
        in_zone = zone_names == zone_name
        for index, window in enumerate(windows):
            rows = in_zone & (window_index == index)
            if not rows.any():
                continue
            if hours is None:
                result[rows] = np.datetime64(_next_start(local_now, window).replace(tzinfo=None), "us")
                continue
            for hour in np.unique(hours[rows]).tolist():
                part = within_hour(window, hour)
                result[rows & (hours == hour)] = np.datetime64(_next_start(local_now, part).replace(tzinfo=None), "us")
    return result


def within_hour(window: SendWindow, hour: int) -> SendWindow:
    """The part of ``window`` that lies in the local ``hour`` (the whole window if they do not overlap)."""
    start = max(window.start, time(hour, 0))
    end = min(window.end, time(hour + 1, 0) if hour < 23 else time(23, 59))
    return SendWindow(start=start, end=end) if start < end else window


def _next_start(local_now: datetime, window: SendWindow) -> datetime:
    """The UTC instant at or after ``local_now`` when the window is open."""
    today_start = local_now.replace(hour=window.start.hour, minute=window.start.minute, second=0, microsecond=0)
    today_end = local_now.replace(hour=window.end.hour, minute=window.end.minute, second=0, microsecond=0)
    if local_now < today_start:
        chosen = today_start
    elif local_now < today_end:
        chosen = local_now
    else:
        chosen = today_start + timedelta(days=1)  # aware arithmetic keeps the wall clock across DST
    return chosen.astimezone(ZoneInfo(UTC_NAME))


def zone_or_utc(name: str | None) -> ZoneInfo:
    """The named zone; UTC when the name is missing or unknown."""
    if not name:
        return ZoneInfo(UTC_NAME)
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo(UTC_NAME)


@lru_cache(maxsize=4096)
def window_of(action: str) -> SendWindow | None:
    """The send window an action key names (``creative/offer/HH:MM-HH:MM``), None if it names none.

    The dispatcher asks it for every message; an agent has a handful of action keys, so each
    is parsed once (the model is frozen, so sharing one instance is safe)."""
    label = action.rsplit("/", 1)[-1]
    try:
        return SendWindow.model_validate(label)
    except ValueError:
        return None


def next_open(window: SendWindow, zone_name: str | None, now: datetime) -> datetime | None:
    """None while ``window`` is open at ``now`` in the zone (UTC when unknown), else when it opens next."""
    local_now = now.astimezone(zone_or_utc(zone_name))
    start = _next_start(local_now, window)
    return None if start <= now else start
