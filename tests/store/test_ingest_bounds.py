"""Hostile or broken import files: huge numbers are row errors, a huge cell is named, never echoed."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from legato.clock import FixedClock
from legato.store import schema
from legato.store.ingest import ImportFileError, import_customers, import_events

T1 = datetime(2024, 3, 1, 12, 0, tzinfo=timezone.utc)


def _seed(engine: Engine, tmp_path: Path) -> None:
    (tmp_path / "seed.csv").write_text("id\nC1\n", encoding="utf-8")
    import_customers(engine, tmp_path / "seed.csv", clock=FixedClock(T1))


def test_revenue_too_large_for_the_models_is_a_row_error(engine: Engine, tmp_path: Path) -> None:
    _seed(engine, tmp_path)
    path = tmp_path / "events.csv"
    path.write_text(
        "id,customer_id,type,occurred_at,revenue\n"
        "e1,C1,purchase,2024-03-01T09:00:00Z,12.5\n"
        "e2,C1,purchase,2024-03-01T09:00:00Z,1e200\n"
        "e3,C1,purchase,2024-03-01T09:00:00Z,2500000000\n"
        "e4,C1,purchase,2024-03-01T09:00:00Z,inf\n",
        encoding="utf-8",
    )
    report = import_events(engine, path)
    assert [(e.row, e.column) for e in report.errors] == [(3, "revenue"), (4, "revenue"), (5, "revenue")]
    assert "more than 1,000,000,000 for one event" in report.errors[0].reason
    with engine.connect() as c:
        assert c.execute(select(func.max(schema.events.c.revenue))).scalar_one() == 12.5


def test_a_declared_number_too_large_is_a_row_error(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "customers.csv"
    path.write_text("id,score\nC1,3\nC2,1e300\n", encoding="utf-8")
    report = import_customers(engine, path, attribute_types={"score": "number"}, clock=FixedClock(T1))
    assert [(e.row, e.column) for e in report.errors] == [(3, "score")]
    assert "too large" in report.errors[0].reason


@pytest.mark.parametrize("size", [2 * 1024 * 1024, 20 * 1024 * 1024])
def test_a_field_over_a_megabyte_is_reported_by_row_without_its_data(engine: Engine, tmp_path: Path, size: int) -> None:
    _seed(engine, tmp_path)
    path = tmp_path / "events.csv"
    path.write_text(
        "id,customer_id,type,occurred_at,revenue,note\n"
        "e1,C1,purchase,2024-03-01T09:00:00Z,1,ok\n"
        f'e2,C1,purchase,2024-03-01T09:00:00Z,1,"{"Z" * size}"\n',
        encoding="utf-8",
    )
    with pytest.raises(ImportFileError) as raised:
        import_events(engine, path)
    message = str(raised.value) + (raised.value.hint or "")
    assert f"row 3, column note: {size:,} characters" in message
    assert "ZZZZ" not in message
    with engine.connect() as c:
        assert c.execute(select(func.count()).select_from(schema.events)).scalar_one() == 0


def test_a_broken_row_is_named_by_line_and_its_data_not_echoed(engine: Engine, tmp_path: Path) -> None:
    _seed(engine, tmp_path)
    path = tmp_path / "events.csv"
    secret = "4111111111111111-" * 20
    path.write_text(
        "id,customer_id,type,occurred_at,revenue\n"
        "e1,C1,purchase,2024-03-01T09:00:00Z,1\n"
        f"{secret}\n",
        encoding="utf-8",
    )
    with pytest.raises(ImportFileError) as raised:
        import_events(engine, path)
    assert "line 3" in str(raised.value) and "4111" not in str(raised.value)
