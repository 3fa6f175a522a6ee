"""The uplift gate: learned from the agent's settled sends against its holdout, it keeps only
the customers a message moves."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import numpy as np
import pytest
from sqlalchemy import Engine

from legato.decide.features import encode_context
from legato.decide.uplift_gate import HOLDOUT_UNREACHABLE, UpliftGate, fit_gate, outcome_column
from legato.playbook.models import Kpi, Metric, Playbook, UpliftGateSettings
from legato.store.schema import decisions

Write = Callable[..., None]
N = 400  # per arm


def contexts(rng: np.random.Generator, n: int, columns: int = 4) -> tuple[np.ndarray, list[bytes]]:
    """Feature rows as the cycle stores them: an intercept, then the agent's features."""
    x = np.column_stack([np.ones(n), rng.uniform(0, 1, size=(n, columns - 1))])
    return x, encode_context(x)


def moved_when_x1_is_high(rng: np.random.Generator, x: np.ndarray, treated: bool) -> list[bool]:
    """Visits: 10% anyway; a message lifts customers with x1 > 0.5 to 60% and leaves the rest."""
    p = np.where(treated & (x[:, 1] > 0.5), 0.6, 0.1)
    return (rng.random(len(x)) < p).tolist()


def gate(engine: Engine, playbook: Playbook, now: datetime, **settings: object) -> UpliftGate:
    agent = playbook.agents[0]
    objective = next(o for o in playbook.objectives if o.id == agent.objective)
    with engine.connect() as c:
        return fit_gate(c, agent, objective, now, UpliftGateSettings(**settings))  # type: ignore[arg-type]


@pytest.fixture
def now(cycle_at: datetime) -> datetime:
    return cycle_at + timedelta(days=9)


@pytest.fixture
def experiment(write_decisions: Write) -> Callable[..., None]:
    """experiment(n, seed): n settled sends and n held-out decisions, visits as above."""

    def run(n: int = N, seed: int = 0, **columns: object) -> None:
        rng = np.random.default_rng(seed)
        for kind, treated in (("sent", True), ("holdout", False)):
            x, blobs = contexts(rng, n)
            write_decisions(kind, n, context=blobs, visited=moved_when_x1_is_high(rng, x, treated), **columns)

    return run


def test_the_gate_passes_the_customers_a_message_moves(
    engine: Engine, make_playbook: Callable[..., Playbook], experiment: Callable[..., None], now: datetime
) -> None:
    experiment()
    fitted = gate(engine, make_playbook(), now, min_samples=200, min_uplift=0.2)
    assert not fitted.is_open and fitted.reason is None and (fitted.treated, fitted.control) == (N, N)
    x, _ = contexts(np.random.default_rng(9), 400)
    passes, uplift = fitted.passes(x)
    high = x[:, 1] > 0.5
    assert uplift[high].mean() > 0.3 and abs(uplift[~high].mean()) < 0.1
    assert passes[high].mean() > 0.8 and passes[~high].mean() < 0.2
    assert np.array_equal(passes, uplift > 0.2)


def test_top_share_keeps_that_share_of_the_batch_with_the_highest_uplift(
    engine: Engine, make_playbook: Callable[..., Playbook], experiment: Callable[..., None], now: datetime
) -> None:
    experiment()
    fitted = gate(engine, make_playbook(), now, min_samples=200, min_uplift=-1.0, top_share=0.25)
    x, _ = contexts(np.random.default_rng(9), 101)
    passes, uplift = fitted.passes(x)
    assert passes.sum() == 25  # floor(0.25 × 101)
    assert uplift[passes].min() >= uplift[~passes].max()


def test_an_open_gate_passes_everyone_and_says_why(
    engine: Engine, make_playbook: Callable[..., Playbook], experiment: Callable[..., None], now: datetime
) -> None:
    experiment(n=120)
    fitted = gate(engine, make_playbook(), now, min_samples=150)
    assert fitted.is_open and (fitted.treated, fitted.control) == (120, 120)
    assert fitted.reason == "the treated arm has 120 settled decisions (150 needed); the holdout has 120 settled decisions (150 needed)"
    passes, uplift = fitted.passes(np.zeros((5, 4)))
    assert passes.all() and np.isnan(uplift).all()


def test_an_arm_where_everyone_had_the_same_outcome_keeps_the_gate_open(
    engine: Engine, make_playbook: Callable[..., Playbook], write_decisions: Write, now: datetime
) -> None:
    rng = np.random.default_rng(1)
    write_decisions("sent", 60, context=contexts(rng, 60)[1], visited=[i % 2 == 0 for i in range(60)])
    write_decisions("holdout", 60, context=contexts(rng, 60)[1], visited=False)
    fitted = gate(engine, make_playbook(), now, min_samples=50)
    assert fitted.is_open and fitted.reason == "every holdout customer had the same outcome"


def test_what_the_gate_learns_from(
    engine: Engine, make_playbook: Callable[..., Playbook], write_decisions: Write, experiment: Callable[..., None],
    now: datetime, cycle_at: datetime,
) -> None:
    """Settled sends and reachable held-out decisions of this agent, recent, with today's features."""
    experiment(n=100)
    rng = np.random.default_rng(2)
    blobs = contexts(rng, 30)[1]
    write_decisions("sent", 30, context=blobs, settled_at=None)  # not settled
    write_decisions("sent", 30, context=blobs, agent_id="other")
    write_decisions("suppressed", 30, context=blobs)  # never sent, not held out
    write_decisions("sent", 30, context=blobs, decided_at=now - timedelta(days=91))  # older than history_days
    write_decisions("sent", 30, context=contexts(rng, 30, columns=3)[1])  # decided with other features
    write_decisions("sent", 30, context=None)
    write_decisions("holdout", 30, context=blobs, findings=[HOLDOUT_UNREACHABLE])  # no message could reach them
    fitted = gate(engine, make_playbook(), now, min_samples=101)
    assert (fitted.treated, fitted.control) == (100, 100) and fitted.is_open
    write_decisions("holdout", 1, context=blobs[:1], findings=["consent_revoked:email"], decided_at=now - timedelta(days=90))
    assert gate(engine, make_playbook(), now, min_samples=101).control == 101


def test_the_outcome_is_a_purchase_for_conversion_and_revenue_objectives(make_playbook: Callable[..., Playbook]) -> None:
    visits = make_playbook().objectives[0]
    assert visits.kpis[0].metric == Metric.visit_rate and outcome_column(visits) is decisions.c.visited
    for metric in (Metric.conversion_rate, Metric.revenue, Metric.revenue_per_send):
        objective = visits.model_copy(update={"kpis": [Kpi(metric=metric, target=0.1), *visits.kpis]})
        assert outcome_column(objective) is decisions.c.purchased, metric
    # Only the primary KPI decides: a purchase KPI in second place does not.
    second = visits.model_copy(update={"kpis": [*visits.kpis, Kpi(metric=Metric.conversion_rate, target=0.1)]})
    assert outcome_column(second) is decisions.c.visited
