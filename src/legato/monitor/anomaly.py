"""Anomalies in an agent's daily KPI series: a day outside the range its recent weeks predict.

**The detector** (:class:`SeasonalRateDetector`, a ``learn_one``/``score_one`` protocol over
one series, a day at a time) is a seasonal robust z-score on rates with a count-aware scale:

- *expected rate*: the median rate of the last ``window`` days (events over trials, each day
  weighted alike), times the day of the week's factor: the median ratio of that weekday's
  rates to the level, shrunk toward 1 by two pseudo-days so that a young series is not
  given a pattern from one week;
- *scale*: binomial (the day's own trials: 3 of 40 is not 3 of 4,000) times a robust
  overdispersion factor: the median of the history's squared standardized residuals over the
  median of χ²₁ (0.455), at least 1, so day-to-day variation a binomial does not explain widens
  the range instead of raising alarms;
- *anomaly*: |z| above ``z`` (4 by default) **and** at least ``min_events`` events off the
  expected count, so one unsubscribe on a day that expected 0.2 is not an anomaly.

A count series (sends a day) is the same with a Poisson scale (trials None). Nothing is scored
before ``min_history`` days (two of each weekday).

**Recording** (:func:`detect_anomalies`, the cycle's plan step): the most recent complete day
of each series of :func:`legato.monitor.series.agent_series` (sends; unsubscribe, complaint and
bounce rates as they arrive; visit and conversion rates once settled) is scored against the
days before it. An anomaly is written once to ``anomalies`` (series, day, observed, expected
range, score), queued as a finding for a person and raised as an alert (one open alert per agent
and series; it clears on the series' next normal day). Detection and false-alarm rates on
simulated series: ``bench/anomaly_detection.py``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Protocol

import numpy as np
import sqlalchemy as sa
from scipy.special import betainc, gammainc, gammaincc
from sqlalchemy import Connection

from legato.monitor.alerts import clear_alert, incident_key, raise_alert
from legato.monitor.series import AgentSeries, agent_series
from legato.playbook.models import Agent, Playbook
from legato.store.schema import anomalies
from legato.store.status import AlertKind, ReviewKind
from legato.trust.review.items import NewItem, open_item

FINDING_REASON = "anomaly"
FINDING_PRIORITY = 70
CHI2_1_MEDIAN = 0.4549364231195724
PRIOR_EVENTS = 10.0  # pseudo-events a weekday's factor is shrunk toward 1 with


@dataclass(frozen=True)
class Score:
    observed: float  # the day's rate (or count)
    expected: float
    low: float  # the expected range at the detector's z
    high: float
    z: float
    anomaly: bool
    sample: float  # the day's trials (0 for a count series)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Detector(Protocol):
    def learn_one(self, weekday: int, events: float, trials: float | None) -> None: ...

    def score_one(self, weekday: int, events: float, trials: float | None) -> Score | None: ...


@dataclass
class SeasonalRateDetector:
    """One daily series: ``score_one`` the new day against what ``learn_one`` saw before it."""

    z: float = 4.0  # the expected range shown is expected ± z scales
    tail: float = 3.2e-5  # the one-sided tail probability below which a day is an anomaly (z 4's)
    min_events: float = 3.0
    window: int = 56
    min_history: int = 14
    _days: deque[tuple[int, float, float | None]] = field(default_factory=deque)

    def learn_one(self, weekday: int, events: float, trials: float | None) -> None:
        if trials is not None and trials <= 0:
            return  # a day without sends says nothing about a rate
        self._days.append((weekday, float(events), None if trials is None else float(trials)))
        while len(self._days) > self.window:
            self._days.popleft()

    def score_one(self, weekday: int, events: float, trials: float | None) -> Score | None:
        if len(self._days) < self.min_history or (trials is not None and trials <= 0):
            return None
        counts = trials is None
        w = np.array([d[0] for d in self._days])
        x = np.array([d[1] for d in self._days])
        n = np.ones(len(x)) if counts else np.array([d[2] for d in self._days])
        level = self._level(x, n)
        # Each weekday's factor: the median of its days' rates over the level (one anomalous
        # Monday does not move it), shrunk toward 1 by PRIOR_EVENTS pseudo-events, so a weekday
        # with few events keeps the level (:func:`_factor`).
        factors = np.ones(7)
        # Each history day is compared with its weekday's factor from the *other* days of that
        # weekday: a factor fitted to two Mondays would explain away their spread and make
        # the range too narrow while the series is young.
        left_out = np.ones(len(x))
        if level > 0:
            for day in range(7):
                mine = np.flatnonzero(w == day)
                if len(mine):
                    factors[day] = _factor(x[mine], n[mine], level)
                    for j, i in enumerate(mine):
                        others = np.delete(mine, j)
                        left_out[i] = _factor(x[others], n[others], level) if len(others) else 1.0
        p = np.clip(level * left_out, 0.0, None if counts else 1.0)
        # How much wider than binomial (Poisson) the history's days spread, robustly: the
        # median squared Pearson residual over the median of chi-squared(1), at least 1.
        var = np.maximum(n * p if counts else n * p * (1 - p), 0.5)
        dispersion = max(float(np.median((x - n * p) ** 2 / var)) / CHI2_1_MEDIAN, 1.0)
        size = 1.0 if counts else float(trials)  # type: ignore[arg-type]
        expected = float(min(level * factors[weekday], np.inf if counts else 1.0))
        mean = expected * size
        scale = float(np.sqrt(dispersion * max(mean if counts else mean * (1 - expected), 0.5))) / size
        observed = float(events) / size
        z = (observed - expected) / scale if scale > 0 else 0.0
        tail = _tail(float(events), size, expected, dispersion, counts)
        off_by = abs(float(events) - mean)
        low, high = max(expected - self.z * scale, 0.0), expected + self.z * scale
        anomaly = tail < self.tail and off_by >= self.min_events
        return Score(observed, expected, low, high, float(z), bool(anomaly), 0.0 if counts else size)

    def _level(self, x: np.ndarray, n: np.ndarray) -> float:
        """The rate of the recent weeks: the median of the weekly pooled rates (a week pools its
        weekdays, so the pattern cancels; the median ignores a week with an anomaly in it)."""
        weeks = [slice(max(end - 7, 0), end) for end in range(len(x), 0, -7)]
        rates = [float(x[wk].sum()) / float(n[wk].sum()) for wk in weeks if n[wk].sum() > 0 and (wk.stop - wk.start) == 7]
        if not rates:
            return float(x.sum() / max(n.sum(), 1.0))
        return float(np.median(rates))


def _factor(x: np.ndarray, n: np.ndarray, level: float) -> float:
    """A weekday's factor: the median of its days' rates over the level, shrunk toward 1 by PRIOR_EVENTS."""
    seen = float(x.sum())
    return (seen * float(np.median(x / n)) / level + PRIOR_EVENTS) / (seen + PRIOR_EVENTS)


def _tail(events: float, size: float, rate: float, dispersion: float, counts: bool) -> float:
    """The smaller one-sided tail probability of ``events`` under the expected rate, overdispersed.

    Quasi-likelihood: events and trials divided by the dispersion behave as a binomial (or a
    Poisson of the mean divided by it), so an exact tail stays right at small counts where a
    z-score would call one event among few a four-sigma day.
    """
    if counts:
        mu = max(rate / dispersion, 1e-12)
        k = events / dispersion
        upper = float(gammainc(k, mu)) if k > 0 else 1.0  # P(X >= k)
        lower = float(gammaincc(k + 1, mu))  # P(X <= k)
        return min(upper, lower)
    m = size / dispersion
    k = events / dispersion
    p = min(max(rate, 1e-12), 1 - 1e-12)
    upper = float(betainc(k, m - k + 1, p)) if k > 0 else 1.0
    lower = float(1 - betainc(k + 1, m - k, p)) if k < m else 1.0
    return min(upper, lower)


@dataclass(frozen=True)
class Anomaly:
    agent_id: str
    series: str
    day: date
    score: Score

    def to_dict(self) -> dict[str, Any]:
        return {"agent": self.agent_id, "series": self.series, "day": self.day.isoformat(), **self.score.to_dict()}


def series_of(data: AgentSeries) -> dict[str, tuple[np.ndarray, np.ndarray | None, int]]:
    """Each KPI series the detector watches: (events, trials or None, the index of its last complete day)."""
    today = len(data.days) - 1
    complete = today - 1  # the current day's decisions are still being sent
    settled = data.settled_sent.n
    # The latest day whose sends have all settled.
    full = [i for i in range(len(data.days)) if data.sent.n[i] > 0 and settled[i] >= data.sent.n[i]]
    last_settled = full[-1] if full else -1
    return {
        "sends": (data.sent.n, None, complete),
        "unsubscribe_rate": (data.sent.sums["unsubscribed"], data.sent.n, complete),
        "complaint_rate": (data.sent.sums["complained"], data.sent.n, complete),
        "bounce_rate": (data.sent.sums["bounced"], data.sent.n, complete),
        "visit_rate": (data.settled_sent.sums["visited"], settled, last_settled),
        "conversion_rate": (data.settled_sent.sums["purchased"], settled, last_settled),
    }


def score_series(days: list[date], events: np.ndarray, trials: np.ndarray | None, upto: int, detector: Detector | None = None) -> Score | None:
    """Day ``upto`` of one series scored against the days before it."""
    detector = detector or SeasonalRateDetector()
    for i in range(upto):
        detector.learn_one(days[i].weekday(), float(events[i]), None if trials is None else float(trials[i]))
    return detector.score_one(days[upto].weekday(), float(events[upto]), None if trials is None else float(trials[upto]))


def detect_anomalies(connection: Connection, playbook: Playbook, agent: Agent, now: datetime, data: AgentSeries | None = None) -> list[Anomaly]:
    """Score the agent's series' latest complete days; record, queue and alert each new anomaly."""
    data = data or agent_series(connection, playbook, agent, now)
    found: list[Anomaly] = []
    for name, (events, trials, upto) in series_of(data).items():
        if upto < 1:
            continue
        score = score_series(data.days, events, trials, upto)
        incident = incident_key(AlertKind.ANOMALY, agent.id, name)
        if score is None:
            continue
        if not score.anomaly:
            clear_alert(connection, incident, now, by="anomaly_detector")
            continue
        anomaly = Anomaly(agent.id, name, data.days[upto], score)
        if _record(connection, playbook, anomaly, now, incident):
            found.append(anomaly)
    return found


def _record(connection: Connection, playbook: Playbook, anomaly: Anomaly, now: datetime, incident: str) -> bool:
    """Write the anomaly once (a later cycle scoring the same day finds it there), with its finding and alert."""
    s = anomaly.score
    exists = connection.execute(
        sa.select(anomalies.c.id).where(anomalies.c.agent_id == anomaly.agent_id, anomalies.c.series == anomaly.series, anomalies.c.day == anomaly.day.isoformat())
    ).first()
    if exists is not None:
        return False
    evidence = anomaly.to_dict()
    item = NewItem(kind=ReviewKind.FINDING, reason=FINDING_REASON, priority=FINDING_PRIORITY, created_at=now, agent_id=anomaly.agent_id, evidence=evidence)
    item_id = open_item(connection, item, playbook.review.sla_hours)
    connection.execute(
        sa.insert(anomalies).values(
            agent_id=anomaly.agent_id, series=anomaly.series, day=anomaly.day.isoformat(), observed=s.observed, expected=s.expected, low=s.low,
            high=s.high, score=s.z, sample=s.sample, found_at=now, review_item_id=item_id,
        )
    )
    direction = "above" if s.observed > s.expected else "below"
    summary = (f"{anomaly.agent_id}: {anomaly.series} {s.observed:.4g} on {anomaly.day.isoformat()} is {direction} its expected range "
               f"[{s.low:.4g}, {s.high:.4g}] (z {s.z:+.1f})")
    raise_alert(connection, incident, AlertKind.ANOMALY, summary, evidence, now, agent_id=anomaly.agent_id)
    return True


def recorded(connection: Connection, agent_id: str | None = None) -> list[dict[str, Any]]:
    """The anomalies recorded, oldest first (for reports)."""
    query = sa.select(anomalies).order_by(anomalies.c.day, anomalies.c.id)
    if agent_id is not None:
        query = query.where(anomalies.c.agent_id == agent_id)
    return [dict(row._mapping) for row in connection.execute(query)]
