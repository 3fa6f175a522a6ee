"""Lift against the holdout, per customer and intent-to-treat, with a confidence interval.

**The unit is the customer.** Customers are randomized (a stable hash per agent and
customer puts each one in the agent's holdout or not; another per customer in the global
control), so the customer is what is compared. Over the report's period (decisions made in
``[decided_from, decided_to)``, settled ones only) each customer is *treated* (any decision
of the agent outside its holdout: sent, "do nothing", suppressed, queued alike) or *held
out*, and their outcomes over all of that period's decisions are added up:

- ``visit_rate``, ``conversion_rate``, ``open_rate``, ``click_rate``: the share of customers
  with at least one visit, purchase, open or click in their windows;
- ``revenue_per_customer`` and ``reward_per_customer``: revenue and the objective's reward
  (outcome less contact and offer cost and guardrail penalties) summed per customer, then
  averaged over customers.

A decision's window ends where the agent's next decision for the customer begins (see
``legato.learn.attribution``), so summing over a customer's decisions counts each of their
outcomes once. ``n_treated`` and ``n_control`` count customers, never more than the agent's
audience, however many cycles ran.

Comparing only the customers who were sent a message with the holdout would credit the
agent for whom it chose to contact, not for what contacting did, hence intent to treat.

**The estimator** is the difference of the two groups' means over customers, with the
normal-approximation interval for a difference of two means with unequal variances
(Welch 1947): ``d ± z₉₇.₅ · sqrt(s_t²/n_t + s_c²/n_c)``, ``s²`` the sample variances over
customers. Counting decisions instead (one customer decided for 30 times counted as 30
independent units) understates the variance whenever a customer's outcomes are
correlated, which is why the analysis unit must be the randomization unit (Kohavi, Tang and
Xu, *Trustworthy Online Controlled Experiments*, 2020, ch. 18). Below 30 customers in a group
the interval is reported as missing rather than guessed.

A customer whose decisions in the period fall in both groups (the agent's holdout share
changed within it) is left out and counted in ``switched``.

**No data is not zero.** When nothing can be measured yet (no decision in the period, none
settled, no one held out, or no outcome recorded at all) :func:`measure` says so in words
(``nothing_yet``) and gives no lifts; a metric with no outcome recorded in either group
(no open imported, say) has no interval and says why in its ``note``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy import Connection

from legato.store.schema import decisions
from legato.store.status import Route

Z_95 = 1.959963984540054
MIN_GROUP = 30

Against = Literal["holdout", "global_control"]

# metric → (decision column, "any" or "sum", the outcome's name in a note)
METRICS: dict[str, tuple[str, str, str]] = {
    "visit_rate": ("visited", "any", "visit"),
    "conversion_rate": ("purchased", "any", "purchase"),
    "revenue_per_customer": ("revenue", "sum", "purchase with revenue"),
    "reward_per_customer": ("reward", "sum", "outcome"),
    "open_rate": ("opened", "any", "open"),
    "click_rate": ("clicked", "any", "click"),
}
OUTCOME_COLUMNS = ("visited", "purchased", "opened", "clicked", "revenue", "unsubscribed", "complained")


@dataclass(frozen=True)
class Lift:
    metric: str
    treated: float
    control: float
    difference: float
    low: float | None
    high: float | None
    n_treated: int  # customers
    n_control: int  # customers
    note: str | None = None  # why there is no interval, when there is none

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


@dataclass(frozen=True)
class LiftReport:
    """An agent's lifts over a period, or in words why there is nothing to measure yet."""

    agent_id: str
    against: str
    decisions: int  # the agent's decisions in the period, settled or not
    settled: int
    customers_treated: int
    customers_control: int
    switched: int  # customers in both groups within the period: left out
    lifts: list[Lift] = field(default_factory=list)
    nothing_yet: str | None = None
    first_unsettled: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in self.__dict__.items() if k != "lifts"}
        data["first_unsettled"] = self.first_unsettled.isoformat() if self.first_unsettled else None
        data["lifts"] = [item.to_dict() for item in self.lifts]
        return data


