"""Computed traits: the incremental path must agree with a recomputation in plain Python.

The data are the first 2,000 purchases of the CDNOW panel (real customers buying CDs in
1997-98; the copy packaged in ``legato/data``), turned into event files the way a user would
export them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlalchemy import Engine, select, text, update

from legato.clock import FixedClock
from legato.datasets import CDNOW, open_text, shipped_file
from legato.store import schema
from legato.store.ingest import import_customers, import_events
from legato.store.traits import AS_OF_KEY, recompute_all, roll_windows, windows_as_of

IMPORTED_AT = datetime(1998, 7, 1, tzinfo=timezone.utc)
WINDOW_FIELDS = ("purchases_30d", "revenue_30d", "purchases_90d", "revenue_90d")


@dataclass(frozen=True)
class Event:
    id: str
    customer_id: str
    type: str
    at: datetime
    revenue: float | None


def cdnow_events(limit: int = 2000) -> list[Event]:
    """The first ``limit`` CDNOW purchases, plus a page view two days after every third one
    so that the last event and the last purchase differ."""
    rows = []
    with open_text(shipped_file(CDNOW), encoding="ascii") as handle:
        for line in handle:
            fields = line.split()
            if len(fields) == 4 and fields[0].isdigit():
                rows.append(fields)
            if len(rows) == limit:
                break
    events = []
    for number, (customer, day, _cds, dollars) in enumerate(rows, 1):
        # CDNOW has dates only; an hour from the line number keeps same-day purchases apart
        at = datetime.strptime(day, "%Y%m%d").replace(tzinfo=timezone.utc) + timedelta(hours=number % 24)
        events.append(Event(f"p{number:05d}", f"C{customer}", "purchase", at, float(dollars)))
        if number % 3 == 0:
            events.append(Event(f"v{number:05d}", f"C{customer}", "view", at + timedelta(days=2), None))
    return events


def expected_traits(events: list[Event], as_of: datetime) -> dict[str, dict[str, Any]]:
    """Traits recomputed from scratch in Python, independently of the SQL."""
    result: dict[str, dict[str, Any]] = {}
    for event in events:
        row = result.setdefault(
            event.customer_id,
            {
                "first_purchase_at": None,
                "last_purchase_at": None,
                "last_event_at": None,
                "purchase_count": 0,
                "lifetime_spend": 0.0,
                **{name: 0 for name in WINDOW_FIELDS},
            },
        )
        row["last_event_at"] = max(filter(None, [row["last_event_at"], event.at]))
        if event.type != "purchase":
            continue
        revenue = event.revenue or 0.0
        row["first_purchase_at"] = min(filter(None, [row["first_purchase_at"], event.at]))
        row["last_purchase_at"] = max(filter(None, [row["last_purchase_at"], event.at]))
        row["purchase_count"] += 1
        row["lifetime_spend"] += revenue
        for days in (30, 90):
            if as_of - timedelta(days=days) < event.at <= as_of:
                row[f"purchases_{days}d"] += 1
                row[f"revenue_{days}d"] += revenue
    return result


def stored_traits(engine: Engine) -> dict[str, dict[str, Any]]:
    with engine.connect() as connection:
        rows = connection.execute(select(schema.traits)).mappings()
        return {row["customer_id"]: {k: v for k, v in row.items() if k != "customer_id"} for row in rows}


def assert_same(actual: dict[str, dict[str, Any]], expected: dict[str, dict[str, Any]]) -> None:
    assert set(actual) == set(expected)
    for customer, wanted in expected.items():
        got = actual[customer]
        for name, value in wanted.items():
            if isinstance(value, float):
                assert got[name] == pytest.approx(value, rel=1e-9, abs=1e-9), (customer, name)
            else:
                assert got[name] == value, (customer, name)


def write_customers(folder: Path, events: list[Event]) -> Path:
    path = folder / "customers.csv"
    ids = sorted({event.customer_id for event in events})
    path.write_text("id\n" + "".join(f"{i}\n" for i in ids), encoding="utf-8")
    return path


def write_events_csv(path: Path, events: list[Event]) -> Path:
    lines = ["id,customer_id,type,occurred_at,revenue"]
    for e in events:
        revenue = "" if e.revenue is None else f"{e.revenue:.2f}"
        lines.append(f"{e.id},{e.customer_id},{e.type},{e.at:%Y-%m-%dT%H:%M:%SZ},{revenue}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_events_jsonl(path: Path, events: list[Event]) -> Path:
    with path.open("w", encoding="utf-8") as handle:
        for e in events:
            record = {"id": e.id, "customer_id": e.customer_id, "type": e.type, "occurred_at": e.at.isoformat()}
            if e.revenue is not None:
                record["revenue"] = e.revenue
            handle.write(json.dumps(record) + "\n")
    return path


def write_events_parquet(path: Path, events: list[Event]) -> Path:
    table = pa.table(
        {
            "id": [e.id for e in events],
            "customer_id": [e.customer_id for e in events],
            "type": [e.type for e in events],
            "occurred_at": pa.array([e.at for e in events], pa.timestamp("us", "UTC")),
            "revenue": pa.array([e.revenue for e in events], pa.float64()),
        }
    )
    pq.write_table(table, path)
    return path


def roll(engine: Engine, now: datetime) -> None:
    with engine.begin() as connection:
        roll_windows(connection, now)


@pytest.fixture(scope="module")
def events() -> list[Event]:
    return cdnow_events()


def test_cdnow_traits_match_a_python_recomputation(engine: Engine, tmp_path: Path, events: list[Event]) -> None:
    assert len({e.customer_id for e in events}) > 500  # a real spread of customers
    import_customers(engine, write_customers(tmp_path, events), clock=FixedClock(IMPORTED_AT))
    as_of = datetime(1997, 6, 30, 12, tzinfo=timezone.utc)
    roll(engine, as_of)

    report = import_events(engine, write_events_csv(tmp_path / "events.csv", events))

    assert (report.inserted, report.rejected) == (len(events), 0)
    assert_same(stored_traits(engine), expected_traits(events, as_of))

    # forward, across many window edges; then backwards, which recomputes everything
    for moment in (datetime(1997, 9, 15, tzinfo=timezone.utc), datetime(1997, 3, 1, tzinfo=timezone.utc)):
        roll(engine, moment)
        assert_same(stored_traits(engine), expected_traits(events, moment))
        with engine.connect() as connection:
            assert windows_as_of(connection) == moment


def test_two_imports_and_rolls_equal_a_full_recomputation(
    engine: Engine, tmp_path: Path, events: list[Event]
) -> None:
    # File order is by customer, so each half holds events on both sides of every as_of.
    half = len(events) // 2
    import_customers(engine, write_customers(tmp_path, events), clock=FixedClock(IMPORTED_AT))
    first_as_of = datetime(1997, 4, 1, tzinfo=timezone.utc)
    final_as_of = datetime(1997, 5, 20, 6, tzinfo=timezone.utc)
    roll(engine, first_as_of)
    import_events(engine, write_events_jsonl(tmp_path / "part1.jsonl", events[:half]))
    roll(engine, datetime(1997, 4, 20, tzinfo=timezone.utc))
    import_events(engine, write_events_parquet(tmp_path / "part2.parquet", events[half:]))
    roll(engine, final_as_of)
    incremental = stored_traits(engine)

    with engine.begin() as connection:
        recompute_all(connection, final_as_of)
    recomputed = stored_traits(engine)

    assert_same(incremental, recomputed)
    assert_same(recomputed, expected_traits(events, final_as_of))
    assert any(row["purchases_30d"] for row in recomputed.values())  # the windows are not empty


def test_windows_wait_for_the_first_roll(engine: Engine, tmp_path: Path, events: list[Event]) -> None:
    sample = events[:300]
    import_customers(engine, write_customers(tmp_path, sample), clock=FixedClock(IMPORTED_AT))
    import_events(engine, write_events_csv(tmp_path / "events.csv", sample))

    before = stored_traits(engine)
    assert all(row[name] == 0 for row in before.values() for name in WINDOW_FIELDS)
    assert sum(row["purchase_count"] for row in before.values()) == sum(e.type == "purchase" for e in sample)

    as_of = datetime(1997, 2, 15, tzinfo=timezone.utc)
    roll(engine, as_of)
    assert_same(stored_traits(engine), expected_traits(sample, as_of))
    with engine.connect() as connection:
        stored = connection.execute(text("SELECT value FROM settings WHERE key = :k"), {"k": AS_OF_KEY}).scalar_one()
    assert datetime.fromisoformat(stored) == as_of


def test_rolling_recomputes_only_customers_crossing_an_edge(engine: Engine, tmp_path: Path) -> None:
    as_of = datetime(2024, 3, 1, tzinfo=timezone.utc)
    story = [
        Event("a1", "A", "purchase", as_of - timedelta(days=29), 10.0),  # leaves the 30d window
        Event("b1", "B", "purchase", as_of - timedelta(days=60), 20.0),  # stays in the 90d window
        Event("c1", "C", "purchase", as_of + timedelta(days=1), 30.0),  # after as_of: enters later
        Event("d1", "D", "purchase", as_of - timedelta(days=89, hours=12), 40.0),  # leaves the 90d window
    ]
    import_customers(engine, write_customers(tmp_path, story), clock=FixedClock(as_of))
    roll(engine, as_of)
    import_events(engine, write_events_csv(tmp_path / "events.csv", story))
    assert_same(stored_traits(engine), expected_traits(story, as_of))
    # Tamper with B, whose windows cannot change in the next two days: if the roll
    # recomputed everyone, the tampering would disappear.
    with engine.begin() as connection:
        connection.execute(update(schema.traits).where(schema.traits.c.customer_id == "B").values(purchases_90d=99))

    later = as_of + timedelta(days=2)
    roll(engine, later)

    after = stored_traits(engine)
    assert after["B"]["purchases_90d"] == 99
    assert (after["A"]["purchases_30d"], after["A"]["purchases_90d"]) == (0, 1)
    assert (after["C"]["purchases_30d"], after["C"]["revenue_30d"]) == (1, 30.0)
    assert (after["D"]["purchases_90d"], after["D"]["revenue_90d"]) == (0, 0.0)
    expected = expected_traits(story, later)
    del expected["B"], after["B"]
    assert_same(after, expected)


def test_new_events_count_in_the_windows_of_the_current_as_of(engine: Engine, tmp_path: Path) -> None:
    as_of = datetime(2024, 3, 1, tzinfo=timezone.utc)
    old = [Event("x1", "X", "purchase", as_of - timedelta(days=40), 5.0)]
    import_customers(engine, write_customers(tmp_path, old), clock=FixedClock(as_of))
    roll(engine, as_of)
    import_events(engine, write_events_csv(tmp_path / "old.csv", old))
    new = [
        Event("x2", "X", "purchase", as_of - timedelta(days=3), 7.5),
        Event("x3", "X", "purchase", as_of, 1.0),  # the window's closed end
        Event("x4", "X", "purchase", as_of + timedelta(seconds=1), 100.0),  # not yet
        Event("x5", "X", "view", as_of - timedelta(days=1), None),
    ]

    import_events(engine, write_events_csv(tmp_path / "new.csv", new))

    traits = stored_traits(engine)["X"]
    assert (traits["purchases_30d"], traits["revenue_30d"]) == (2, 8.5)
    assert (traits["purchases_90d"], traits["revenue_90d"]) == (3, 13.5)
    assert traits["purchase_count"] == 4 and traits["lifetime_spend"] == pytest.approx(113.5)
    assert traits["first_purchase_at"] == as_of - timedelta(days=40)
    assert traits["last_purchase_at"] == traits["last_event_at"] == as_of + timedelta(seconds=1)
    assert_same(stored_traits(engine), expected_traits(old + new, as_of))
