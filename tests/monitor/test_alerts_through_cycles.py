"""Exactly one alert at a local webhook receiver for a stop-loss incident, through real cycles
over several days (the breach judged again each day), and one follow-up once a person resumes."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pytest
from sqlalchemy import Engine

from legato.clock import FixedClock
from legato.cycle import run_cycle
from legato.deliver.dispatch import dispatch_due, transports
from legato.monitor.stop_loss import check_stop_loss
from legato.service import agents as agent_service
from legato.service import alerts as alert_service
from legato.store.ingest import import_events
from legato.validation import parse_playbook
from tests.monitor.alert_receiver import SlackReceiver
from tests.world import AT, PLAYBOOK, load_customers

RULE = "    stop_loss: [{metric: unsubscribe_rate, max: 0.02, min_sends: 10, demote_to: 1}]\n"
ALERTS = "alerts:\n  destinations:\n    - {kind: slack, url_env: ALERTS_URL}\n"


def test_a_stop_loss_incident_is_one_alert_over_days_of_cycles_and_a_resume_one_follow_up(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = PLAYBOOK.replace("STAGE", "3").replace("HOLDOUT", "0").replace("BUDGET", "{}").replace("    budget: ", RULE + "    budget: ", 1)
    pb = parse_playbook(text + ALERTS)
    load_customers(engine, 60)
    with SlackReceiver() as slack:
        monkeypatch.setenv("ALERTS_URL", slack.url())
        day = lambda n: AT + timedelta(days=n - 1)  # noqa: E731
        run_cycle(engine, pb, FixedClock(day(1)), transports(pb, tmp_path))
        dispatch_due(engine, pb, FixedClock(day(1) + timedelta(hours=2)), transports(pb, tmp_path))
        sent = [json.loads(line)["customer_id"] for line in (tmp_path / "out" / "email.jsonl").read_text().splitlines()]
        assert len(sent) >= 20
        leaving = sent[: len(sent) // 2]  # half of them unsubscribe that afternoon: far over 2%
        import_events(engine, pa.table({"id": [f"u-{c}" for c in leaving], "customer_id": leaving, "type": ["unsubscribe"] * len(leaving),
                                        "occurred_at": [(day(1) + timedelta(hours=5)).isoformat()] * len(leaving)}), clock=FixedClock(day(1) + timedelta(hours=6)))
        assert slack.posts == []

        report = run_cycle(engine, pb, FixedClock(day(2)), transports(pb, tmp_path))
        assert report.agents["mailer"].paused and report.agents["mailer"].stage == 1
        [post] = slack.wait_for(1)  # delivered at the end of the cycle that paused the agent
        assert post["json"]["blocks"][0]["text"]["text"] == "Legato alert: stop-loss on agent mailer"
        for n in (3, 4, 5):
            # The same breach judged again each day (the stop-loss itself), and the day's cycle.
            with engine.begin() as c:
                assert check_stop_loss(c, pb, pb.agents[0], 1, day(n)).paused
            run_cycle(engine, pb, FixedClock(day(n)), transports(pb, tmp_path))
        assert len(slack.posts) == 1
        [listed] = alert_service.listing(engine)
        assert (listed["status"], listed["repeats"]) == ("open", 3)

        agent_service.resume(engine, "mailer", "ana", now=day(5) + timedelta(hours=9), reason="list cleaned; the bad segment removed")
        run_cycle(engine, pb, FixedClock(day(6)), transports(pb, tmp_path))
        posts = slack.wait_for(2)
        run_cycle(engine, pb, FixedClock(day(7)), transports(pb, tmp_path))
        assert len(slack.posts) == 2
        assert [p["key"] for p in posts] == [f"legato-alert-{listed['id']}-opened", f"legato-alert-{listed['id']}-cleared"]
        assert posts[1]["json"]["text"].startswith("Resolved: stop-loss incident of agent mailer cleared: Cleared by ana")
    [listed] = alert_service.listing(engine)
    assert listed["status"] == "cleared" and {(d["phase"], d["destination"], d["status"]) for d in listed["deliveries"]} == {
        ("opened", "log", "sent"), ("opened", "slack", "sent"), ("cleared", "log", "sent"), ("cleared", "slack", "sent")}
