"""Outcome attribution: which decision gets credit for what a customer did.

A decision's window opens when it is made and closes ``attribution_days`` later, or earlier
when the same agent decides for the same customer again, whatever it decided (the later
decision takes the credit from then on: last touch). Windows open and close the same way for every decision alike
(sent, "do nothing", suppressed, holdout), so that treated and held-out customers are
measured over the same windows, no outcome is counted twice for one agent, and the lift
against the holdout is unbiased. An agent that decides daily therefore measures each
decision over the day that follows it, whatever ``attribution_days`` says.
Decisions are *settled* once their window has closed: their outcome and reward are written
and they are handed to the learner exactly once. An outcome imported after its decision
settled, that occurred inside the window, is credited later (:func:`credit_late`): the
stored outcome and reward are corrected, the policy is not taught twice.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa
from sqlalchemy import Connection

from legato.monitor import metrics
from legato.playbook.models import Metric, Objective
from legato.store.schema import decisions, events, review_items, settings
from legato.store.status import DecisionStatus, ReviewStatus

# A refund (revenue stored negative) inside a decision's window takes its amount back from
# the revenue credited to that decision; it is neither a visit nor a purchase.
OUTCOME_TYPES = ("visit", "purchase", "refund", "unsubscribe", "complaint", "open", "click")
# A decision's stored outcome, bound by name: settling writes it once, crediting a late
# outcome rewrites it (the same columns, the same keys in each row's values).
_OUTCOME_PARAMS = {
    "reward": sa.bindparam("r"),
    "visited": sa.bindparam("v"),
    "purchased": sa.bindparam("p"),
    "revenue": sa.bindparam("m"),
    "unsubscribed": sa.bindparam("u"),
    "complained": sa.bindparam("c"),
    "opened": sa.bindparam("o"),
    "clicked": sa.bindparam("k"),
}
EXECUTED = (DecisionStatus.SENT, DecisionStatus.NOTHING)  # what the customer actually experienced was the chosen action


@dataclass(frozen=True)
class Settled:
    """Decisions whose attribution window closed in this step, as arrays."""

    ids: npt.NDArray[np.int64]
    actions: list[str]  # action keys; the learner maps them to its current action indices
    propensity: npt.NDArray[np.float64]
    reward: npt.NDArray[np.float64]
    executed: npt.NDArray[np.bool_]  # sent, "do nothing", or turned down by a reviewer: usable for learning
    holdout: npt.NDArray[np.bool_]
    contexts: list[bytes | None]
    visited: npt.NDArray[np.bool_]
    purchased: npt.NDArray[np.bool_]
    revenue: npt.NDArray[np.float64]

    def __len__(self) -> int:
        return len(self.ids)


def settle(
    connection: Connection, agent_id: str, objective: Objective, offer_costs: dict[str, float], now: datetime
) -> Settled:
    """Attribute outcomes to the agent's decisions whose window has closed, and store them."""
    window = timedelta(days=objective.attribution_days)
    pending = connection.execute(
        sa.select(
            decisions.c.id,
            decisions.c.customer_id,
            decisions.c.decided_at,
            decisions.c.send_at,
            decisions.c.status,
            decisions.c.action,
            decisions.c.propensity,
            decisions.c.holdout,
            decisions.c.context,
            decisions.c.offer_id,
            # what its counts are kept under (monitor.metrics)
            decisions.c.agent_id,
            decisions.c.objective,
            decisions.c.channel,
            decisions.c.creative_id,
            decisions.c.segment,
            decisions.c.route,
            metrics.message_left(),
        )
        .where(
            decisions.c.agent_id == agent_id, decisions.c.settled_at.is_(None), decisions.c.decided_at <= now - window
        )
        .order_by(decisions.c.id)
    ).all()
    if not pending:
        return _empty()
    found = _attribute(connection, agent_id, pending, window, now)
    visited, purchased, revenue = found.visited, found.purchased, found.revenue
    unsubscribed, complained = found.unsubscribed, found.complained

    sent = np.array([row.status == DecisionStatus.SENT for row in pending])
    offer_cost = np.array([offer_costs.get(row.offer_id, 0.0) if row.offer_id else 0.0 for row in pending])
    reward = objective_reward(objective, visited, purchased, revenue, sent, offer_cost, unsubscribed, complained)
    # A proposal a person rejected is negative feedback: never sent, it earns only the penalty
    # (what the customer did next was not the message's doing); rejected after it went out
    # (an audit sample), the penalty comes on top of its outcome.
    rejected_ids = _rejected(connection, [row.id for row in pending])
    rejected = np.array([row.id in rejected_ids for row in pending], dtype=bool)
    penalty = objective.reward.rejection_penalty
    # The stored reward is the outcome's, which lift and track records compare with the
    # holdout; the penalty is feedback for the policy only.
    feedback = np.where(rejected & ~sent, -penalty, reward - penalty * rejected)
    connection.execute(
        sa.update(decisions)
        .where(decisions.c.id == sa.bindparam("d_id"))
        .values(
            **_OUTCOME_PARAMS,
            settled_at=now,
        ),
        [
            {"d_id": row.id, "r": r, **values}
            for row, r, values in zip(pending, reward.tolist(), found.rows(), strict=True)
        ],
    )
    # What settled is counted in the same transaction as its stored outcome.
    tally = metrics.Tally()
    for row, values, cost in zip(pending, found.rows(), offer_cost.tolist(), strict=True):
        key, arm = metrics.key_of(row), metrics.arm_of(row.route, bool(row.holdout), bool(row.left))
        tally.count(key, metrics.Measure.SETTLED, arm=arm)
        metrics.count_outcome(tally, key, arm, _outcome_of(values), cost)
    metrics.add(connection, tally)
    return Settled(
        ids=np.array([row.id for row in pending], dtype=np.int64),
        actions=[row.action for row in pending],
        propensity=np.array([row.propensity for row in pending]),
        reward=feedback,
        executed=np.array([(row.status in EXECUTED or row.id in rejected_ids) and not row.holdout for row in pending]),
        holdout=np.array([bool(row.holdout) for row in pending]),
        contexts=[row.context for row in pending],
        visited=visited,
        purchased=purchased,
        revenue=revenue,
    )


