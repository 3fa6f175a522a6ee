"""Send-time preference: own hours when history is rich, the population's otherwise, inside the window."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np

from legato.decide.send_time import HourPreference, hours_in
from legato.decide.timing import next_send_times, within_hour
from legato.playbook.models import SendWindow

NOON_HEAVY = np.full(24, 1.0 / 48)
NOON_HEAVY[12] += 0.5


def counts_at(hour: int, n: int) -> np.ndarray:
    row = np.zeros(24)
    row[hour] = n
    return row


def test_rich_history_wins_thin_history_falls_back_to_the_population() -> None:
    counts = np.vstack([counts_at(19, 8), counts_at(19, 2), np.zeros(24)])
    pref = HourPreference.estimate(counts, NOON_HEAVY, min_events=5)
    assert pref.own_history.tolist() == [True, False, False]
    evening = SendWindow.model_validate("08:00-22:00")
    assert pref.best_hours([evening], np.zeros(3, dtype=np.int64)).tolist() == [19, 12, 12]


def test_shrinkage_lets_the_population_break_a_weak_personal_signal() -> None:
    counts = counts_at(9, 3) + counts_at(12, 2)
    pref = HourPreference.estimate(counts[None, :], NOON_HEAVY, min_events=5)
    # Own: 3 at 9, 2 at 12; prior: 5 × (≈0.52 at 12) → 12 wins.
    assert pref.best_hours([SendWindow.model_validate("08:00-20:00")], np.zeros(1, dtype=np.int64)).tolist() == [12]


def test_the_best_hour_is_always_inside_the_chosen_window() -> None:
    pref = HourPreference.estimate(np.vstack([counts_at(19, 9), counts_at(19, 9)]), NOON_HEAVY, min_events=5)
    windows = [SendWindow.model_validate("09:00-11:00"), SendWindow.model_validate("18:00-20:30")]
    best = pref.best_hours(windows, np.array([0, 1]))
    assert best.tolist()[1] == 19 and best.tolist()[0] in (9, 10)
    assert hours_in(windows[1]).nonzero()[0].tolist() == [18, 19, 20]


def test_send_times_use_the_hour_inside_the_window_in_local_time() -> None:
    now = datetime(2024, 3, 4, 8, 0, tzinfo=timezone.utc)  # 03:00 in New York
    window = SendWindow.model_validate("09:00-17:00")
    zones = np.array(["America/New_York", "America/New_York", None], dtype=object)
    at = next_send_times(now, zones, [window], np.zeros(3, dtype=np.int64), np.array([15, 9, 13]))
    assert [str(t) for t in at] == ["2024-03-04T20:00:00.000000", "2024-03-04T14:00:00.000000", "2024-03-04T13:00:00.000000"]
    assert within_hour(window, 16) == SendWindow.model_validate("16:00-17:00")
    assert within_hour(window, 3) == window  # an hour outside the window changes nothing


def test_quarter_hour_buckets_in_sql_on_both_databases(engine: object) -> None:
    """Every minute of an hour lands in its quarter, as text the conversion reads back."""
    from datetime import timedelta

    import pyarrow as pa
    import sqlalchemy as sa

    from legato.clock import FixedClock
    from legato.decide.send_time import _quarter_bucket
    from legato.store.ingest import import_customers, import_events
    from legato.store.schema import events

    at = datetime(2024, 3, 4, 10, 0, tzinfo=timezone.utc)
    import_customers(engine, pa.table({"id": ["c1"]}), clock=FixedClock(at))  # type: ignore[arg-type]
    minutes = [0, 7, 14, 15, 29, 30, 44, 45, 59]
    import_events(
        engine,  # type: ignore[arg-type]
        pa.table({"id": [f"e{m}" for m in minutes], "customer_id": ["c1"] * len(minutes), "type": ["open"] * len(minutes),
                  "occurred_at": [(at + timedelta(minutes=m, seconds=30)).isoformat() for m in minutes]}),
        clock=FixedClock(at),
    )
    with engine.connect() as c:  # type: ignore[attr-defined]
        bucket = _quarter_bucket(c.dialect.name)
        found = dict(c.execute(sa.select(events.c.id, bucket)).all())
    assert found == {f"e{m}": f"2024-03-04 10:{m // 15 * 15:02d}" for m in minutes}
