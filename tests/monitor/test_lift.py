"""Lift: every settled decision of the agent (intent to treat) against its holdout or the global control."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import numpy as np
import pytest
from sqlalchemy import Engine

from legato.monitor.lift import MIN_GROUP, Z_95, Lift, lift

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
    assert set(result) == {"visit_rate", "conversion_rate", "revenue_per_customer", "reward_per_decision"}
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
    second_day = measured(engine, decided_from=cycle_at + timedelta(days=1))["visit_rate"]
    assert (second_day.n_treated, second_day.n_control, second_day.treated) == (30, 0, 1.0)
    assert np.isnan(second_day.control) and second_day.low is None


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
    assert measured(engine, against="global_control")["reward_per_decision"].treated == pytest.approx(0.2)
