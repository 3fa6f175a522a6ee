"""Quiet hours in the recipient's local time (TCPA: no marketing texts or calls before 8:00 or
after 21:00 local time; Florida 8:00–20:00 by Fla. Stat. § 501.616).

The local zone is the profile's; else inferred from the phone number (``phonenumbers``);
else the candidates of the customer's country. When several zones are possible the strictest
reading wins: a send is quiet if it is quiet in any candidate zone, and a delayed send waits
until it is allowed in all of them. Work is done once per distinct (zones, send time), not
once per customer.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import numpy.typing as npt
import phonenumbers
from phonenumbers import timezone as phone_zones

from legato.playbook.models import QuietHours

# Mainland and non-contiguous US and Canadian zones: the candidates when only the country is known.
COUNTRY_ZONES: dict[str, tuple[str, ...]] = {
    "US": ("America/New_York", "America/Chicago", "America/Denver", "America/Phoenix", "America/Los_Angeles", "America/Anchorage", "Pacific/Honolulu"),
    "CA": ("America/St_Johns", "America/Halifax", "America/Toronto", "America/Winnipeg", "America/Edmonton", "America/Vancouver"),
}
UNKNOWN = ("UTC",)


def candidate_zones(zone: str | None, phone: str | None, country: str | None) -> tuple[str, ...]:
    """The zones a customer may be in, most certain source first."""
    if zone:
        return (zone,)
    if phone:
        zones = _phone_zones(phone, country or "US")
        if zones:
            return zones
    return COUNTRY_ZONES.get((country or "").upper(), UNKNOWN)


@lru_cache(maxsize=100_000)
def _phone_zones(phone: str, region: str) -> tuple[str, ...]:
    try:
        number = phonenumbers.parse(phone, region)
    except phonenumbers.NumberParseException:
        return ()
    zones = tuple(z for z in phone_zones.time_zones_for_number(number) if z != "Etc/Unknown")
    return zones


def apply_quiet_hours(
    rule: QuietHours,
    applies: npt.NDArray[np.bool_],
    send_at: npt.NDArray[np.datetime64],
    zones: list[tuple[str, ...]],
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.datetime64]]:
    """For rows where the rule applies: which sends fall in quiet hours, and when each may go instead."""
    quiet = np.zeros(len(send_at), dtype=bool)
    allowed_at = send_at.copy()
    rows = np.flatnonzero(applies)
    groups: dict[tuple[tuple[str, ...], np.datetime64], list[int]] = {}
    for i in rows.tolist():
        groups.setdefault((zones[i], send_at[i]), []).append(i)
    for (candidates, when), members in groups.items():
        instant = when.astype("datetime64[us]").astype(datetime).replace(tzinfo=timezone.utc)
        is_quiet, resume = quiet_between(rule.start, rule.end, candidates, instant)
        if is_quiet:
            quiet[members] = True
            allowed_at[members] = np.datetime64(resume.replace(tzinfo=None), "us")
    return quiet, allowed_at


def quiet_between(start: time, end: time, candidates: tuple[str, ...], instant: datetime) -> tuple[bool, datetime]:
    """Whether ``instant`` is quiet in any candidate zone, and the first instant allowed in all."""
    quiet_anywhere = False
    resume = instant
    for name in candidates:
        zone = zone_named(name)
        local = instant.astimezone(zone)
        if _in_quiet(local.time(), start, end):
            quiet_anywhere = True
            resume = max(resume, _next_end(local, start, end).astimezone(timezone.utc))
    if quiet_anywhere and resume != instant:
        # Moving to one zone's end may land in another's quiet hours (a long span of zones).
        again, later = quiet_between(start, end, candidates, resume)
        if again:
            return True, later
    return quiet_anywhere, resume


def _in_quiet(clock: time, start: time, end: time) -> bool:
    if start <= end:  # e.g. 12:00-13:00
        return start <= clock < end
    return clock >= start or clock < end  # spans midnight, e.g. 21:00-08:00


def _next_end(local: datetime, start: time, end: time) -> datetime:
    candidate = local.replace(hour=end.hour, minute=end.minute, second=0, microsecond=0)
    if candidate <= local:
        candidate = candidate + timedelta(days=1)
    return candidate


@lru_cache(maxsize=1024)
def zone_named(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")
