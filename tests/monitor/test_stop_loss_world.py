"""The stop-loss through real cycles in the simulated Hillstrom world: a spike stops the agent, an A/A run does not.

Real cycles, the dispatcher, the world's outcome events imported hour by hour
(:func:`legato.learn.simulation.simulate`), on a sample of the Hillstrom customers so a
simulated day takes a second or two.
"""

from __future__ import annotations

from datetime import timedelta
from importlib.resources import files
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from legato.audience.fields import declared_types
from legato.clock import FixedClock
from legato.demo import START, demo_customers, hillstrom_table
from legato.deliver.dispatch import transports
from legato.learn.simulation import Day, simulate
from legato.learn.simulator import Fault, HillstromWorld
from legato.monitor.alerts import list_alerts
from legato.playbook.models import Playbook
from legato.store.ingest import import_customers, import_events
from legato.store.schema import agents, review_items
from legato.validation import parse_playbook
from tests.monitor.alert_receiver import SlackReceiver

CUSTOMERS = 4000
AGENT = "winback_email"
RULE = "      - {metric: unsubscribe_rate, max: 0.003, min_sends: 1000, demote_to: 0}"


def world_playbook(alerts: str = "") -> Playbook:
    """The example playbook, its win-back agent e-mailing every customer it may, every day, at stage 3 (``alerts``: a section added)."""
    text = files("legato.playbook").joinpath("example/playbook.yaml").read_text(encoding="utf-8")
    for old, new in (
        ("      - {metric: unsubscribe_rate, max: 0.01, min_sends: 500}", RULE),
        ("    trust_stage: 2\n", "    trust_stage: 3\n"),
        ("    policy: {name: lin_ts, params: {alpha: 0.5}}", "    policy: {name: uniform_random}"),
        ("      do_nothing: true\n    policy: {name: uniform_random}", "      do_nothing: false\n    policy: {name: uniform_random}"),
        ("    budget: {daily_sends: 6000, daily_offer_cost: 9000}\n", ""),
        ("""    audience: 'lifecycle_stage in ("cooling", "lapsed")'""", """    audience: 'history >= 0'"""),
        ("  frequency_caps:\n    - {channel: email, max: 1, days: 3, on_block: drop}\n    - {channel: any, max: 3, days: 14, on_block: drop}\n",
         "  frequency_caps: []\n"),
    ):
        assert old in text, old
        text = text.replace(old, new)
    return parse_playbook(text + alerts)


def build_world(engine: Engine, playbook: Playbook, seed: int, faults: list[Fault]) -> HillstromWorld:
    rows = hillstrom_table()
    rows = rows.take(np.random.default_rng(seed).choice(rows.num_rows, CUSTOMERS, replace=False))
    customers, events = demo_customers(rows, START)
    clock = FixedClock(START)
    import_customers(engine, customers, attribute_types=declared_types(playbook.attributes), clock=clock)
    import_events(engine, events, clock=clock)
    world = HillstromWorld.fit(rows, customers.column("id").to_numpy(zero_copy_only=False), seed=seed)
    world.faults.extend(faults)
    return world


def run(engine: Engine, tmp_path: Path, days: int, seed: int, faults: list[Fault], alerts: str = "") -> list[Day]:
    """The simulated days; ``alerts`` (an ``alerts:`` section) sends the monitors' alerts after each cycle."""
    playbook = world_playbook(alerts)
    world = build_world(engine, playbook, seed, faults)
    arms = {"mens_collection": "mens", "womens_collection": "womens"}
    return simulate(engine, playbook, world, arms, START, days, transports(playbook, tmp_path), alerts=bool(alerts))


@pytest.mark.slow
def test_a_four_fold_unsubscribe_spike_from_day_ten_pauses_and_demotes_within_one_cycle(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spike = Fault("unsubscribe_spike", START + timedelta(days=9), 4.0)  # day 10's sends on
    with SlackReceiver() as slack:
        monkeypatch.setenv("ALERTS_URL", slack.url())
        history = run(engine, tmp_path, 13, seed=3, faults=[spike], alerts="alerts:\n  destinations:\n    - {kind: slack, url_env: ALERTS_URL}\n")
    # Exactly one alert arrived at the local webhook receiver, sent by the cycle that paused the agent.
    [post] = slack.posts
    assert post["json"]["blocks"][0]["text"]["text"] == f"Legato alert: stop-loss on agent {AGENT}"
    by_day = {d.number: d.cycle.agents.get(AGENT) for d in history}
    # Healthy before: every cycle up to day 10 ran at stage 3 without a breach.
    assert all(by_day[n] is not None and by_day[n].stop_loss == [] and by_day[n].stage == 3 for n in range(1, 11))
    # The day-11 cycle is the first to see spiked sends, and already the rule's minimum sample of them.
    assert history[9].sent[AGENT] >= 1000
    stopped = [n for n, r in by_day.items() if r is not None and r.paused]
    assert len(stopped) == 1 and stopped[0] in (11, 12)  # within one cycle of the minimum sample being reached
    report = by_day[stopped[0]]
    assert report is not None and report.stage == 0
    [breach] = report.stop_loss
    assert breach.metric == "unsubscribe_rate" and breach.first_day >= history[9].cycle.at.date().isoformat() and breach.sends >= 1000
    assert breach.value > 0.003 and breach.statistic >= breach.threshold
    assert report.audience == 0 and history[stopped[0] - 1].sent[AGENT] == 0  # it decided and sent nothing that cycle
    assert all(by_day[n] is None for n in range(stopped[0] + 1, 14))  # and later cycles leave it alone: paused
    with engine.connect() as c:
        assert c.execute(sa.select(agents.c.trust_stage, agents.c.status).where(agents.c.id == AGENT)).one() == (0, "paused")
        assert [a.incident for a in list_alerts(c)] == [f"stop_loss:{AGENT}"]  # one incident, one alert
        reasons = c.execute(sa.select(review_items.c.reason).where(review_items.c.kind == "finding")).scalars().all()
    assert reasons == ["stop_loss"]


@pytest.mark.slow
def test_a_a_no_fault_no_breach_over_fourteen_cycles(engine: Engine, tmp_path: Path) -> None:
    history = run(engine, tmp_path, 14, seed=5, faults=[])
    reports = [d.cycle.agents[AGENT] for d in history]
    assert sum(d.sent[AGENT] for d in history) > 14 * 3000
    assert all(r.stop_loss == [] and not r.paused and r.stage == 3 for r in reports)
    with engine.connect() as c:
        assert list_alerts(c) == []
