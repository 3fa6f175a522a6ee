"""The reports a marketer reads: every outcome shows up, broken down and over a period; no data is said in words."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from sqlalchemy import Engine
from typer.testing import CliRunner

from legato.cli.app import app
from legato.service.reports import outcome_report, period
from legato.validation import parse_playbook

from tests.world import AT, PLAYBOOK, load_customers

Write = Callable[..., None]
runner = CliRunner()


def test_report_lift_says_there_is_nothing_to_measure_before_any_outcome(engine: Engine, write_decisions: Write, database_url: str) -> None:
    write_decisions("sent", 40)
    write_decisions("holdout", 40)
    shown = runner.invoke(app, ["report", "lift", "--agent", "mailer", "--database", database_url])
    assert shown.exit_code == 0, shown.output
    text = " ".join(shown.output.split())
    assert "mailer vs its holdout: nothing to measure yet: 80 settled decisions for 80 customers, but no outcome" in text
    assert "+0.0000" not in text and "+0.00 pp" not in text
    data = json.loads(runner.invoke(app, ["report", "lift", "--agent", "mailer", "--database", database_url, "--json"]).stdout)
    assert data["lift"] == [] and "no outcome" in data["groups"][0]["nothing_yet"]


def test_report_outcomes_shows_opens_and_clicks_by_creative_and_channel_over_a_period(engine: Engine, write_decisions: Write, database_url: str) -> None:
    write_decisions("sent", 40, opened=[i < 20 for i in range(40)], clicked=[i < 5 for i in range(40)], purchased=[i < 2 for i in range(40)], revenue=[25.0 if i < 2 else 0.0 for i in range(40)])
    write_decisions("holdout", 30, visited=[i < 3 for i in range(30)])
    write_decisions("sent", 10, opened=True, decided_at=AT + timedelta(days=3))  # outside the period asked for
    args = ["report", "outcomes", "--agent", "mailer", "--by", "creative", "--by", "channel", "--since", "2024-03-04", "--until", "2024-03-05", "--database", database_url]
    data = json.loads(runner.invoke(app, [*args, "--json"]).stdout)
    rows = {(r["creative"], r["channel"]): r for r in data["outcomes"]}
    assert set(rows) == {("hello", "email"), (None, None)}
    mail = rows[("hello", "email")]
    assert (mail["sent"], mail["opened"], mail["clicked"], mail["purchased"], mail["revenue"]) == (40, 20, 5, 2, 50.0)
    assert (rows[(None, None)]["visited"], rows[(None, None)]["sent"]) == (3, 0)
    shown = runner.invoke(app, args)
    assert shown.exit_code == 0, shown.output
    assert "mailer · hello · email" in shown.output and "sent 40  opens 20  clicks 5" in shown.output
    assert max(len(line) for line in shown.output.splitlines()) <= 80
    lifted = runner.invoke(app, ["report", "lift", "--agent", "mailer", "--database", database_url])
    assert lifted.exit_code == 0 and "open_rate" in lifted.output and "click_rate" in lifted.output
    assert max(len(line) for line in lifted.output.splitlines()) <= 80 and "…" not in lifted.output
    assert period("2024-03-04", "2024-03-05") == (AT.replace(hour=0), AT.replace(hour=0) + timedelta(days=2))  # a date alone: that whole day


def test_lift_and_outcomes_break_down_by_segment(engine: Engine, write_decisions: Write) -> None:
    load_customers(engine, n=40)  # every 4th bronze
    pb = parse_playbook(
        PLAYBOOK.replace("STAGE", "2").replace("HOLDOUT", "0").replace("BUDGET", "{}").replace("lifecycle:", 'segments:\n  bronze: \'tier = "bronze"\'\nlifecycle:')
    )
    ids = [f"c{i:03d}" for i in range(40)]
    write_decisions("sent", 40, customer_id=ids, opened=[i % 8 == 3 for i in range(40)])
    rows = outcome_report(engine, now=AT, agent_id="mailer", by=("segment",), playbook=pb)
    assert [(r.group, r.customers, r.opened) for r in rows] == [({"segment": "bronze"}, 10, 5)]
