"""Defect 5: the daily budget goes to the highest expected value across the whole audience.

Before, it was spent page by page in customer-id order, so the first page took almost all of
it. These tests run real cycles on both databases with pages (partitions) of 10 customers.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

import legato.cycle.run
from legato.clock import FixedClock
from legato.cycle import run_cycle
from legato.cycle.budget import Candidates, reserve
from legato.decide.policy import BatchDecision, PolicyParams
from legato.decide.registry import POLICIES
from legato.deliver.dispatch import transports
from legato.validation import parse_playbook
from legato.playbook.models import Playbook
from legato.store.ingest import import_customers
from legato.store.schema import agents, audit_log, budget_reservations, cycle_agents, cycle_partitions, cycles, decisions, outbox

AT = datetime(2024, 3, 4, 8, 0, tzinfo=timezone.utc)
N = 40

PLAYBOOK = """
brand:
  name: Test Co
  legal: {sender_name: Test Co, postal_address: "1 Main St", support_contact: "help@test.example", unsubscribe_url: "https://test.example/u"}
attributes: {score: number}
objectives:
  - {id: grow, goal: engagement, why: testing, stages: [any], kpis: [{metric: visit_rate, target: 0.1}]}
lifecycle:
  - {stage: any, when: "true"}
channels:
  email: {kind: file, path: out/email.jsonl}
creatives:
  - {id: hello, channel: email, subject: "Hi", body: "Hello {{ customer.id }}. Unsubscribe: {{ unsubscribe_url }} {{ brand.postal_address }}"}
agents:
  - id: mailer
    objective: grow
    audience: "true"
    actions: {creatives: [hello], send_windows: ["09:00-17:00"], do_nothing: false}
    policy: {name: POLICY}
    features: ["score"]
    holdout: 0
    trust_stage: 3
    budget: {daily_sends: 8}
guardrails:
  consent:
    - {channel: email, purpose: marketing}