@dataclass(frozen=True)
class Outcomes:
    """What each of some decisions' customers did within the decision's window."""

    visited: npt.NDArray[np.bool_]
    purchased: npt.NDArray[np.bool_]
    revenue: npt.NDArray[np.float64]
    unsubscribed: npt.NDArray[np.bool_]
    complained: npt.NDArray[np.bool_]
    opened: npt.NDArray[np.bool_]
    clicked: npt.NDArray[np.bool_]

    def rows(self) -> list[dict[str, object]]:
        """One dict per decision, keyed by the bind names the updates use."""
        return [
            {"v": v, "p": p, "m": m, "u": u, "c": c, "o": o, "k": k}
            for v, p, m, u, c, o, k in zip(
                self.visited.tolist(),
                self.purchased.tolist(),
                self.revenue.tolist(),
                self.unsubscribed.tolist(),
                self.complained.tolist(),
                self.opened.tolist(),
                self.clicked.tolist(),
                strict=True,
            )
        ]


def outcomes_so_far(connection: Connection, agent_id: str, rows: Sequence[Any], window: timedelta, now: datetime) -> Outcomes:
    """What each of some decisions' customers did in its window up to ``now``, the window maybe still open.

    The same rule as settling (``rows``: id, customer_id, decided_at), read without writing:
    the stop-loss counts unsubscribes and complaints as they arrive rather than a week later.
    """
    return _attribute(connection, agent_id, rows, window, now)


