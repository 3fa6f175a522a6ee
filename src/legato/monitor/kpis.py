"""The playbook's KPIs per agent (and creative, offer, channel or segment) and day, from the kept counts.

Everything here reads the ``metrics`` table that :mod:`legato.monitor.metrics` keeps as things
happen; nothing rescans decisions. A day is the UTC day a decision was made (the counts are
kept under their decision's day), so a day reads as a cohort.

**Rates are per settled send**: of the decisions sent, those whose attribution window has
closed; an unsettled send's outcomes are not credited yet and would read as failures. This
is the stop-loss's arithmetic. **No data is not zero**: a rate with no settled send is
``None``, not 0.

**Lift vs holdout** is intent to treat per settled decision: every settled decision of the
agent outside its holdout (sent or not) against its held-out ones, the difference of means
with Welch's interval from :func:`legato.monitor.lift.compare_totals` (the lift module owns the
estimator). The unit is the decision, as the kept counts are; ``legato report lift`` is the
per-customer comparison (the randomization unit), which reads the decisions themselves. A
breakdown by creative, offer or channel compares that group's decisions with the agent's
whole holdout (held-out customers get no creative); by segment, with the segment's holdout.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy import Connection

from legato.monitor.lift import Lift, compare_totals
from legato.monitor.metrics import Arm, Measure
from legato.playbook.models import Metric, Playbook
from legato.store.schema import metric_groups, metric_totals

By = Literal["creative", "offer", "channel", "segment"]
BY: tuple[str, ...] = ("creative", "offer", "channel", "segment")
NO_GROUP = "(none)"  # decisions without one: no message chosen (held out, nothing), or no lifecycle stage

# KPI → the outcome counted over settled sends (None: sends themselves)
_OUTCOME: dict[Metric, Measure | None] = {
    Metric.sends: None,
    Metric.visit_rate: Measure.VISITED,
    Metric.conversion_rate: Measure.CONVERTED,
    Metric.revenue: Measure.REVENUE,
    Metric.revenue_per_send: Measure.REVENUE,
    Metric.unsubscribe_rate: Measure.UNSUBSCRIBED,
    Metric.complaint_rate: Measure.COMPLAINED,
}
LOWER_IS_BETTER = (Metric.unsubscribe_rate, Metric.complaint_rate)
_WORDS = {Measure.VISITED: "visit", Measure.CONVERTED: "purchase", Measure.REVENUE: "purchase with revenue",
          Measure.UNSUBSCRIBED: "unsubscribe", Measure.COMPLAINED: "complaint"}
# What the counts section shows, in order (outcomes: of the messages sent).
COUNTS = (
    Measure.AUDIENCE, Measure.DECIDED, Measure.HELD_OUT, Measure.CONTROL, Measure.GATED, Measure.SUPPRESSED, Measure.QUEUED,
    Measure.SCHEDULED, Measure.APPROVED, Measure.REJECTED, Measure.EXPIRED, Measure.SENT, Measure.FAILED, Measure.DELIVERED,
    Measure.BOUNCED, Measure.OPENED, Measure.CLICKED, Measure.VISITED, Measure.CONVERTED, Measure.REVENUE, Measure.OFFER_COST,
    Measure.UNSUBSCRIBED, Measure.COMPLAINED,
)
# What the daily series reads (audience: every day a group decided for is a point, even with no send).
SERIES = (Measure.AUDIENCE, Measure.SENT, Measure.SETTLED, *dict.fromkeys(m for m in _OUTCOME.values() if m is not None))
# Its columns, one row per day: (count, arm); no arm: over every arm.
DAY_COLUMNS: tuple[tuple[Measure, Arm | None], ...] = (
    (Measure.AUDIENCE, None), (Measure.SENT, None), *((m, arm) for arm in (Arm.SENT, Arm.HOLDOUT) for m in SERIES[2:]),
)
_HOLDOUT_COLUMNS = tuple(c for c in DAY_COLUMNS if c[1] is Arm.HOLDOUT)
_BY_ARM = {Measure.SETTLED, Measure.VISITED, Measure.CONVERTED, Measure.REVENUE, Measure.REVENUE_SQUARES, Measure.OFFER_COST,
           Measure.OPENED, Measure.CLICKED, Measure.UNSUBSCRIBED, Measure.COMPLAINED}


@dataclass(frozen=True)
class KpiLine:
    """One KPI of an agent's objective (or a guardrail KPI) over the period, against its target."""

    metric: str
    kind: Literal["kpi", "guardrail"]
    primary: bool
    value: float | None
    target: float | None  # a KPI's target, a guardrail's limit
    limit: Literal["min", "max"]  # which way the target binds
    met: bool | None  # None: no value yet, or no target
    lift: Lift | None  # vs the holdout; None for sends

    def to_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in self.__dict__.items() if k != "lift"}
        data["lift"] = self.lift.to_dict() if self.lift else None
        return data