"""


class ByScore:
    """A test policy whose expected value is the customer's first feature, their score (column 0 is the intercept).

    A learning policy's estimates depend on its history; this one makes "the highest
    expected value" a known set of customers.
    """

    name: ClassVar[str] = "by_score"

    class Params(PolicyParams):
        pass

    def __init__(self, n_actions: int, params: Any = None) -> None:
        self.n_actions = n_actions
        self.params = params or self.Params()

    def decide(self, features: npt.NDArray[np.float64], rng: np.random.Generator, allowed: Any = None) -> BatchDecision:
        n = features.shape[0]
        return BatchDecision(actions=np.zeros(n, dtype=np.int64), propensities=np.ones(n), expected_values=features[:, 1].astype(float))

    def update(self, *_: Any) -> None:
        pass

    def state(self) -> dict[str, Any]:
        return {"policy": self.name, "n_actions": self.n_actions, "params": {}}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> ByScore:
        return cls(int(state["n_actions"]))


@pytest.fixture
def pages_of_ten(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(legato.cycle.run, "PAGE", 10)
    monkeypatch.setitem(POLICIES, ByScore.name, ByScore)


def load(engine: Engine, scores: list[float]) -> None:
    ids = [f"c{i:03d}" for i in range(len(scores))]
    table = pa.table(
        {
            "id": ids,
            "email": [f"{c}@test.example" for c in ids],
            "time_zone": ["UTC"] * len(ids),
            "consent_email_marketing": ["express"] * len(ids),
            "score": scores,
        }
    )
    import_customers(engine, table, attribute_types={"score": "number"}, clock=FixedClock(AT))


def book(policy: str) -> Playbook:
    return parse_playbook(PLAYBOOK.replace("POLICY", policy))


def scheduled(engine: Engine) -> list[str]:
    with engine.connect() as c:
        return sorted(c.execute(sa.select(decisions.c.customer_id).where(decisions.c.status == "scheduled")).scalars())


@pytest.mark.usefixtures("pages_of_ten")
def test_the_budget_goes_to_the_highest_expected_value_in_any_page(engine: Engine, tmp_path: Path) -> None:
    load(engine, [float(i) for i in range(N)])  # the best 8 are the last 8 customers, all on the last page
    pb = book("by_score")
    report = run_cycle(engine, pb, FixedClock(AT), transports(pb, tmp_path)).agents["mailer"]
    assert report.scheduled == 8 and report.suppressed["budget:daily_sends"] == N - 8
    assert scheduled(engine) == [f"c{i:03d}" for i in range(N - 8, N)]


@pytest.mark.usefixtures("pages_of_ten")
def test_equal_values_share_the_budget_at_random_not_by_id(engine: Engine, tmp_path: Path) -> None:
    load(engine, [1.0] * N)  # every customer ties
    pb = book("uniform_random")
    run_cycle(engine, pb, FixedClock(AT), transports(pb, tmp_path))
    chosen = scheduled(engine)
    assert len(chosen) == 8
    pages = {int(c[1:]) // 10 for c in chosen}
    # Id order would put all 8 on the first page; a seeded random tie-break spreads them.
    assert sum(1 for c in chosen if int(c[1:]) < 10) < 6 and len(pages) >= 3


@pytest.mark.usefixtures("pages_of_ten")
def test_the_tie_break_is_seeded(engine: Engine, tmp_path: Path) -> None:
    """The same cycle (agent, time, partitions) run again picks the same customers."""
    load(engine, [1.0] * N)
    pb = book("uniform_random")
    picks = []
    for _ in range(2):
        run_cycle(engine, pb, FixedClock(AT), transports(pb, tmp_path))
        picks.append(scheduled(engine))
        with engine.begin() as c:
            for table in (outbox, budget_reservations, cycle_partitions, cycle_agents, decisions, audit_log, cycles):
                c.execute(sa.delete(table))
    assert picks[0] == picks[1] and len(picks[0]) == 8


@pytest.mark.usefixtures("pages_of_ten")
def test_a_later_cycle_the_same_day_gets_only_what_is_left(engine: Engine, tmp_path: Path) -> None:
    load(engine, [float(i) for i in range(N)])
    pb = book("by_score")
    run_cycle(engine, pb, FixedClock(AT), transports(pb, tmp_path))
    later = run_cycle(engine, pb, FixedClock(AT + timedelta(hours=1)), transports(pb, tmp_path)).agents["mailer"]
    assert later.scheduled == 0 and later.suppressed["budget:daily_sends"] == N
    with engine.connect() as c:
        assert c.execute(sa.select(sa.func.sum(budget_reservations.c.sends))).scalar_one() == 8


def _cycle(engine: Engine, at: datetime) -> int:
    with engine.begin() as c:
        return int(c.execute(sa.insert(cycles).values(at=at, started_at=at, status="running").returning(cycles.c.id)).scalar_one())


def test_two_writers_cannot_both_reserve_what_is_left(engine: Engine) -> None:
    """The second reservation waits for the first to commit, then sees what is left."""
    load(engine, [1.0])
    pb = book("uniform_random")
    agent = pb.agents[0]
    with engine.begin() as c:
        c.execute(sa.insert(agents).values(id="mailer", trust_stage=3, status="active", updated_at=AT))
    first_cycle, second_cycle = _cycle(engine, AT), _cycle(engine, AT + timedelta(minutes=1))
    candidates = [Candidates(expected=np.ones(6), tie=np.linspace(0, 0.5, 6), cost=np.zeros(6))]
    kept: dict[str, int] = {}

    def second() -> None:
        with engine.begin() as c:
            reserve(c, pb, agent, second_cycle, AT + timedelta(minutes=1), candidates, "s")
        with engine.connect() as c:
            kept["second"] = c.execute(sa.select(budget_reservations.c.sends).where(budget_reservations.c.cycle_id == second_cycle)).scalar_one()

    with engine.begin() as c:
        reserve(c, pb, agent, first_cycle, AT, candidates, "f")
        writer = threading.Thread(target=second)
        writer.start()
        writer.join(timeout=0.5)  # it must be waiting for this transaction's lock, not done
        assert writer.is_alive()
    writer.join(timeout=30)
    with engine.connect() as c:
        first = c.execute(sa.select(budget_reservations.c.sends).where(budget_reservations.c.cycle_id == first_cycle)).scalar_one()
    assert first == 6 and kept["second"] == 2  # 8 a day: 6 then the 2 left