def _attribute(connection: Connection, agent_id: str, rows: Sequence[Any], window: timedelta, now: datetime) -> Outcomes:
    """The outcomes within each decision's window (``rows``: id, customer_id, decided_at).

    The window opens at the decision and closes ``window`` later, or at the agent's next
    message to the customer, whichever comes first; an outcome that names one of the agent's
    decisions counts for that decision alone, within its whole window.
    """
    n = len(rows)
    found = Outcomes(*(np.zeros(n, bool) for _ in range(2)), np.zeros(n), *(np.zeros(n, bool) for _ in range(4)))  # type: ignore[arg-type]
    if not n:
        return found
    customers = sorted({row.customer_id for row in rows})
    start = min(row.decided_at for row in rows)
    # The agent's next decision for the same customer cuts a window short, whatever it was
    # (a message, "do nothing", held out): windows then follow one another without overlap,
    # each outcome counts once per agent, and a customer's outcomes over a period are the
    # sum of their decisions' (legato.monitor.lift).
    touches: dict[str, list[datetime]] = defaultdict(list)
    for offset in range(0, len(customers), 10_000):
        chunk = customers[offset : offset + 10_000]
        for customer_id, at in connection.execute(
            sa.select(decisions.c.customer_id, decisions.c.decided_at).where(
                decisions.c.agent_id == agent_id,
                decisions.c.customer_id.in_(chunk),
                decisions.c.decided_at > start,
            )
        ):
            touches[customer_id].append(at)
    outcome_rows = _events(connection, customers, start, now)
    by_customer: dict[str, list[tuple[datetime, str, float, str | None]]] = defaultdict(list)
    # An outcome that names one of this agent's decisions counts for that decision only; one
    # naming another agent's decision is, for this agent, like any other outcome.
    named = {str(r) for *_, r in outcome_rows if r is not None}
    own = _own_decisions(connection, agent_id, named)
    for customer_id, kind, at, revenue, reference in outcome_rows:
        mine = None if reference is None or str(reference) not in own else str(reference)
        by_customer[customer_id].append((at, kind, revenue or 0.0, mine))

    for i, row in enumerate(rows):
        opened = row.decided_at
        closes = opened + window
        following = [t for t in touches.get(row.customer_id, ()) if t > opened]
        if following:
            closes = min(closes, min(following))
        for at, kind, amount, reference in by_customer.get(row.customer_id, ()):
            # An outcome that names its decision counts for that decision only, within the
            # whole window: a later message does not take credit for it.
            if reference is None:
                counts = opened < at <= closes
            else:
                counts = reference == str(row.id) and opened < at <= opened + window
            if counts:
                found.visited[i] |= kind in ("visit", "purchase")
                found.purchased[i] |= kind == "purchase"
                found.unsubscribed[i] |= kind == "unsubscribe"
                found.complained[i] |= kind == "complaint"
                found.opened[i] |= kind == "open"
                found.clicked[i] |= kind == "click"
                found.revenue[i] += amount if kind in ("purchase", "refund") else 0.0
    return found


@dataclass(frozen=True)
class LateCredit:
    """What :func:`credit_late` changed: decisions whose stored outcome late events corrected."""

    decisions: int = 0  # settled decisions whose outcome or reward changed
    events: int = 0  # late outcome events that fall inside a settled decision's window
    ids: tuple[int, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"decisions": self.decisions, "events": self.events}


def credit_late(
    connection: Connection, agent_id: str, objective: Objective, offer_costs: dict[str, float], now: datetime
) -> LateCredit:
    """Credit outcomes imported after their decision was settled, when they occurred inside its window.

    Each import has a batch number (``events.batch``, in commit order); the agent keeps the
    highest batch its learning step has looked at in ``settings``. Events of newer batches
    that fall inside a window of one of the agent's decisions settled before this step are
    credited by attributing that decision again from every event now known (the same
    rule as :func:`settle`) and storing its outcome and reward when they changed. Doing it
    twice changes nothing: the stored outcome is recomputed, not incremented.

    The policy is not taught again: it learned from each decision once, when its window
    closed, and a bandit's update cannot be taken back (Beta Thompson counted the failure,
    the regressions took the reward), so feeding the corrected decision a second time would
    count it twice. Reports, track records, the stop-loss and the uplift gate read the
    corrected outcome.
    """
    key = _seen_key(agent_id)
    latest = connection.execute(sa.select(sa.func.max(events.c.batch))).scalar_one()
    if latest is None:
        return LateCredit()
    stored = connection.execute(sa.select(settings.c.value).where(settings.c.key == key)).scalar_one_or_none()
    seen = int(stored) if stored is not None else 0
    credit = LateCredit()
    # Nothing settled yet (a new agent, a first cycle): no event can be late for it, and the
    # decisions settled later see these events when they settle. Skips a scan of every event.
    any_settled = connection.execute(
        sa.select(decisions.c.id).where(decisions.c.agent_id == agent_id, decisions.c.settled_at.is_not(None)).limit(1)
    ).first()
    if latest > seen and any_settled is not None:
        credit = _credit(connection, agent_id, objective, offer_costs, now, seen, int(latest))
        if stored is None:
            connection.execute(sa.insert(settings).values(key=key, value=str(latest)))
        else:
            connection.execute(sa.update(settings).where(settings.c.key == key).values(value=str(latest)))
    return credit


