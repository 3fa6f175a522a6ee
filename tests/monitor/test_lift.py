"""Lift per customer: every customer the agent decided for (intent to treat) against its holdout or the global control."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import numpy as np
import pytest
from sqlalchemy import Engine

import sqlalchemy as sa

from legato.monitor.lift import MIN_GROUP, Z_95, Lift, lift, measure
from legato.store.schema import cycles

Write = Callable[..., None]


def measured(engine: Engine, **options: object) -> dict[str, Lift]:
    with engine.connect() as c:
        return {item.metric: item for item in lift(c, "mailer", **options)}  # type: ignore[arg-type]


def welch(treated: list[float], control: list[float]) -> tuple[float, float, float]:
    """The difference of means and its 95% interval, computed here from the raw outcomes."""
    t, c = np.array(treated), np.array(control)
    difference = t.mean() - c.mean()
    se = np.sqrt(t.var(ddof=1) / t.size + c.var(ddof=1) / c.size)
    return difference, difference - Z_95 * se, difference + Z_95 * se


def test_every_decision_outside_the_holdout_is_treated_not_only_the_sends(engine: Engine, write_decisions: Write) -> None:
    write_decisions("sent", 40, visited=[i < 10 for i in range(40)], revenue=[30.0 if i < 4 else None for i in range(40)])
    write_decisions("suppressed", 20)  # chosen but never sent: still the agent's doing
    write_decisions("holdout", 30, visited=[i < 3 for i in range(30)], revenue=[50.0] + [0.0] * 29)
    result = measured(engine)
    assert set(result) == {"visit_rate", "conversion_rate", "revenue_per_customer", "reward_per_customer", "open_rate", "click_rate"}
    visits = result["visit_rate"]
    assert (visits.n_treated, visits.n_control) == (60, 30)
    assert visits.treated == pytest.approx(10 / 60) and visits.control == pytest.approx(3 / 30)
    treated_visits, control_visits = [1.0] * 10 + [0.0] * 50, [1.0] * 3 + [0.0] * 27
    difference, low, high = welch(treated_visits, control_visits)
    assert (visits.difference, visits.low, visits.high) == pytest.approx((difference, low, high))
    revenue = result["revenue_per_customer"]  # a missing revenue is no revenue
    assert revenue.treated == pytest.approx(120 / 60) and revenue.control == pytest.approx(50 / 30)
    assert (revenue.difference, revenue.low, revenue.high) == pytest.approx(welch([30.0] * 4 + [0.0] * 56, [50.0] + [0.0] * 29))


def test_no_interval_below_the_minimum_group_size(engine: Engine, write_decisions: Write) -> None:
    write_decisions("sent", MIN_GROUP, visited=[i % 3 == 0 for i in range(MIN_GROUP)])
    write_decisions("holdout", MIN_GROUP - 1, visited=[i % 5 == 0 for i in range(MIN_GROUP - 1)])
    small = measured(engine)["visit_rate"]
    assert small.low is None and small.high is None
    assert small.difference == pytest.approx(10 / 30 - 6 / 29)  # the point estimate is still reported
    write_decisions("holdout", 1)
    enough = measured(engine)["visit_rate"]
    assert enough.n_control == MIN_GROUP and enough.low is not None and enough.low < enough.difference < enough.high


def test_only_this_agents_settled_decisions_in_the_window_count(
    engine: Engine, write_decisions: Write, cycle_at: datetime
) -> None:
    assert measured(engine) == {}  # nothing settled: nothing to report
    write_decisions("sent", 30, visited=True, settled_at=None)  # not settled yet
    write_decisions("sent", 30, visited=True, agent_id="other")
    assert measured(engine) == {}
    write_decisions("sent", 30, visited=[i < 6 for i in range(30)])
    write_decisions("sent", 30, visited=True, decided_at=cycle_at + timedelta(days=1))
    write_decisions("holdout", 30, visited=[i < 3 for i in range(30)])
    everything = measured(engine)["visit_rate"]
    assert (everything.n_treated, everything.treated) == (60, pytest.approx(36 / 60))
    first_day = measured(engine, decided_from=cycle_at, decided_to=cycle_at + timedelta(days=1))["visit_rate"]
    assert (first_day.n_treated, first_day.treated, first_day.n_control) == (30, pytest.approx(0.2), 30)
    with engine.connect() as c:
        second_day = measure(c, "mailer", decided_from=cycle_at + timedelta(days=1))
    # Nobody held out that day: nothing to compare with, said in words, no lift of zero.
    assert second_day.lifts == [] and (second_day.customers_treated, second_day.customers_control) == (30, 0)
    assert second_day.nothing_yet is not None and "none in the agent's holdout" in second_day.nothing_yet


def test_against_the_global_control_the_agents_holdout_is_left_out(engine: Engine, write_decisions: Write) -> None:
    write_decisions("sent", 40, purchased=[i < 8 for i in range(40)], reward=[1.0 if i < 8 else 0.0 for i in range(40)])
    write_decisions("holdout", 40, purchased=[i < 6 for i in range(40)])
    write_decisions("control", 40, purchased=[i < 2 for i in range(40)])
    holdout = measured(engine)["conversion_rate"]
    # The global control is no part of the agent's comparison with its holdout, on either side.
    assert (holdout.n_treated, holdout.n_control) == (40, 40)
    assert (holdout.treated, holdout.control) == (pytest.approx(0.2), pytest.approx(6 / 40))
    program = measured(engine, against="global_control")["conversion_rate"]
    assert (program.n_treated, program.n_control) == (40, 40)
    assert (program.treated, program.control) == (pytest.approx(0.2), pytest.approx(0.05))
    assert measured(engine, against="global_control")["reward_per_customer"].treated == pytest.approx(0.2)


def _another_cycle(engine: Engine, at: datetime) -> int:
    with engine.begin() as c:
        return int(c.execute(sa.insert(cycles).values(at=at, started_at=at, finished_at=at, status="finished").returning(cycles.c.id)).scalar_one())


def test_a_customer_decided_for_every_day_is_one_customer(engine: Engine, write_decisions: Write, cycle_at: datetime) -> None:
    """30 cycles for the same 40 + 30 customers: n counts 70 customers, not 2,100 decisions, and the
    interval is Welch's over the customers' summed outcomes, far wider than one over decisions."""
    treated = [f"t{i:03d}" for i in range(40)]
    held = [f"h{i:03d}" for i in range(30)]
    per_customer_t: dict[str, list[float]] = {c: [] for c in treated}
    per_customer_h: dict[str, list[float]] = {c: [] for c in held}
    rng = np.random.default_rng(3)
    for day in range(30):
        at = cycle_at + timedelta(days=day)
        cycle = _another_cycle(engine, at)
        # A customer's days are alike (a buyer buys often): what counting decisions gets wrong.
        t_rev = [float(30 * (i < 10) * rng.integers(0, 2)) for i in range(40)]
        h_rev = [float(30 * (i < 6) * rng.integers(0, 2)) for i in range(30)]
        write_decisions("sent", 40, customer_id=treated, cycle_id=cycle, decided_at=at, revenue=t_rev, visited=[r > 0 for r in t_rev])
        write_decisions("holdout", 30, customer_id=held, cycle_id=cycle, decided_at=at, revenue=h_rev, visited=[r > 0 for r in h_rev])
        for c, r in zip(treated, t_rev):
            per_customer_t[c].append(r)
        for c, r in zip(held, h_rev):
            per_customer_h[c].append(r)
    result = measured(engine)
    revenue = result["revenue_per_customer"]
    assert (revenue.n_treated, revenue.n_control) == (40, 30)
    t_sums = [sum(v) for v in per_customer_t.values()]
    h_sums = [sum(v) for v in per_customer_h.values()]
    assert (revenue.treated, revenue.control) == (pytest.approx(np.mean(t_sums)), pytest.approx(np.mean(h_sums)))
    assert (revenue.difference, revenue.low, revenue.high) == pytest.approx(welch(t_sums, h_sums))
    by_decision = welch([r for v in per_customer_t.values() for r in v], [r for v in per_customer_h.values() for r in v])
    assert (revenue.high - revenue.low) / 30 > (by_decision[2] - by_decision[1])  # per-customer scale, honestly wide
    visits = result["visit_rate"]  # the share of customers with at least one visit in the period
    assert visits.treated == pytest.approx(np.mean([s > 0 for s in t_sums])) and visits.n_treated == 40
    with engine.connect() as c:
        report = measure(c, "mailer")
    assert (report.decisions, report.settled, report.customers_treated, report.customers_control) == (2100, 2100, 40, 30)


def test_a_customer_in_both_groups_is_left_out_and_counted(engine: Engine, write_decisions: Write, cycle_at: datetime) -> None:
    write_decisions("sent", 40, visited=[i < 8 for i in range(40)])
    write_decisions("holdout", 40, visited=[i < 4 for i in range(40)])
    cycle = _another_cycle(engine, cycle_at + timedelta(days=1))
    # The holdout share changed: d00000..d00004, treated yesterday, are held out today.
    write_decisions("holdout", 5, customer_id=[f"d{i:05d}" for i in range(5)], cycle_id=cycle, decided_at=cycle_at + timedelta(days=1))
    with engine.connect() as c:
        report = measure(c, "mailer")
    assert report.switched == 5 and (report.customers_treated, report.customers_control) == (35, 40)


def test_no_data_is_not_a_lift_of_zero(engine: Engine, write_decisions: Write, cycle_at: datetime) -> None:
    with engine.connect() as c:
        nothing = measure(c, "mailer")
    assert nothing.lifts == [] and nothing.nothing_yet == "no decisions in this period"
    write_decisions("sent", 40, settled_at=None)
    write_decisions("holdout", 40, settled_at=None)
    with engine.connect() as c:
        waiting = measure(c, "mailer")
    assert waiting.lifts == [] and waiting.nothing_yet is not None
    assert "80 decisions, none settled yet (the first made 2024-03-04 08:00 UTC)" in waiting.nothing_yet
    # Settled, but not one outcome has been imported: no "+0 (95% CI +0 to +0)".
    write_decisions("sent", 40)
    write_decisions("holdout", 40)
    with engine.connect() as c:
        empty = measure(c, "mailer")
        assert lift(c, "mailer") == []
    assert empty.lifts == []
    assert empty.nothing_yet is not None and "no outcome" in empty.nothing_yet and "80 decisions not settled yet" in empty.nothing_yet
    # Visits arrive; opens never were imported: that metric says so instead of a zero interval.
    write_decisions("sent", 40, visited=[i < 10 for i in range(40)])
    write_decisions("holdout", 40, visited=[i < 5 for i in range(40)])
    result = measured(engine)
    assert result["visit_rate"].low is not None and result["visit_rate"].note is None
    opens = result["open_rate"]
    assert opens.low is None and opens.high is None and opens.note == "no open recorded for either group yet"
