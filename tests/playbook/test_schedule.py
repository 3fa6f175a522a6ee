"""Agents' ``schedule:`` and the brand's time zone: parsing, slots, and a bad line named."""

from __future__ import annotations

from datetime import datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from legato.playbook.schedule import parse_duration, parse_schedule
from legato.validation import PlaybookError, parse_playbook
from tests.world import PLAYBOOK

UTC = ZoneInfo("UTC")
PARIS = ZoneInfo("Europe/Paris")


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("text", "period", "times", "days"),
    [
        ("every 6h", timedelta(hours=6), (), set(range(7))),
        ("every 30m", timedelta(minutes=30), (), set(range(7))),
        ("Every 90 minutes", timedelta(minutes=90), (), set(range(7))),
        ("every 168h", timedelta(days=7), (), set(range(7))),
        ("daily 08:00", None, (time(8),), set(range(7))),
        ("daily 18:30, 8:00", None, (time(8), time(18, 30)), set(range(7))),
        ("weekly mon,thu 07:15", None, (time(7, 15),), {0, 3}),
        ("weekly Friday 23:59", None, (time(23, 59),), {4}),
    ],
)
def test_the_three_forms_parse(text: str, period: timedelta | None, times: tuple[time, ...], days: set[int]) -> None:
    schedule = parse_schedule(text)
    assert (schedule.period, schedule.times, set(schedule.days)) == (period, times, days)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("hourly", "is not a schedule; write it as `every 6h`"),
        ("every 6 weeks", "'weeks' is not a unit of `every`"),
        ("every 0h", "from 1 minute to 7 days"),
        ("every 169h", "from 1 minute to 7 days"),
        ("daily 8am", "'8am' is not a time of day"),
        ("daily 24:00", "'24:00' is not a time of day"),
        ("daily", "give the local time"),
        ("weekly someday 08:00", "'someday' is not a day"),
        ("weekly 08:00", "'08:00' is not a day"),
    ],
)
def test_a_bad_schedule_says_what_is_wrong_and_how_to_write_it(text: str, says: str) -> None:
    with pytest.raises(ValueError) as raised:
        parse_schedule(text)
    assert says in str(raised.value)


def test_every_is_on_multiples_of_its_period_in_utc() -> None:
    schedule = parse_schedule("every 6h")
    assert schedule.latest(at("2024-03-04T13:59:59"), PARIS) == at("2024-03-04T12:00")
    assert schedule.latest(at("2024-03-04T12:00"), PARIS) == at("2024-03-04T12:00")  # a slot is due at its instant
    assert schedule.next(at("2024-03-04T12:00"), PARIS) == at("2024-03-04T18:00")
    assert parse_schedule("every 30m").latest(at("2024-03-04T00:45:10"), UTC) == at("2024-03-04T00:30")


def test_daily_is_local_time_in_the_brands_zone_across_a_daylight_saving_change() -> None:
    schedule = parse_schedule("daily 08:00")
    # Winter in Paris is UTC+1, summer UTC+2: 08:00 local is 07:00 then 06:00 UTC.
    assert schedule.latest(at("2024-03-29T12:00"), PARIS) == at("2024-03-29T07:00")
    assert schedule.latest(at("2024-04-02T12:00"), PARIS) == at("2024-04-02T06:00")
    # Before today's slot, the latest is yesterday's; the next is today's.
    assert schedule.latest(at("2024-03-29T06:59"), PARIS) == at("2024-03-28T07:00")
    assert schedule.next(at("2024-03-29T06:59"), PARIS) == at("2024-03-29T07:00")
    # The change itself (31 March 2024): one slot that day, at 08:00 local (06:00 UTC).
    assert schedule.next(at("2024-03-30T07:00"), PARIS) == at("2024-03-31T06:00")
    # A skipped local time (02:30 on 31 March) still gives one slot that day.
    skipped = parse_schedule("daily 02:30")
    assert skipped.next(at("2024-03-30T23:00"), PARIS).date().isoformat() == "2024-03-31"
    assert skipped.next(skipped.next(at("2024-03-30T23:00"), PARIS), PARIS).date().isoformat() == "2024-04-01"


def test_weekly_and_several_times_a_day() -> None:
    weekly = parse_schedule("weekly mon,thu 08:00")
    assert weekly.latest(at("2024-03-06T10:00"), UTC) == at("2024-03-04T08:00")  # Wednesday: Monday's
    assert weekly.next(at("2024-03-06T10:00"), UTC) == at("2024-03-07T08:00")  # then Thursday's
    twice = parse_schedule("daily 08:00, 18:00")
    assert twice.latest(at("2024-03-04T17:00"), UTC) == at("2024-03-04T08:00")
    assert twice.next(at("2024-03-04T17:00"), UTC) == at("2024-03-04T18:00")


def test_durations() -> None:
    assert parse_duration("24h") == timedelta(hours=24)
    assert parse_duration("90m") == timedelta(minutes=90)
    assert parse_duration("2 d") == timedelta(days=2)
    for bad in ("soon", "0m", "31d", "3w"):
        with pytest.raises(ValueError):
            parse_duration(bad)


def _with(schedule: str, zone: str = "Europe/Paris", give_up: str = "24h") -> str:
    text = PLAYBOOK.replace("STAGE", "3").replace("HOLDOUT", "0").replace("BUDGET", "{}")
    text = text.replace("  name: Test Co\n", f"  name: Test Co\n  time_zone: {zone}\n", 1)
    text = text.replace("path: out/email.jsonl}", f"path: out/email.jsonl, give_up_after: {give_up}}}")
    return text.replace("    holdout: 0\n", f"    holdout: 0\n    schedule: {schedule}\n", 1)


def test_a_playbook_with_a_schedule_and_a_zone() -> None:
    playbook = parse_playbook(_with("daily 08:00"))
    assert playbook.brand.zone == PARIS and playbook.agents[0].parsed_schedule == parse_schedule("daily 08:00")
    assert parse_playbook(PLAYBOOK.replace("STAGE", "3").replace("HOLDOUT", "0").replace("BUDGET", "{}")).brand.time_zone == "UTC"


def test_a_bad_schedule_zone_and_give_up_time_are_named_at_their_lines() -> None:
    text = _with("daily 8am", zone="Europe/Pariss", give_up="soon")
    lines = text.splitlines()
    with pytest.raises(PlaybookError) as raised:
        parse_playbook(text, "playbook.yaml")
    found = {line.split(": ", 2)[1]: line for line in raised.value.lines}
    schedule_line = next(n for n, line in enumerate(lines, 1) if "schedule:" in line)
    zone_line = next(n for n, line in enumerate(lines, 1) if "time_zone:" in line)
    assert found["agents[0].schedule"].startswith(f"playbook.yaml:{schedule_line}:")
    assert "'8am' is not a time of day; write it as HH:MM" in found["agents[0].schedule"]
    assert found["brand.time_zone"].startswith(f"playbook.yaml:{zone_line}:")
    assert "use an IANA name such as Europe/Paris" in found["brand.time_zone"]
    assert "'soon' is not a duration" in found["channels.email.give_up_after"]
