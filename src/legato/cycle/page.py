"""One page of customers: features, holdouts, the policy's choice, guardrails, budget and routing."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import Connection

from legato.cycle.action_table import ActionTable
from legato.cycle.budget import BudgetCut
from legato.cycle.partitions import Partition
from legato.cycle.report import AgentReport
from legato.cycle.targeting import Targeting
from legato.cycle.trust_routing import Trust
from legato.cycle.write import queue_reviews, write_page
from legato.decide.features import encode_allowed, feature_matrix
from legato.decide.holdout import in_global_control, in_holdout, unit_hash
from legato.decide.policy import Policy
from legato.decide.send_time import HourPreference, customer_counts
from legato.decide.timing import next_send_times
from legato.decide.uplift_gate import HOLDOUT_UNREACHABLE
from legato.guard.contact import check_contacts, facts_from_columns
from legato.guard.defaults import guardrails_in_force
from legato.playbook.models import Agent, Playbook
from legato.store.status import Route
from legato.trust.ladder import EXECUTE, REVIEW, Stage


@dataclass
class Proposal:
    """A partition's decisions before the budget: what the policy chose and what the guardrails allow.

    Everything here follows from the partition's rows and its random stream, so proposing the
    same partition again gives the same proposal (the budget allocation relies on that).
    """

    ids: npt.NDArray[np.str_]
    columns: dict[str, npt.NDArray[Any]]
    features: npt.NDArray[np.float64]
    control: npt.NDArray[np.bool_]
    holdout: npt.NDArray[np.bool_]
    reachable: npt.NDArray[np.bool_]
    reach: npt.NDArray[np.bool_]
    unreachable: npt.NDArray[np.bool_]
    gated: npt.NDArray[np.bool_]
    active: npt.NDArray[np.bool_]
    declined: npt.NDArray[np.bool_]
    chosen: npt.NDArray[np.int64]
    propensity: npt.NDArray[np.float64]
    expected: npt.NDArray[np.float64]
    sends: npt.NDArray[np.bool_]
    send_at: npt.NDArray[np.datetime64]
    own_history: npt.NDArray[np.bool_]
    delayed: npt.NDArray[np.bool_]
    blocked: npt.NDArray[np.bool_]
    reasons: npt.NDArray[np.object_]

    @property
    def candidates(self) -> npt.NDArray[np.bool_]:
        """Sends the guardrails allow: only these use up the budget."""
        return self.sends & ~self.blocked


def propose(
    connection: Connection,
    playbook: Playbook,
    agent: Agent,
    targeting: Targeting,
    now: datetime,
    policy: Policy,
    table: ActionTable,
    channels: list[str],
    columns: dict[str, npt.NDArray[Any]],
    rng: np.random.Generator,
) -> Proposal:
    """Holdouts, reachable channels, uplift gate, the policy's choice, send time and guardrails."""
    ids = columns["id"].astype(str)
    n = len(ids)
    # The program-wide control group gets no marketing from any agent; it is not the agent's holdout.
    control = in_global_control(ids, playbook.global_control) if table.marketing_any else np.zeros(n, dtype=bool)
    holdout = in_holdout(ids, agent.id, agent.holdout) & ~control
    features = feature_matrix([columns[f"f_{i}"] for i in range(len(agent.features))], n)
    guardrails = guardrails_in_force(playbook)
    facts = facts_from_columns(columns, guardrails, channels)
    chosen = np.full(n, -1, dtype=np.int64)
    propensity = np.ones(n)
    expected = np.zeros(n)
    active = ~holdout & ~control
    # The policy chooses only among the channels each customer can receive now (consent,
    # contact point, suppression list, WhatsApp's window); who can receive none gets no decision.
    standing = table.standing(facts, n)
    reach = table.reachable(standing, n)
    reachable = reach[:, table.send_actions].any(axis=1) if table.send_actions.any() else np.ones(n, dtype=bool)
    unreachable = active & ~reachable
    active &= ~unreachable
    # Then the uplift gate, among those a message could reach (its top share is of them).
    gated = np.zeros(n, dtype=bool)
    if targeting.gate is not None and not targeting.gate.is_open:
        passes, _ = targeting.gate.passes(features[active])
        gated[active] = ~passes
        active &= ~gated
    batch = policy.decide(features[active], rng, allowed=None if reach[active].all() else reach[active])
    chosen[active] = batch.actions
    propensity[active] = batch.propensities
    expected[active] = batch.expected_values
    # A fixed rule takes no action (-1) for a customer who cannot receive its message.
    declined = active & (chosen < 0)

    channel = np.full(n, None, dtype=object)
    acting = chosen >= 0
    channel[acting] = table.channel[chosen[acting]]
    sends = channel != None  # noqa: E711 - elementwise on objects
    send_at = np.full(n, np.datetime64("NaT"), dtype="datetime64[us]")
    window = np.zeros(n, dtype=np.int64)
    window[sends] = table.window_index[chosen[sends]]
    hours = None
    own_history = np.zeros(n, dtype=bool)
    if targeting.population_hours is not None and sends.any():
        counts = customer_counts(connection, ids[sends], now, agent.send_time)
        preference = HourPreference.estimate(counts, targeting.population_hours, agent.send_time.min_events)
        hours = preference.best_hours(table.unique_windows, window[sends])
        own_history[sends] = preference.own_history
    send_at[sends] = next_send_times(now, columns["time_zone"][sends], table.unique_windows, window[sends], hours)

    # Guardrails first, so that only sends that may go out use up the budget.
    index = np.where(chosen >= 0, chosen, 0)
    verdict = check_contacts(
        channel,
        send_at,
        facts,
        guardrails,
        marketing=table.marketing[index],
        tags=[table.tags[i] for i in index.tolist()],
        templates=table.approved_template[index],
    )
    reasons = verdict.reasons.copy()
    reasons[unreachable] = table.unreachable_reasons(standing, np.flatnonzero(unreachable))
    reasons[declined] = "rule_action_unavailable"
    send_at = np.where(sends, verdict.send_at, send_at)
    off_content = sends & verdict.allowed & table.content_block[index]
    reasons[off_content] = np.char.add("content:", table.content_rule[index][off_content].astype(str)).astype(object)
    awaiting = sends & verdict.allowed & ~off_content & columns["awaiting_review"].astype(bool)
    reasons[awaiting] = "awaiting_review"
    blocked = sends & ~(verdict.allowed & ~off_content & ~awaiting)
    return Proposal(
        ids=ids, columns=columns, features=features, control=control, holdout=holdout, reachable=reachable, reach=reach,
        unreachable=unreachable, gated=gated, active=active, declined=declined, chosen=chosen, propensity=propensity,
        expected=expected, sends=sends, send_at=send_at, own_history=own_history, delayed=verdict.delayed, blocked=blocked,
        reasons=reasons,
    )