def lift(
    connection: Connection,
    agent_id: str,
    *,
    decided_from: datetime | None = None,
    decided_to: datetime | None = None,
    against: Against = "holdout",
    customers: sa.ColumnElement[bool] | None = None,
) -> list[Lift]:
    """The lifts of :func:`measure`, empty when there is nothing to measure yet."""
    return measure(connection, agent_id, decided_from=decided_from, decided_to=decided_to, against=against, customers=customers).lifts


def measure(
    connection: Connection,
    agent_id: str,
    *,
    decided_from: datetime | None = None,
    decided_to: datetime | None = None,
    against: Against = "holdout",
    customers: sa.ColumnElement[bool] | None = None,
) -> LiftReport:
    """Every metric of :data:`METRICS` per customer against the holdout (or the global control).

    ``against="global_control"`` compares the same treated customers with the customers of
    the program-wide control group instead (no agent sent them marketing), which measures
    what the whole program adds, not only this agent; the agent's own holdout is left out.
    ``customers`` (a condition on ``decisions.customer_id``, e.g. a segment's members) keeps
    only those customers.
    """
    in_control = decisions.c.route == Route.CONTROL
    if against == "holdout":
        group, scope = decisions.c.holdout, ~in_control
    else:
        group, scope = in_control, ~decisions.c.holdout
    where = [decisions.c.agent_id == agent_id, scope]
    if decided_from is not None:
        where.append(decisions.c.decided_at >= decided_from)
    if decided_to is not None:
        where.append(decisions.c.decided_at < decided_to)
    if customers is not None:
        where.append(customers)

    counts = connection.execute(
        sa.select(
            sa.func.count().label("decisions"),
            sa.func.count(decisions.c.settled_at).label("settled"),
            sa.func.min(sa.case((decisions.c.settled_at.is_(None), decisions.c.decided_at))).label("first_unsettled"),
        ).where(*where)
    ).one()
    as_int = lambda column: sa.cast(sa.func.coalesce(column, False), sa.Integer)  # noqa: E731
    g = sa.cast(group, sa.Integer)
    per_customer = [
        (sa.func.max(as_int(decisions.c[column])) if how == "any" else sa.func.sum(sa.func.coalesce(decisions.c[column], 0.0))).label(name)
        for name, (column, how, _) in METRICS.items()
    ]
    recorded = sa.func.max(
        sa.case(
            (sa.or_(*(decisions.c[c].is_(True) for c in OUTCOME_COLUMNS if c != "revenue"), sa.func.coalesce(decisions.c.revenue, 0.0) != 0), 1),
            else_=0,
        )
    ).label("recorded")
    customer_rows = (
        sa.select(sa.func.max(g).label("hi"), sa.func.min(g).label("lo"), recorded, *per_customer)
        .where(*where, decisions.c.settled_at.is_not(None))
        .group_by(decisions.c.customer_id)
        .subquery()
    )
    sums = [
        part
        for name in METRICS
        for part in (sa.func.sum(customer_rows.c[name]).label(f"{name}_sum"), sa.func.sum(customer_rows.c[name] * customer_rows.c[name]).label(f"{name}_squares"))
    ]
    groups: dict[bool, Any] = {}
    switched = 0
    for row in connection.execute(
        sa.select(
            customer_rows.c.hi.label("control"),
            (customer_rows.c.hi != customer_rows.c.lo).label("switched"),
            sa.func.count().label("n"),
            sa.func.sum(customer_rows.c.recorded).label("recorded"),
            *sums,
        ).group_by(customer_rows.c.hi, customer_rows.c.hi != customer_rows.c.lo)
    ):
        if row.switched:
            switched += int(row.n)
        else:
            groups[bool(row.control)] = row._mapping
    treated, control = groups.get(False), groups.get(True)
    report = dict(
        agent_id=agent_id,
        against=against,
        decisions=int(counts.decisions),
        settled=int(counts.settled),
        customers_treated=int(treated["n"]) if treated else 0,
        customers_control=int(control["n"]) if control else 0,
        switched=switched,
        first_unsettled=counts.first_unsettled,
    )
    why = _nothing_yet(report, treated, control, against)
    if why is not None:
        return LiftReport(**report, nothing_yet=why)  # type: ignore[arg-type]
    lifts = [_compare(name, _Moments.of(treated, name), _Moments.of(control, name)) for name in METRICS]
    return LiftReport(**report, lifts=lifts)  # type: ignore[arg-type]