@dataclass(frozen=True)
class DayPoint:
    day: date
    sent: float
    settled: float  # settled sends
    primary: float | None  # the primary KPI over the day's settled sends
    holdout: float | None  # the same outcome per settled held-out decision (rates only)
    unsubscribe_rate: float | None

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "day": self.day.isoformat()}


@dataclass(frozen=True)
class GroupKpis:
    """An agent's KPIs over the period, for all its decisions or one group of ``--by``."""

    agent_id: str
    objective: str | None
    group: str | None  # the --by value; None without --by
    counts: dict[str, float]
    suppressed: dict[str, float]  # by reason
    review_minutes: float | None  # mean, from queued to a person's decision
    kpis: list[KpiLine] = field(default_factory=list)
    days: list[DayPoint] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "agent": self.agent_id, "objective": self.objective, "group": self.group, "counts": self.counts, "suppressed": self.suppressed,
            "review_minutes": self.review_minutes, "kpis": [k.to_dict() for k in self.kpis], "days": [d.to_dict() for d in self.days],
        }


@dataclass(frozen=True)
class KpiReport:
    since: date | None
    until: date | None  # exclusive
    by: str | None
    groups: list[GroupKpis]
    # The anomalies the detector recorded on the reported agents' series in the period (oldest
    # first): issue 14 asks that each appears in reports, not only in the queue and the alerts.
    anomalies: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "since": self.since.isoformat() if self.since else None, "until": self.until.isoformat() if self.until else None,
            "by": self.by, "groups": [g.to_dict() for g in self.groups], "anomalies": self.anomalies,
        }


def days_of(since: datetime | None, until: datetime | None) -> tuple[date | None, date | None]:
    """The whole UTC days a period covers: from ``since``'s day, to ``until``'s (exclusive; a time past midnight includes that day)."""
    start = since.date() if since is not None else None
    end = None
    if until is not None:
        end = until.date() if until.timetz().replace(tzinfo=None) == time(0) else until.date() + timedelta(days=1)
    return start, end


def _source(by: str | None) -> tuple[sa.Table, Any, list[sa.ColumnElement[bool]]]:
    """Where the counts of a breakdown are kept: the agent totals without one, else the members' totals."""
    if by is None:
        return metric_totals, sa.literal("").label("grp"), []
    if by not in BY:
        raise ValueError(by)
    return metric_groups, metric_groups.c.grp, [metric_groups.c.dimension == by]


def _bounds(table: sa.Table, agent_id: str | None, since: date | None, until: date | None) -> list[sa.ColumnElement[bool]]:
    where = []
    if agent_id is not None:
        where.append(table.c.agent_id == agent_id)
    if since is not None:
        where.append(table.c.day >= since.isoformat())
    if until is not None:
        where.append(table.c.day < until.isoformat())
    return where


def read(connection: Connection, *, agent_id: str | None, since: date | None, until: date | None, by: str | None) -> list[Any]:
    """The kept counts summed per (agent, group, day, name, arm, reason)."""
    table, group, where = _source(by)
    query = sa.select(table.c.agent_id, group, table.c.day, table.c.name, table.c.arm, table.c.reason, sa.func.sum(table.c.value).label("value"))
    grouping = [table.c.agent_id, *([group] if by else []), table.c.day, table.c.name, table.c.arm, table.c.reason]
    return connection.execute(query.where(*where, *_bounds(table, agent_id, since, until)).group_by(*grouping)).all()


