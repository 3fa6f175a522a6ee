"""The anomaly detector: weekly patterns and small counts are not anomalies, a spike is; each is
recorded once with its range, queued as a finding and alerted, and the alert clears."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import sqlalchemy as sa
from sqlalchemy import Engine

from legato.monitor.alerts import list_alerts
from legato.monitor.anomaly import SeasonalRateDetector, detect_anomalies, recorded
from legato.playbook.models import Playbook
from legato.store.schema import agents, review_items


def stream(detector: SeasonalRateDetector, events: list[float], trials: list[float], first_weekday: int = 0) -> list[bool]:
    flags = []
    for i, (x, n) in enumerate(zip(events, trials, strict=True)):
        score = detector.score_one((first_weekday + i) % 7, x, n)
        flags.append(bool(score and score.anomaly))
        detector.learn_one((first_weekday + i) % 7, x, n)
    return flags


def test_a_strong_weekly_pattern_is_expected_not_an_anomaly() -> None:
    weekly = [1.0, 1.1, 1.1, 1.0, 0.9, 0.5, 0.4]  # weekends at half: a naive z-score flags every Saturday
    trials = [5000.0] * 70
    events = [round(5000 * 0.02 * weekly[i % 7]) for i in range(70)]
    assert not any(stream(SeasonalRateDetector(), events, trials))
    # The same Saturday rate on a Tuesday is an anomaly.
    detector = SeasonalRateDetector()
    stream(detector, events, trials)
    score = detector.score_one(1, 5000 * 0.02 * 0.4, 5000)
    assert score is not None and score.anomaly and score.observed < score.low


def test_small_counts_do_not_raise_alarms_that_their_size_cannot_support() -> None:
    rng = np.random.default_rng(3)
    trials = [60.0] * 70
    events = rng.binomial(60, 0.01, 70).astype(float).tolist()
    events[50] = 2.0  # two unsubscribes of 60 when 0.6 were expected: 3% looks like a fivefold spike
    assert not any(stream(SeasonalRateDetector(), events, trials))


def test_a_spike_and_a_drop_are_anomalies_with_their_expected_range() -> None:
    rng = np.random.default_rng(4)
    trials = [3000.0] * 40
    events = rng.binomial(3000, 0.05, 40).astype(float).tolist()
    events[30], events[35] = 450.0, 30.0  # 15% and 1% against 5%
    flags = stream(SeasonalRateDetector(), events, trials)
    assert [i for i, f in enumerate(flags) if f] == [30, 35]
    detector = SeasonalRateDetector()
    stream(detector, events[:30], trials[:30])
    score = detector.score_one(30 % 7, 450.0, 3000.0)
    assert score is not None and score.low < 0.05 < score.high < score.observed == 0.15 and score.z > 4


def test_nothing_is_scored_before_two_weeks() -> None:
    detector = SeasonalRateDetector()
    stream(detector, [10.0] * 13, [1000.0] * 13)
    assert detector.score_one(6, 500.0, 1000.0) is None


def four_weeks_then_a_spike(engine: Engine, cycle_at: datetime, write_decisions: Callable[..., None]) -> datetime:
    """The agent `mailer` with 28 days of 600 sends at 1 in 300 unsubscribing, then a day at 1 in 20; that day."""
    with engine.begin() as c:
        c.execute(sa.insert(agents).values(id="mailer", trust_stage=2, status="active", updated_at=cycle_at))
    for day in range(28):
        at = cycle_at + timedelta(days=day)
        write_decisions("sent", 2, decided_at=at, settled_at=at + timedelta(days=8), unsubscribed=True)
        write_decisions("sent", 598, decided_at=at, settled_at=at + timedelta(days=8))
    spike = cycle_at + timedelta(days=28)
    write_decisions("sent", 30, decided_at=spike, settled_at=spike + timedelta(days=8), unsubscribed=True)
    write_decisions("sent", 570, decided_at=spike, settled_at=spike + timedelta(days=8))
    return spike


def test_an_anomaly_is_recorded_once_queued_and_alerted_and_its_alert_clears(
    engine: Engine, cycle_at: datetime, make_playbook: Callable[..., Playbook], write_decisions: Callable[..., None]
) -> None:
    pb = make_playbook(stage=2)
    spike = four_weeks_then_a_spike(engine, cycle_at, write_decisions)
    now = spike + timedelta(days=1)  # the next cycle: the spike's day is the latest complete one
    with engine.begin() as c:
        [anomaly] = detect_anomalies(c, pb, pb.agents[0], now)
    assert (anomaly.series, anomaly.day, anomaly.score.observed) == ("unsubscribe_rate", spike.date(), 0.05)
    assert anomaly.score.low <= 2 / 600 <= anomaly.score.high < 0.05
    with engine.begin() as c:
        assert detect_anomalies(c, pb, pb.agents[0], now) == []  # the same day again: already recorded
        [row] = recorded(c, "mailer")
        items = c.execute(sa.select(review_items.c.id, review_items.c.reason, review_items.c.evidence).where(review_items.c.kind == "finding")).all()
        [alert] = list_alerts(c)
    assert (row["series"], row["day"], row["observed"]) == ("unsubscribe_rate", spike.date().isoformat(), 0.05)
    assert [(i.reason, i.evidence["series"]) for i in items] == [("anomaly", "unsubscribe_rate")] and row["review_item_id"] == items[0].id
    assert (alert.incident, alert.status, alert.repeats) == ("anomaly:mailer:unsubscribe_rate", "open", 0)
    # A normal day after it: the alert clears (its follow-up is due).
    normal = spike + timedelta(days=1)
    write_decisions("sent", 2, decided_at=normal, settled_at=normal + timedelta(days=8), unsubscribed=True)
    write_decisions("sent", 598, decided_at=normal, settled_at=normal + timedelta(days=8))
    with engine.begin() as c:
        assert detect_anomalies(c, pb, pb.agents[0], normal + timedelta(days=1)) == []
        [alert] = list_alerts(c)
    assert alert.status == "cleared" and alert.cleared_at == normal + timedelta(days=1)


def test_the_kpi_report_lists_the_anomalies_of_its_period(
    engine: Engine, cycle_at: datetime, make_playbook: Callable[..., Playbook], write_decisions: Callable[..., None], tmp_path: Path
) -> None:
    from legato.monitor.kpis import report as kpi_summary

    pb = make_playbook(stage=2)
    spike = four_weeks_then_a_spike(engine, cycle_at, write_decisions)
    with engine.begin() as c:
        [anomaly] = detect_anomalies(c, pb, pb.agents[0], spike + timedelta(days=1))
    with engine.connect() as c:
        whole = kpi_summary(c, pb, agent_id="mailer", since=None, until=None, by=None).to_dict()["anomalies"]
        midnight = spike.replace(hour=0, minute=0, second=0, microsecond=0)
        before = kpi_summary(c, pb, agent_id="mailer", since=cycle_at, until=midnight, by=None).anomalies  # up to the spike's day, exclusive
        other = kpi_summary(c, pb, agent_id="someone_else", since=None, until=None, by=None).anomalies
        shown = kpi_summary(c, pb, agent_id="mailer", since=None, until=None, by=None)
    from legato.cli.kpis_output import print_kpis
    from legato.cli.output import console

    with console.capture() as printed:
        print_kpis(shown)
    from legato.monitor.charts import write_html

    write_html(shown, tmp_path / "kpis.html")
    page = (tmp_path / "kpis.html").read_text(encoding="utf-8")
    assert "<h2>Anomalies the detector recorded</h2>" in page and f"<td>{spike.date().isoformat()}</td><td>mailer</td><td>unsubscribe_rate</td>" in page
    assert "anomalies the detector recorded" in printed.get() and f"{spike.date().isoformat()} mailer unsubscribe_rate" in " ".join(printed.get().split())
    assert [(a["agent"], a["series"], a["day"], a["observed"]) for a in whole] == [("mailer", "unsubscribe_rate", spike.date().isoformat(), 0.05)]
    assert whole[0]["low"] <= 2 / 600 <= whole[0]["high"] == anomaly.score.high and before == [] and other == []
