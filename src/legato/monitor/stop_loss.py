"""Stop-loss: when an agent's sends credibly cross a limit of its playbook, pause it and demote it.

Each rule of an agent's ``stop_loss:`` is judged once per cycle, in its plan step, on the
agent's daily series since its epoch (its last resume by a person; :mod:`legato.monitor.series`):

- **Tripwires** (no ``against``): a rate of the agent's own sends against an absolute limit:
  unsubscribes, complaints (0.3% is the bulk-sender limit of Google's and Yahoo's sender
  requirements of February 2024: "keep spam rates reported in Postmaster Tools below 0.3%"),
  bounces, or visits/conversions for a floor. Unsubscribes, complaints and bounces count as
  they arrive; visits and conversions once a send's window closed. Judged by the exact
  Bernoulli mixture restarted daily (Shiryaev–Roberts; :mod:`legato.monitor.sequential`):
  P(false alarm within 30 daily looks) <= ``alpha``, and a change is caught within days of
  its start rather than diluted by a healthy past.
- **Offer cost**: the offer cost of a day's sends above a daily amount. Not a statistic: the
  cost is known, so any day over it is a breach.
- **Guardrails against the holdout** (``against: holdout``): the difference treated − holdout
  of a KPI over settled decisions since the epoch, by the one-sided mSPRT (Johari et al.
  2017; Statsig after Zhao et al. 2019): P(ever a false alarm) <= ``alpha``.

No rule is read before ``min_sends`` sends (and ``min_holdout`` holdout decisions) are in its
sample. On a breach, in the plan's transaction: the agent is paused and demoted to the lowest
``demote_to`` among the rules breached, both through :mod:`legato.trust.agent_state` (audited
``stop_loss_breach`` and ``agent_paused`` with the evidence: metric, values, statistic,
threshold, samples); a finding is queued for a person; an alert is raised
(:mod:`legato.monitor.alerts`). Only a person resumes it (``legato agents resume`` with a
reason, audited), which starts a new epoch.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import numpy as np
from sqlalchemy import Connection

from legato.monitor.alerts import incident_key, raise_alert
from legato.monitor.sequential import holdout_log_lr, rate_log_lr, tripwire_threshold
from legato.monitor.series import AgentSeries, Floats, agent_series
from legato.playbook.models import Agent, Playbook, StopLoss, StopLossMetric
from legato.store.status import AgentStatus, AlertKind, ReviewKind
from legato.trust.agent_state import StageCause, change_stage, change_status
from legato.trust.review.items import NewItem, open_item

ACTOR = "stop_loss"
FINDING_REASON = "stop_loss"
FINDING_PRIORITY = 95  # an agent stopped: above every decision's default priority

# Which outcome of the series each rate counts, and whether it is known as it happens.
OUTCOME = {
    StopLossMetric.visit_rate: "visited",
    StopLossMetric.conversion_rate: "purchased",
    StopLossMetric.revenue_per_send: "revenue",
    StopLossMetric.unsubscribe_rate: "unsubscribed",
    StopLossMetric.complaint_rate: "complained",
    StopLossMetric.bounce_rate: "bounced",
}
FAST = frozenset({StopLossMetric.unsubscribe_rate, StopLossMetric.complaint_rate, StopLossMetric.bounce_rate})


class Method(StrEnum):
    TRIPWIRE = "shiryaev_roberts_bernoulli_mixture"
    HOLDOUT = "msprt_normal_mixture_one_sided"
    BUDGET = "daily_amount"


@dataclass(frozen=True)
class Breach:
    """A rule crossed, with its evidence."""

    metric: str
    side: str  # "max" or "min": which limit
    limit: float
    value: float  # the rate (or difference, or cost) over the sample judged
    sends: int  # the agent's sends in that sample
    demoted_to: int
    method: Method
    statistic: float  # log of the test statistic (the cost, for offer cost)
    threshold: float  # log of its threshold (the amount, for offer cost)
    alpha: float | None
    first_day: str  # the sample's first day (UTC)
    last_day: str
    holdout_value: float | None = None
    holdout: int | None = None

    def to_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["method"] = self.method.value
        return data

    def describe(self) -> str:
        against = f" against the holdout's {self.holdout_value:.4g} ({self.holdout:,} decisions)" if self.holdout_value is not None else ""
        return (
            f"{self.metric} {self.value:.4g}{against} over {self.sends:,} sends from {self.first_day} to {self.last_day} "
            f"crossed its {self.side} {self.limit:.4g}"
        )


@dataclass(frozen=True)
class StopLossResult:
    stage: int  # the agent's stage after the stop-loss
    breaches: list[Breach]
    paused: bool  # the stop-loss paused the agent: it decides nothing more this cycle


def check_stop_loss(
    connection: Connection, playbook: Playbook, agent: Agent, stage: int, now: datetime, series: AgentSeries | None = None
) -> StopLossResult:
    """Judge the agent's stop-loss rules at ``now`` and act on a breach (see the module's docstring)."""
    if not agent.stop_loss:
        return StopLossResult(stage, [], False)
    series = series or agent_series(connection, playbook, agent, now)
    breaches = [b for rule in agent.stop_loss for b in judge(rule, series, agent)]
    if not breaches:
        return StopLossResult(stage, [], False)
    evidence = {"breaches": [b.to_dict() for b in breaches], "epoch": series.since.isoformat() if series.since else None}
    reason = "; ".join(b.describe() for b in breaches)
    target = min(b.demoted_to for b in breaches)
    changed = change_stage(connection, agent.id, target, cause=StageCause.STOP_LOSS, actor=ACTOR, reason=reason, now=now, detail=evidence)
    change_status(connection, agent.id, AgentStatus.PAUSED, actor=ACTOR, reason=reason, now=now, detail=evidence)
    after = changed.to_stage if changed is not None else stage
    summary = f"agent {agent.id} paused by its stop-loss" + (f" and demoted {stage} → {after}" if after != stage else "") + f": {reason}"
    alert_id, _ = raise_alert(
        connection, incident_key(AlertKind.STOP_LOSS, agent.id), AlertKind.STOP_LOSS, summary, {**evidence, "from": stage, "to": after}, now, agent_id=agent.id
    )
    item = NewItem(
        kind=ReviewKind.FINDING, reason=FINDING_REASON, priority=FINDING_PRIORITY, created_at=now, agent_id=agent.id,
        evidence={**evidence, "from": stage, "to": after, "paused": True, "alert_id": alert_id,
                  "resume": f"legato agents resume {agent.id} --by NAME --reason TEXT"},
    )
    open_item(connection, item, playbook.review.sla_hours)
    return StopLossResult(min(after, stage), breaches, True)


def judge(rule: StopLoss, series: AgentSeries, agent: Agent) -> list[Breach]:
    """The rule's breaches on the series (one per limit crossed), reading only today's look."""
    if not series.days:
        return []
    if rule.metric == StopLossMetric.offer_cost:
        return _offer_cost(rule, series)
    sides = [(side, limit) for side, limit in (("max", rule.max), ("min", rule.min)) if limit is not None]
    judged = _holdout if rule.against == "holdout" else _tripwire
    return [b for side, limit in sides if (b := judged(rule, series, side, float(limit))) is not None]


def _tripwire(rule: StopLoss, series: AgentSeries, side: str, limit: float) -> Breach | None:
    outcome = OUTCOME[rule.metric]
    group = series.sent if rule.metric in FAST else series.settled_sent
    events, trials = group.sums[outcome], group.n
    # Today's look of the Shiryaev–Roberts statistic: the mixture over each restart's days k..today.
    xs, ns = np.cumsum(events[::-1])[::-1], np.cumsum(trials[::-1])[::-1]
    terms = np.where(ns >= rule.min_sends, rate_log_lr(xs, ns, limit, above=side == "max"), -np.inf)
    if not np.isfinite(terms).any() and not np.isposinf(terms).any():
        return None
    top = float(np.max(terms))
    statistic = top if not np.isfinite(top) else top + float(np.log(np.sum(np.exp(terms - top))))
    threshold = tripwire_threshold(rule.alpha)
    if statistic < threshold:
        return None
    k = int(np.argmax(terms))  # the restart that carries the evidence: its days are the sample shown
    return Breach(
        rule.metric.value, side, limit, float(xs[k] / ns[k]), int(ns[k]), rule.demote_to, Method.TRIPWIRE, statistic, threshold, rule.alpha,
        series.days[k].isoformat(), series.days[-1].isoformat(),
    )


def _holdout(rule: StopLoss, series: AgentSeries, side: str, limit: float) -> Breach | None:
    outcome = OUTCOME[rule.metric]
    t, c = series.settled_sent, series.settled_holdout
    n_t, n_c = float(t.n.sum()), float(c.n.sum())
    if n_t < rule.min_sends or n_c < rule.min_holdout:
        return None
    s_t, q_t, s_c, q_c = (_total(g, outcome, squares) for g, squares in ((t, False), (t, True), (c, False), (c, True)))
    statistic = float(
        holdout_log_lr(n_t, s_t, q_t, n_c, s_c, q_c, margin=limit, harm_above=side == "max", binary=outcome != "revenue", tuned_n=rule.min_sends)
    )
    threshold = float(np.log(1.0 / rule.alpha))
    if statistic < threshold:
        return None
    first = next(i for i in range(len(series.days)) if t.n[i] or c.n[i])
    return Breach(
        rule.metric.value, side, limit, s_t / n_t - s_c / n_c, int(n_t), rule.demote_to, Method.HOLDOUT, statistic, threshold, rule.alpha,
        series.days[first].isoformat(), series.days[-1].isoformat(), holdout_value=s_c / n_c, holdout=int(n_c),
    )


def _offer_cost(rule: StopLoss, series: AgentSeries) -> list[Breach]:
    found = []
    for side, limit in (("max", rule.max), ("min", rule.min)):
        if limit is None:
            continue
        costs: Floats = series.offer_cost
        over = np.flatnonzero(costs > limit) if side == "max" else np.flatnonzero((costs < limit) & (series.sent.n > 0))
        if len(over):
            i = int(over[-1])
            found.append(
                Breach(
                    rule.metric.value, side, float(limit), float(costs[i]), int(series.sent.n[i]), rule.demote_to, Method.BUDGET,
                    float(costs[i]), float(limit), None, series.days[i].isoformat(), series.days[i].isoformat(),
                )
            )
    return found


def _total(group: Any, outcome: str, squares: bool) -> float:
    return float((group.squares if squares else group.sums)[outcome].sum())