def read_totals(connection: Connection, *, agent_id: str | None, since: date | None, until: date | None, by: str | None) -> list[Any]:
    """The period's counts per (agent, group, name, arm, reason): a few dozen rows per group.

    With a breakdown, one aggregate in the order of ``metric_groups``'s key (no sort)."""
    table, group, where = _source(by)
    query = sa.select(table.c.agent_id, group, table.c.name, table.c.arm, table.c.reason, sa.func.sum(table.c.value).label("value"))
    grouping = [table.c.agent_id, *([group] if by else []), table.c.name, table.c.arm, table.c.reason]
    return connection.execute(query.where(*where, *_bounds(table, agent_id, since, until)).group_by(*grouping)).all()


def read_days(connection: Connection, *, agent_id: str | None, since: date | None, until: date | None, by: str | None) -> list[Any]:
    """Per (agent, group, day): the counts the daily series shows (:data:`DAY_COLUMNS`, in that
    order after the three keys), summed in SQL, one row per day."""
    table, group, where = _source(by)
    columns = [
        sa.func.sum(sa.case((sa.and_(table.c.name == measure.value, *([table.c.arm == arm.value] if arm else [])), table.c.value), else_=0.0))
        for measure, arm in DAY_COLUMNS
    ]
    grouping = [table.c.agent_id, *([group] if by else []), table.c.day]
    query = sa.select(table.c.agent_id, group, table.c.day, *columns).where(
        *where, table.c.name.in_([m.value for m in SERIES]), *_bounds(table, agent_id, since, until)
    )
    return connection.execute(query.group_by(*grouping)).all()


class _Day:
    """One day's series counts (:data:`DAY_COLUMNS`), read as :class:`_Sums` reads."""

    __slots__ = ("values",)

    def __init__(self, values: dict[tuple[Measure, Arm | None], float]) -> None:
        self.values = values

    def get(self, measure: Measure, *arms: Arm) -> float:
        if not arms:
            return self.values.get((measure, None), 0.0)
        return sum(self.values.get((measure, arm), 0.0) for arm in arms)


class _Sums:
    """Counts by name and arm (and reason, for the suppressed), summed over the rows added."""

    def __init__(self) -> None:
        self.by: defaultdict[tuple[str, str], float] = defaultdict(float)
        self.names: defaultdict[str, float] = defaultdict(float)  # over every arm
        self.reasons: defaultdict[str, float] = defaultdict(float)

    def add(self, name: str, arm: str, reason: str, value: float) -> None:
        self.by[(name, arm)] += value
        self.names[name] += value
        if name == Measure.SUPPRESSED:
            self.reasons[reason] += value

    def get(self, measure: Measure, *arms: Arm) -> float:
        if not arms:
            return self.names.get(measure.value, 0)  # 0, not 0.0, when never counted: as the sum of nothing was
        return sum(self.by.get((measure.value, arm.value), 0.0) for arm in arms)


