"""The faces of alerts: `legato worker` delivers them in its loop; `legato alerts list|deliver`."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from legato.cli.app import app
from legato.clock import FixedClock
from legato.deliver.dispatch import transports
from legato.service.worker import Worker
from tests.monitor.alert_receiver import SlackReceiver
from tests.monitor.test_alert_delivery import AT, INCIDENT, playbook, raise_breach

runner = CliRunner()
SLACK = "  destinations:\n    - {kind: slack, url_env: ALERTS_URL}\n"


def test_the_worker_delivers_alerts_in_its_loop(engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pb = playbook(alerts=SLACK)
    raise_breach(engine)
    with SlackReceiver() as slack:
        monkeypatch.setenv("ALERTS_URL", slack.url())
        running = Worker(engine, pb, transports(pb, tmp_path), clock=FixedClock(AT), poll=0.05)
        thread = threading.Thread(target=running.run)
        thread.start()
        try:
            [post] = slack.wait_for(1)
        finally:
            running.stop()
            thread.join(30)
        assert post["key"].endswith("-opened") and len(slack.posts) == 1


def test_legato_alerts_list_and_deliver(engine: Engine, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.world import PLAYBOOK

    path = tmp_path / "playbook.yaml"
    path.write_text(PLAYBOOK.replace("STAGE", "3").replace("HOLDOUT", "0").replace("BUDGET", "{}") + "alerts:\n" + SLACK, encoding="utf-8")
    assert "no alert has been raised" in runner.invoke(app, ["alerts", "list", "--database", database_url]).output
    raise_breach(engine)
    monkeypatch.delenv("ALERTS_URL", raising=False)
    done = runner.invoke(app, ["alerts", "deliver", "--playbook", str(path), "--database", database_url, "--at", AT.isoformat()])
    assert done.exit_code == 0, done.output
    assert "sent       1  log" in done.output and "retry      1  slack" in done.output
    listed = runner.invoke(app, ["alerts", "list", "--database", database_url])
    words = " ".join(listed.output.split())  # however wide the terminal wraps it
    assert listed.exit_code == 0 and f"#1 {INCIDENT} (open) opened 2024-03-05T09:00" in words
    assert "opened to slack: pending, 1 attempt(s), next try 2024-03-05T09:01" in words
    assert "last error: alerts.destinations[0].url: the environment variable ALERTS_URL is not set or empty" in words
    with SlackReceiver() as slack:
        monkeypatch.setenv("ALERTS_URL", slack.url())
        later = runner.invoke(app, ["alerts", "deliver", "--playbook", str(path), "--database", database_url, "--at", "2024-03-05T09:02:00+00:00", "--json"])
        assert json.loads(later.output) == {"sent": {"slack": 1}, "retry": {}, "failed": {}}
    as_json = json.loads(runner.invoke(app, ["alerts", "list", "--database", database_url, "--status", "open", "--json"]).output)
    assert [d["status"] for d in as_json["alerts"][0]["deliveries"]] == ["sent", "sent"]
    wrong = runner.invoke(app, ["alerts", "list", "--database", database_url, "--status", "closed"])
    assert wrong.exit_code != 0 and "no alert status 'closed'" in wrong.output and "open, cleared" in wrong.output

