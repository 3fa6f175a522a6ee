"""The demo's day table and `review list` fit an 80-column terminal: no header is cut, no line is wider."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from rich.console import Console
from sqlalchemy import Engine
from typer.testing import CliRunner

from legato.cli import output
from legato.cli.review import review_app
from legato.clock import FixedClock
from legato.cycle import run_cycle
from legato.cycle.report import AgentReport, CycleReport
from legato.demo import DAY_COLUMNS, day_table
from legato.deliver.dispatch import DispatchReport, transports
from legato.learn.simulation import Day
from tests.world import AT, load_customers, playbook

WIDTH = 80


def _lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.splitlines()]


def test_the_demo_day_table_fits_80_columns_with_every_header_whole() -> None:
    agents = {
        name: AgentReport(name, 2, audience=64_000, holdout=6_400, nothing=12_345, queued=10_000, learned_from=63_999,
                          suppressed=Counter({"consent_missing:email": 23_456}))
        for name in ("winback_email", "welcome_email")  # the example playbook's agents
    }
    day = Day(12, CycleReport(1, datetime(2024, 3, 4, 9, tzinfo=UTC), agents, DispatchReport()), Counter({"winback_email": 54_321, "welcome_email": 9}))
    console = Console(width=WIDTH, record=True, color_system=None)
    table, _ = day_table(day)
    console.print(table)
    text = console.export_text()
    assert max(len(line) for line in _lines(text)) <= WIDTH, text
    assert "…" not in text, text
    header = next(line for line in _lines(text) if line.lstrip().startswith("agent"))
    assert header.split() == list(DAY_COLUMNS), text


def test_review_list_fits_80_columns_with_every_header_whole(engine: Engine, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    load_customers(engine, 40)
    pb = playbook(stage=0)
    run_cycle(engine, pb, FixedClock(AT), transports(pb, tmp_path))
    monkeypatch.setattr(output.console, "width", WIDTH)
    shown = CliRunner().invoke(review_app, ["list", "-d", database_url, "--limit", "5"])
    assert shown.exit_code == 0, shown.output
    table = [line for line in _lines(shown.output) if not line.startswith("next page:")]  # the hint is one copyable line
    assert max(len(line) for line in table) <= WIDTH, shown.output
    assert "…" not in shown.output, shown.output
    header = next(line for line in table if line.lstrip().startswith("item"))
    assert header.split() == ["item", "pri", "kind", "agent", "customer", "what", "reason", "due"], shown.output
    every = CliRunner().invoke(review_app, ["list", "-d", database_url, "--limit", "5", "--status", "all"])
    assert max(len(line) for line in _lines(every.output) if not line.startswith("next page:")) <= WIDTH, every.output
    assert "…" not in every.output and "status" in every.output, every.output