def report(
    connection: Connection, playbook: Playbook | None, *, agent_id: str | None = None, since: datetime | None = None,
    until: datetime | None = None, by: str | None = None,
) -> KpiReport:
    """Each agent's KPIs (primary first) against their targets, with lift vs holdout and a daily series."""
    start, end = days_of(since, until)
    groups: dict[tuple[str, str], _Sums] = defaultdict(_Sums)
    daily: dict[tuple[str, str], dict[str, _Day]] = defaultdict(dict)
    holdouts: dict[tuple[str, str], _Sums] = defaultdict(_Sums)  # (agent, segment or '') → the holdout's counts
    holdout_days: dict[tuple[str, str], dict[str, _Day]] = defaultdict(dict)
    for agent, grp, name, arm, reason, value in read_totals(connection, agent_id=agent_id, since=start, until=end, by=by):
        groups[(agent, grp)].add(name, arm, reason, float(value))
        if arm == Arm.HOLDOUT:
            holdouts[(agent, grp if by == "segment" else "")].add(name, arm, reason, float(value))
    for agent, grp, day, *values in read_days(connection, agent_id=agent_id, since=start, until=end, by=by):
        counts = dict(zip(DAY_COLUMNS, map(float, values), strict=True))
        daily[(agent, grp)][day] = _Day(counts)
        held = holdout_days[(agent, grp if by == "segment" else "")].setdefault(day, _Day({}))
        for column in _HOLDOUT_COLUMNS:  # summed over the groups but by segment: the holdout has no creative
            held.values[column] = held.values.get(column, 0.0) + counts[column]
    agents = {a.id: a for a in playbook.agents} if playbook is not None else {}
    result = []
    for (agent, grp), sums in sorted(groups.items()):
        if by is not None and by != "segment" and not grp and not sums.get(Measure.AUDIENCE):
            continue  # only the holdout's outcomes, kept with no creative: they are the comparison, not a group
        scope = grp if by == "segment" else ""
        spec = agents.get(agent)
        objective = playbook.objective(spec.objective) if (playbook is not None and spec is not None) else None
        reviewed = sums.get(Measure.REVIEWED)
        result.append(
            GroupKpis(
                agent_id=agent,
                objective=objective.id if objective else None,
                group=(grp or NO_GROUP) if by else None,
                counts={m.value: (sums.get(m, Arm.SENT) if m in _BY_ARM else sums.get(m)) for m in COUNTS},
                suppressed=dict(sorted(sums.reasons.items(), key=lambda item: -item[1])),
                review_minutes=sums.get(Measure.REVIEW_SECONDS) / reviewed / 60 if reviewed else None,
                kpis=_lines(objective, sums, holdouts.get((agent, scope), _Sums())),
                days=_days(objective, daily[(agent, grp)], holdout_days.get((agent, scope), {})),
            )
        )
    return KpiReport(start, end, by, result, _anomalies(connection, agent_id, start, end))


def _anomalies(connection: Connection, agent_id: str | None, since: date | None, until: date | None) -> list[dict[str, Any]]:
    """The recorded anomalies of the period's days (``until`` exclusive), in the report's words."""
    from legato.monitor.anomaly import recorded  # the detector's module reads the series; a report needs only its records

    found = []
    for row in recorded(connection, agent_id):
        day = date.fromisoformat(row["day"])
        if (since is None or day >= since) and (until is None or day < until):
            found.append({"agent": row["agent_id"], "series": row["series"], "day": row["day"], "observed": row["observed"],
                          "expected": row["expected"], "low": row["low"], "high": row["high"], "z": row["score"],
                          "review_item": row["review_item_id"]})
    return found


def kpi_value(metric: Metric, sums: _Sums | _Day) -> float | None:
    """A KPI over the settled sends of ``sums`` (``sends``: the sends); None when none settled."""
    if metric is Metric.sends:
        return sums.get(Measure.SENT)
    settled = sums.get(Measure.SETTLED, Arm.SENT)
    if not settled:
        return None
    outcome = sums.get(_OUTCOME[metric], Arm.SENT)  # type: ignore[arg-type]
    return outcome if metric is Metric.revenue else outcome / settled


def _holdout_rate(metric: Metric, sums: _Sums | _Day) -> float | None:
    measure = _OUTCOME[metric]
    settled = sums.get(Measure.SETTLED, Arm.HOLDOUT)
    if measure is None or not settled:
        return None
    return sums.get(measure, Arm.HOLDOUT) / settled


def _lift(metric: Metric, sums: _Sums, holdout: _Sums) -> Lift | None:
    measure = _OUTCOME[metric]
    if measure is None:
        return None
    treated_arms = (Arm.SENT, Arm.UNSENT)
    squares = Measure.REVENUE_SQUARES if measure is Measure.REVENUE else measure  # a 0/1 outcome is its own square
    treated = (int(sums.get(Measure.SETTLED, *treated_arms)), sums.get(measure, *treated_arms), sums.get(squares, *treated_arms))
    control = (int(holdout.get(Measure.SETTLED, Arm.HOLDOUT)), holdout.get(measure, Arm.HOLDOUT), holdout.get(squares, Arm.HOLDOUT))
    if not treated[0] or not control[0]:
        return None
    return compare_totals(metric.value, _WORDS[measure], treated, control)


