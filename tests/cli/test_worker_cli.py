"""`legato worker` and `legato dispatch --playbook` on the command line: a bad schedule is named at
its line before anything starts; dispatch sends what is due at a simulated time, once, and exits."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from legato.cli.app import app
from legato.clock import FixedClock
from legato.cycle import run_cycle
from legato.deliver.dispatch import transports
from legato.store.db import connect
from legato.validation import parse_playbook
from tests.world import AT, PLAYBOOK, load_customers

runner = CliRunner()


def _text(schedule: str) -> str:
    text = PLAYBOOK.replace("STAGE", "3").replace("HOLDOUT", "0").replace("BUDGET", "{}")
    return text.replace("    holdout: 0\n", f"    holdout: 0\n    schedule: {schedule}\n", 1)


def test_a_worker_with_a_bad_schedule_names_its_line_and_starts_nothing(tmp_path: Path) -> None:
    path = tmp_path / "playbook.yaml"
    path.write_text(_text("every 6 weeks"), encoding="utf-8")
    line = next(n for n, text in enumerate(path.read_text().splitlines(), 1) if "schedule:" in text)
    result = runner.invoke(app, ["worker", "--database", f"sqlite:///{tmp_path / 'legato.db'}", "--playbook", str(path)])
    assert result.exit_code == 2, result.output
    assert f"{path}:{line}:" in result.output and "agents[0].schedule" in result.output and "'weeks' is not a unit of `every`" in result.output
    assert "Traceback" not in result.output


def test_dispatch_with_the_playbook_option_sends_what_is_due_at_the_time_given_once(tmp_path: Path) -> None:
    path = tmp_path / "playbook.yaml"
    path.write_text(_text("daily 08:00"), encoding="utf-8")
    url = f"sqlite:///{tmp_path / 'legato.db'}"
    engine = connect(url)
    load_customers(engine)
    playbook = parse_playbook(path.read_text())
    run_cycle(engine, playbook, FixedClock(AT), transports(playbook, tmp_path))  # decided at 08:00, due at 09:00
    engine.dispose()
    early = runner.invoke(app, ["dispatch", "--playbook", str(path), "--database", url, "--at", AT.isoformat(), "--json"])
    assert early.exit_code == 0, early.output
    assert json.loads(early.stdout)["sent"] == 0
    due = runner.invoke(app, ["dispatch", "--playbook", str(path), "--database", url, "--at", (AT + timedelta(hours=1)).isoformat(), "--json"])
    report = json.loads(due.stdout)
    assert report["sent"] == 24 and report["by_channel"] == {"email": {"sent": 24, "retry": 0, "dead": 0}}
    again = runner.invoke(app, ["dispatch", "--playbook", str(path), "--database", url, "--at", (AT + timedelta(hours=1)).isoformat(), "--json"])
    assert json.loads(again.stdout)["sent"] == 0
    assert len((tmp_path / "out/email.jsonl").read_text(encoding="utf-8").splitlines()) == 24


def test_without_a_playbook_worker_and_dispatch_name_the_missing_upload_and_dispatch_sends_with_the_newest_upload(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datetime import datetime, timezone

    from legato.service import playbooks

    url = f"sqlite:///{tmp_path / 'legato.db'}"
    engine = connect(url)
    for command in ("worker", "dispatch"):
        refused = runner.invoke(app, [command, "--database", url])
        assert refused.exit_code == 2, refused.output
        assert "none was uploaded to this store" in refused.output and "POST /v1/playbooks" in refused.output
        assert "Traceback" not in refused.output
    load_customers(engine)
    text = _text("daily 08:00")
    playbooks.upload(engine, text, by="ana", now=datetime.now(timezone.utc))
    playbook = parse_playbook(text)
    run_cycle(engine, playbook, FixedClock(AT), transports(playbook, tmp_path))
    engine.dispose()
    monkeypatch.chdir(tmp_path)  # an uploaded playbook's file channel writes where the command runs
    due = runner.invoke(app, ["dispatch", "--database", url, "--at", (AT + timedelta(hours=1)).isoformat(), "--json"])
    assert due.exit_code == 0, due.output
    assert json.loads(due.stdout)["sent"] == 24
    assert len((tmp_path / "out/email.jsonl").read_text(encoding="utf-8").splitlines()) == 24