def _nothing_yet(report: dict[str, Any], treated: Any, control: Any, against: Against) -> str | None:
    """Why nothing can be measured yet, in words, or None when something can."""
    unsettled = report["decisions"] - report["settled"]
    if not report["decisions"]:
        return "no decisions in this period"
    if not report["settled"]:
        first = report["first_unsettled"]
        since = f" (the first made {first:%Y-%m-%d %H:%M} UTC)" if first else ""
        return (
            f"{report['decisions']:,} decisions, none settled yet{since}: a decision is measured once its "
            "attribution window has closed and a cycle has run after that"
        )
    if treated is None:
        return f"no treated customer among {report['settled']:,} settled decisions"
    if control is None:
        group = (
            "none in the agent's holdout (its holdout share is 0, or no held-out decision settled yet)"
            if against == "holdout"
            else "none in the program's global control group (the playbook's global_control share is 0, or none of its decisions settled yet)"
        )
        return f"{report['customers_treated']:,} treated customers but {group}: nothing to compare with"
    if not int(treated["recorded"] or 0) and not int(control["recorded"] or 0):
        pending = f"; {unsettled:,} decisions not settled yet" if unsettled else ""
        return (
            f"{report['settled']:,} settled decisions for {report['customers_treated'] + report['customers_control']:,} customers, "
            "but no outcome (visit, purchase, open, click, unsubscribe, complaint) was recorded in their windows: "
            f"outcomes count once they are imported (legato import events), also when they arrive late{pending}"
        )
    return None


@dataclass(frozen=True)
class _Moments:
    n: int
    mean: float
    variance: float
    total: float

    @classmethod
    def of(cls, row: Any, name: str) -> _Moments:
        if row is None or not row["n"]:
            return cls(0, math.nan, math.nan, 0.0)
        return cls.from_totals(int(row["n"]), float(row[f"{name}_sum"] or 0.0), float(row[f"{name}_squares"] or 0.0))

    @classmethod
    def from_totals(cls, n: int, total: float, squares: float) -> _Moments:
        if not n:
            return cls(0, math.nan, math.nan, 0.0)
        mean = total / n
        variance = max(squares - n * mean * mean, 0.0) / (n - 1) if n > 1 else math.nan
        return cls(n, mean, variance, total)


def compare_totals(metric: str, outcome: str, treated: tuple[int, float, float], control: tuple[int, float, float]) -> Lift:
    """The same estimator (difference of means, Welch's normal interval, nothing below
    :data:`MIN_GROUP` units) over each group's (units, sum, sum of squares): what kept counts
    give (``legato report kpis``, whose unit is the settled decision; for a 0/1 outcome the sum
    of squares is the sum). ``outcome`` names the outcome in a note."""
    return _compare(metric, _Moments.from_totals(*treated), _Moments.from_totals(*control), outcome)


def _compare(metric: str, treated: _Moments, control: _Moments, outcome: str | None = None) -> Lift:
    difference = treated.mean - control.mean
    low = high = None
    note = None
    outcome = outcome or METRICS[metric][2]
    if treated.total == 0 and control.total == 0 and not treated.variance > 0 and not control.variance > 0:
        note = f"no {outcome} recorded for either group yet"
    elif treated.n < MIN_GROUP or control.n < MIN_GROUP:
        unit = "customers" if metric in METRICS else "decisions"
        note = f"too few {unit} for an interval (needs {MIN_GROUP} in each group)"
    else:
        se = math.sqrt(treated.variance / treated.n + control.variance / control.n)
        low, high = difference - Z_95 * se, difference + Z_95 * se
    return Lift(metric, treated.mean, control.mean, difference, low, high, treated.n, control.n, note)