def _lines(objective: Any, sums: _Sums, holdout: _Sums) -> list[KpiLine]:
    if objective is None:  # an agent the playbook no longer has: its KPIs without targets
        specs: list[tuple[Metric, str, float | None, str]] = [(m, "kpi", None, "max" if m in LOWER_IS_BETTER else "min") for m in Metric]
    else:
        specs = [(k.metric, "kpi", k.target, "max" if k.metric in LOWER_IS_BETTER else "min") for k in objective.kpis]
        for g in objective.guardrail_kpis:
            if g.max is not None:
                specs.append((g.metric, "guardrail", g.max, "max"))
            if g.min is not None:
                specs.append((g.metric, "guardrail", g.min, "min"))
    lines = []
    for i, (metric, kind, target, limit) in enumerate(specs):
        value = kpi_value(metric, sums)
        met = None if value is None or target is None else (value <= target if limit == "max" else value >= target)
        lines.append(KpiLine(metric.value, kind, kind == "kpi" and i == 0 and objective is not None, value, target, limit, met, _lift(metric, sums, holdout)))  # type: ignore[arg-type]
    return lines


def _days(objective: Any, days: dict[str, _Day], holdout_days: dict[str, _Day]) -> list[DayPoint]:
    primary = objective.kpis[0].metric if objective is not None else Metric.visit_rate
    points = []
    for day in sorted(days):
        sums = days[day]
        points.append(
            DayPoint(
                date.fromisoformat(day), sums.get(Measure.SENT), sums.get(Measure.SETTLED, Arm.SENT), kpi_value(primary, sums),
                _holdout_rate(primary, holdout_days[day]) if primary not in (Metric.sends, Metric.revenue) and day in holdout_days else None,
                kpi_value(Metric.unsubscribe_rate, sums),
            )
        )
    return points


# --- the per-day KPIs of the API's /v1/reports/kpis ---------------------------------------------


@dataclass(frozen=True)
class DayKpis:
    agent_id: str
    day: date
    sends: int  # decisions of the day that were sent
    settled: int  # of those, how many have their attribution window closed
    values: dict[str, float | None] = field(default_factory=dict)  # Metric → value; None when nothing settled

    def to_dict(self) -> dict[str, Any]:
        return {"agent": self.agent_id, "day": self.day.isoformat(), "sends": self.sends, "settled": self.settled, **self.values}


def kpis_by_day(
    connection: Connection,
    *,
    agent_id: str | None = None,
    decided_from: datetime | None = None,
    decided_to: datetime | None = None,
) -> list[DayKpis]:
    """One row per agent and UTC day with a send, oldest day first, from the kept counts."""
    start, end = days_of(decided_from, decided_to)
    by_day: dict[tuple[str, str], _Sums] = defaultdict(_Sums)
    for row in read(connection, agent_id=agent_id, since=start, until=end, by=None):
        by_day[(row.day, row.agent_id)].add(row.name, row.arm, row.reason, float(row.value))
    rows = []
    for (day, agent), sums in sorted(by_day.items()):
        sends = int(sums.get(Measure.SENT))
        if sends:
            values = {m.value: kpi_value(m, sums) for m in Metric}
            rows.append(DayKpis(agent, date.fromisoformat(day), sends, int(sums.get(Measure.SETTLED, Arm.SENT)), values))
    return rows


def utc_day(column: Any, dialect: str) -> sa.ColumnElement[str]:
    """The UTC day of a :class:`~legato.store.types.UTCDateTime` column as ``YYYY-MM-DD`` text.

    SQLite keeps naive UTC text (``2024-03-04 08:00:00``), PostgreSQL a ``timestamptz``."""
    if dialect == "postgresql":
        return sa.func.to_char(sa.func.timezone("UTC", column), "YYYY-MM-DD")
    return sa.func.substr(column, 1, 10)