def _credit(
    connection: Connection, agent_id: str, objective: Objective, offer_costs: dict[str, float], now: datetime, seen: int, latest: int
) -> LateCredit:
    window = timedelta(days=objective.attribution_days)
    settled_before = sa.exists().where(
        # `agent_id || ''`: not indexable on purpose. SQLite otherwise probes the agent's settled
        # decisions (ix_decisions_agent_settled) for every event, tens of thousands of rows each
        # time, instead of the customer's few (ix_decisions_customer_time): 60 s of the demo, 0.4 s so.
        (decisions.c.agent_id + "") == agent_id,
        decisions.c.customer_id == events.c.customer_id,
        decisions.c.settled_at.is_not(None),
        decisions.c.settled_at < now,
        decisions.c.decided_at < events.c.occurred_at,
    )
    arrived = connection.execute(
        sa.select(events.c.customer_id, events.c.occurred_at).where(
            events.c.batch > seen, events.c.batch <= latest, events.c.type.in_(OUTCOME_TYPES), events.c.occurred_at <= now, settled_before
        )
    ).all()
    if not arrived:
        return LateCredit()
    late_at: dict[str, list[datetime]] = defaultdict(list)
    for customer_id, at in arrived:
        late_at[customer_id].append(at)
    earliest = min(at for _, at in arrived) - window
    columns = (
        decisions.c.id, decisions.c.customer_id, decisions.c.decided_at, decisions.c.status, decisions.c.offer_id,
        decisions.c.visited, decisions.c.purchased, decisions.c.revenue, decisions.c.unsubscribed, decisions.c.complained,
        decisions.c.opened, decisions.c.clicked, decisions.c.reward,
        decisions.c.agent_id, decisions.c.objective, decisions.c.channel, decisions.c.creative_id, decisions.c.segment,
        decisions.c.route, decisions.c.holdout, metrics.message_left(),
    )
    customers = sorted(late_at)
    candidates = []
    late_events = 0
    for offset in range(0, len(customers), 10_000):
        chunk = customers[offset : offset + 10_000]
        for row in connection.execute(
            sa.select(*columns).where(
                decisions.c.agent_id == agent_id,
                decisions.c.customer_id.in_(chunk),
                decisions.c.settled_at.is_not(None),
                decisions.c.settled_at < now,
                decisions.c.decided_at >= earliest,
            )
        ):
            inside = sum(1 for at in late_at[row.customer_id] if row.decided_at < at <= row.decided_at + window)
            if inside:
                candidates.append(row)
                late_events += inside
    if not candidates:
        return LateCredit()
    candidates.sort(key=lambda row: row.id)
    found = _attribute(connection, agent_id, candidates, window, now)
    sent = np.array([row.status == DecisionStatus.SENT for row in candidates])
    offer_cost = np.array([offer_costs.get(row.offer_id, 0.0) if row.offer_id else 0.0 for row in candidates])
    reward = objective_reward(objective, found.visited, found.purchased, found.revenue, sent, offer_cost, found.unsubscribed, found.complained)
    changed = []
    tally = metrics.Tally()
    for row, r, values, cost in zip(candidates, reward.tolist(), found.rows(), offer_cost.tolist(), strict=True):
        before = (
            bool(row.visited), bool(row.purchased), float(row.revenue or 0.0), bool(row.unsubscribed), bool(row.complained),
            bool(row.opened), bool(row.clicked), float(row.reward or 0.0),
        )
        after = (values["v"], values["p"], values["m"], values["u"], values["c"], values["o"], values["k"], r)
        if any(a != b if isinstance(a, bool) else abs(a - b) > 1e-9 for a, b in zip(after, before, strict=True)):
            changed.append({"d_id": row.id, "r": r, **values})
            # The counts follow the corrected outcome: the old one taken back, the new one added.
            key, arm = metrics.key_of(row), metrics.arm_of(row.route, bool(row.holdout), bool(row.left))
            was = metrics.Outcome(bool(row.visited), bool(row.purchased), float(row.revenue or 0.0), bool(row.opened), bool(row.clicked),
                                  bool(row.unsubscribed), bool(row.complained))
            metrics.count_outcome(tally, key, arm, was, cost, sign=-1)
            metrics.count_outcome(tally, key, arm, _outcome_of(values), cost)
    if changed:
        connection.execute(
            sa.update(decisions)
            .where(decisions.c.id == sa.bindparam("d_id"))
            .values(**_OUTCOME_PARAMS),
            changed,
        )
        metrics.add(connection, tally)
    return LateCredit(len(changed), late_events, tuple(int(c["d_id"]) for c in changed))