def complete(
    connection: Connection,
    playbook: Playbook,
    agent: Agent,
    trust: Trust,
    cycle_id: int,
    now: datetime,
    table: ActionTable,
    partition: Partition,
    proposal: Proposal,
    cut: BudgetCut,
    report: AgentReport,
) -> int:
    """The budget's cut, the trust route, then the partition's rows; returns how many decisions it wrote."""
    p = proposal
    ids, columns, chosen, expected, propensity = p.ids, p.columns, p.chosen, p.expected, p.propensity
    holdout, control, gated, reasons = p.holdout, p.control, p.gated, p.reasons
    sends, blocked, unreachable, declined, active = p.sends, p.blocked, p.unreachable, p.declined, p.active
    n = len(ids)
    report.audience += n
    over_budget, budget_reason = cut.apply(p.candidates, expected, ids, table.offer_cost[np.where(chosen >= 0, chosen, 0)])
    reasons[over_budget] = budget_reason[over_budget]
    allowed = sends & ~blocked & ~over_budget
    # Each delayed send under the rule that moved it last (its reason is overwritten by an escalation below).
    delayed_by = [str(r).removeprefix("delayed:") for r in reasons[allowed & p.delayed].tolist()]
    # Escalations (rules, content findings) reach a person whatever the agent's stage.
    routes, review_reason, review_priority = trust.route(agent, allowed, chosen, columns, expected, propensity)
    escalated = (routes == REVIEW) & (review_reason != "trust_stage_0")
    reasons[escalated] = np.char.add("escalate:", review_reason[escalated].astype(str)).astype(object)
    if trust.stage == Stage.SUPERVISED and agent.audit_sample > 0:
        # After-the-fact audit: a stable random share of what executes is shown to a person.
        audited = (routes == EXECUTE) & (unit_hash(ids, f"audit:{agent.id}:{now.isoformat()}") < agent.audit_sample)
        review_reason[audited], review_priority[audited] = "audit_sample", 10

    # A decision's route is the status it is written with (one spelling, store.status.Route).
    status = np.full(n, Route.NOTHING, dtype=object)
    status[holdout] = Route.HOLDOUT
    status[control] = Route.CONTROL
    # Not the policy's choice: kept out of learning and off-policy evaluation.
    status[gated], reasons[gated] = Route.GATED, "uplift_gate"
    # Held-out customers no message could have reached: lift keeps them (intent to treat), the
    # uplift gate leaves them out so that its two arms are both reachable customers.
    reasons[holdout & ~p.reachable] = HOLDOUT_UNREACHABLE
    suppressed = over_budget | blocked | unreachable | declined
    status[suppressed] = Route.SUPPRESSED
    status[routes == REVIEW] = Route.QUEUED
    status[routes == EXECUTE] = Route.SCHEDULED

    report.holdout += int(holdout.sum())
    report.global_control += int(control.sum())
    report.own_send_time += int((p.own_history & allowed).sum())
    report.nothing += int((active & ~sends & ~declined).sum()) + int(gated.sum())
    if report.uplift_gate is not None:
        report.uplift_gate["gated"] += int(gated.sum())
    report.scheduled += int((routes == EXECUTE).sum())
    report.queued += int((routes == REVIEW).sum())
    report.delayed += int((allowed & p.delayed).sum())
    report.delayed_by.update(delayed_by)
    report.suppressed.update(reasons[suppressed].tolist())
    report.routes.update(str(r) for r in status.tolist())
    report.queued_by.update(str(r) for r in review_reason[routes == REVIEW].tolist())

    allowed_blobs = encode_allowed(p.reach, active)
    write_page(
        connection, agent, cycle_id, now, partition, ids, chosen, propensity, expected, holdout, reasons, status, p.send_at, table, p.features, allowed_blobs,
        segments=columns.get("segment"),
    )
    queue_reviews(connection, playbook, agent, cycle_id, partition, now, ids, review_reason, review_priority, routes)
    return n
