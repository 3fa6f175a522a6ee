"""`legato segment` of a lifecycle stage counts its members: stages are ordered, the first that holds wins."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import Engine
from typer.testing import CliRunner

from legato.cli.app import app
from legato.service.reports import segment
from legato.validation import parse_playbook

from tests.world import AT, PLAYBOOK, load_customers

STAGES = PLAYBOOK.replace("STAGE", "2").replace("HOLDOUT", "0").replace("BUDGET", "{}").replace(
    '  - {stage: any, when: "true"}',
    '  - {stage: golden, when: \'tier = "gold"\'}\n  - {stage: young, when: "true"}\n  - {stage: any, when: "true"}',
)


def test_a_stage_counts_its_members_and_names_the_earlier_stages_that_took_the_rest(engine: Engine) -> None:
    load_customers(engine, n=40)  # every 4th customer is bronze, the rest gold
    pb = parse_playbook(STAGES)
    golden = segment(engine, pb, "golden", at=AT)
    assert (golden.size, golden.total, golden.taken_by_earlier) == (30, 40, {})
    young = segment(engine, pb, "young", at=AT)
    # "true" holds for all 40, but golden, earlier, took the 30 gold customers.
    assert (young.size, young.when_holds, young.taken_by_earlier) == (10, 40, {"golden": 30})
    assert {row["lifecycle_stage"] for row in young.sample} == {"young"}
    last = segment(engine, pb, "any", at=AT)
    assert (last.size, last.taken_by_earlier) == (0, {"golden": 30, "young": 10})


def test_the_command_says_which_stage_took_the_rest(database_url: str, tmp_path: Path) -> None:
    from legato.store.db import connect

    load_customers(connect(database_url), n=40)
    path = tmp_path / "playbook.yaml"
    path.write_text(STAGES, encoding="utf-8")
    runner = CliRunner()
    shown = runner.invoke(app, ["segment", str(path), "young", "--database", database_url, "--at", AT.isoformat()])
    assert shown.exit_code == 0, shown.output
    assert "lifecycle stage young: 10 of 40 customers (25.0%)" in shown.output
    assert "its condition holds for 40; earlier stages took golden 30" in shown.output
    data = json.loads(runner.invoke(app, ["segment", str(path), "young", "--database", database_url, "--at", AT.isoformat(), "--json"]).stdout)
    assert (data["size"], data["when_holds"], data["taken_by_earlier_stages"]) == (10, 40, {"golden": 30})
