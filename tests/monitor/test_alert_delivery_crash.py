"""`legato alerts deliver` killed (SIGKILL, a real process) at the worst point: the receiver took
the alert and the deliverer never heard back. The alert is not lost: the next run sends it again
with the same Idempotency-Key (so a receiver that deduplicates shows it once), and after that
no run sends it again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import Engine

import legato
from legato.monitor.alert_delivery import deliver_alerts
from legato.store.schema import alert_deliveries
from legato.validation import parse_playbook
from tests.monitor.alert_receiver import SlackReceiver
from tests.monitor.test_alert_delivery import AT, raise_breach, rows
from tests.world import PLAYBOOK

ALERTS = "alerts:\n  destinations:\n    - {kind: slack, url_env: ALERTS_URL}\n"


def text() -> str:
    return PLAYBOOK.replace("STAGE", "3").replace("HOLDOUT", "0").replace("BUDGET", "{}") + ALERTS


def deliver(folder: Path, database_url: str, url: str) -> subprocess.Popen[str]:
    """``legato alerts deliver`` as cron runs it, in a process of its own."""
    env = {**os.environ, "PYTHONPATH": str(Path(legato.__file__).resolve().parents[1]), "ALERTS_URL": url}
    return subprocess.Popen(
        [sys.executable, "-c", "from legato.cli.app import main; main()", "alerts", "deliver", "--playbook", str(folder / "playbook.yaml"),
         "--database", database_url, "--at", AT.isoformat(), "--json"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def test_killed_after_the_receiver_took_the_alert_it_is_sent_again_with_the_same_key_and_then_never(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    (tmp_path / "playbook.yaml").write_text(text(), encoding="utf-8")
    alert_id = raise_breach(engine)
    key = f"legato-alert-{alert_id}-opened"
    with SlackReceiver() as slack:
        slack.hold.clear()  # take the POST, answer nothing: the deliverer waits for the answer
        child = deliver(tmp_path, database_url, slack.url())
        try:
            assert slack.arrived.wait(60), child.stderr.read() if child.poll() is not None else "no POST arrived"
            child.send_signal(signal.SIGKILL)
            child.wait(30)
        finally:
            if child.poll() is None:
                child.kill()
        assert rows(engine) == [("opened", "log", "sent", 1), ("opened", "slack", "sending", 1)]
        slack.hold.set()

        # The rerun: the claim's holder is a dead process of this host, so the alert is in doubt at once.
        again = deliver(tmp_path, database_url, slack.url())
        out, err = again.communicate(timeout=120)
        assert again.returncode == 0, err
        assert '"slack": 1' in out and "sending again" in err
        assert slack.keys == {key: 2}  # twice, under one key: once for a receiver that deduplicates
        assert rows(engine) == [("opened", "log", "sent", 1), ("opened", "slack", "sent", 2)]
        for _ in range(2):  # later runs send nothing
            later = deliver(tmp_path, database_url, slack.url())
            later.communicate(timeout=120)
            assert later.returncode == 0
        assert slack.keys == {key: 2}


def test_a_claim_of_a_process_elsewhere_is_sent_again_only_after_its_lease(engine: Engine) -> None:
    pb = parse_playbook(text())
    alert_id = raise_breach(engine)
    with SlackReceiver() as slack:
        env = {"ALERTS_URL": slack.url()}
        deliver_alerts(engine, pb, AT, environ=env)
        # As a deliverer on another host leaves a row it was killed sending (its pid cannot be checked from here).
        with engine.begin() as c:
            c.execute(sa.update(alert_deliveries).where(alert_deliveries.c.destination == "slack")
                      .values(status="sending", claimed_by="elsewhere:1:abc", claimed_until=AT + timedelta(minutes=3)))
        assert deliver_alerts(engine, pb, AT + timedelta(minutes=2), environ=env).sent == {}
        assert deliver_alerts(engine, pb, AT + timedelta(minutes=3), environ=env).sent == {"slack": 1}
        assert slack.keys == {f"legato-alert-{alert_id}-opened": 2}