def _outcome_of(values: dict[str, object]) -> metrics.Outcome:
    """A decision's outcome as :meth:`Outcomes.rows` gives it, for its counts."""
    return metrics.Outcome(
        bool(values["v"]), bool(values["p"]), float(values["m"] or 0.0), bool(values["o"]), bool(values["k"]), bool(values["u"]), bool(values["c"])  # type: ignore[arg-type]
    )


def _seen_key(agent_id: str) -> str:
    """The ``settings`` key of the highest event batch the agent's learning step has looked at."""
    key = f"late_outcomes_seen:{agent_id}"
    return key if len(key) <= 64 else "late_outcomes_seen:" + hashlib.sha256(agent_id.encode()).hexdigest()[:40]


def objective_reward(
    objective: Objective,
    visited: npt.NDArray[np.bool_],
    purchased: npt.NDArray[np.bool_],
    revenue: npt.NDArray[np.float64],
    sent: npt.NDArray[np.bool_],
    offer_cost: npt.NDArray[np.float64],
    unsubscribed: npt.NDArray[np.bool_],
    complained: npt.NDArray[np.bool_],
) -> npt.NDArray[np.float64]:
    """The objective's primary KPI, less contact and offer costs and guardrail penalties."""
    primary = objective.kpis[0].metric
    if primary in (Metric.revenue, Metric.revenue_per_send):
        value = revenue.astype(np.float64)
    elif primary == Metric.conversion_rate:
        value = purchased.astype(np.float64)
    else:
        value = visited.astype(np.float64)
    spec = objective.reward
    return (
        value
        - spec.contact_cost * sent
        - offer_cost * (purchased & sent)
        - spec.unsubscribe_penalty * unsubscribed
        - spec.complaint_penalty * complained
    )


def _own_decisions(connection: Connection, agent_id: str, references: set[str]) -> set[str]:
    """The ids among ``references`` (decision ids as text) that are this agent's decisions."""
    ids = [int(r) for r in references if r.isdigit()]
    found: set[str] = set()
    for offset in range(0, len(ids), 10_000):
        chunk = ids[offset : offset + 10_000]
        found.update(
            str(i)
            for i in connection.execute(
                sa.select(decisions.c.id).where(decisions.c.id.in_(chunk), decisions.c.agent_id == agent_id)
            ).scalars()
        )
    return found


def _rejected(connection: Connection, decision_ids: list[int]) -> set[int]:
    """The decisions among ``decision_ids`` whose review item a person rejected."""
    found: set[int] = set()
    for offset in range(0, len(decision_ids), 10_000):
        chunk = decision_ids[offset : offset + 10_000]
        found.update(
            connection.execute(
                sa.select(review_items.c.decision_id).where(review_items.c.decision_id.in_(chunk), review_items.c.status == ReviewStatus.REJECTED)
            ).scalars()
        )
    return found


def _events(
    connection: Connection, customers: list[str], start: datetime, now: datetime
) -> list[tuple[str, str, datetime, float | None, str | None]]:
    rows: list[tuple[str, str, datetime, float | None, str | None]] = []
    for offset in range(0, len(customers), 10_000):
        chunk = customers[offset : offset + 10_000]
        rows.extend(
            connection.execute(
                sa.select(
                    events.c.customer_id,
                    events.c.type,
                    events.c.occurred_at,
                    events.c.revenue,
                    events.c.properties["decision_id"].as_string(),
                ).where(
                    events.c.customer_id.in_(chunk),
                    events.c.type.in_(OUTCOME_TYPES),
                    events.c.occurred_at > start,
                    events.c.occurred_at <= now,
                )
            ).all()
        )
    return rows  # type: ignore[return-value]


def _empty() -> Settled:
    none_f = np.zeros(0)
    none_b = np.zeros(0, bool)
    return Settled(np.zeros(0, np.int64), [], none_f, none_f, none_b, none_b, [], none_b, none_b, none_f)
