"""Send times fall in the customer's local window, across time zones and DST."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np

from legato.decide.timing import next_send_times
from legato.playbook.models import SendWindow

MORNING = SendWindow.model_validate("09:00-11:00")
EVENING = SendWindow.model_validate("18:00-20:00")


def utc(text: str) -> np.datetime64:
    return np.datetime64(text, "us")


def test_before_window_waits_for_local_start() -> None:
    now = datetime(2024, 3, 4, 8, 0, tzinfo=timezone.utc)  # 03:00 in New York (EST, UTC-5)
    zones = np.array(["America/New_York", "Europe/Berlin", None], dtype=object)
    times = next_send_times(now, zones, [MORNING], np.zeros(3, dtype=np.int64))
    assert times[0] == utc("2024-03-04T14:00")  # 09:00 EST
    assert times[1] == utc("2024-03-04T08:00")  # 09:00 CET is 08:00 UTC: the window is open now
    assert times[2] == utc("2024-03-04T09:00")  # unknown zone: UTC


def test_inside_window_sends_now_and_after_window_waits_a_day() -> None:
    now = datetime(2024, 3, 4, 19, 0, tzinfo=timezone.utc)
    zones = np.array(["UTC", "UTC"], dtype=object)
    times = next_send_times(now, zones, [MORNING, EVENING], np.array([0, 1]))
    assert times[0] == utc("2024-03-05T09:00")
    assert times[1] == utc("2024-03-04T19:00")


def test_daylight_saving_change_keeps_local_time() -> None:
    # US clocks moved forward on 2024-03-10; the next morning window is 09:00 EDT = 13:00 UTC.
    now = datetime(2024, 3, 9, 16, 0, tzinfo=timezone.utc)  # 11:00 EST, window just closed
    times = next_send_times(now, np.array(["America/New_York"], dtype=object), [MORNING], np.zeros(1, dtype=np.int64))
    assert times[0] == utc("2024-03-10T13:00")
