"""One orchestration cycle: the only module that knows the order of the steps.

A cycle holds the store's cycle lease (:mod:`legato.cycle.lease`) from start to finish, so
only one runs at a time. Under it, a cycle that did not finish (its process was killed, or
it failed) is resumed before anything else: see :func:`run_cycle`.

Before the agents: overdue reviews expire, windowed traits roll, agents follow the playbook,
the cycle's customer-id partitions are cut, scores are refit when due. For each active agent:
its plan step (settle and learn, stop-loss, approvals, uplift gate, partitions recorded),
the budget's allocation over the whole audience (reserved), then one step per partition
(audience in SQL → holdouts → the policy's choice with its propensity → send time →
guardrails → the budget's cut → trust route → decisions, outbox rows, review items and an
audit entry, in one transaction that also marks the partition done). Then the dispatcher
sends what is due.

:func:`preview_cycle` runs the same new-cycle path in one transaction that is always rolled
back, without dispatching (:mod:`legato.cycle.preview` says why): ``legato preview``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy import Engine

from legato.clock import Clock, FixedClock
from legato.cycle import history, slots as slot_store
from legato.cycle.agents import sync_agents
from legato.cycle.lease import Lease, LeaseLost, hold
from legato.cycle.page import complete
from legato.cycle.partitions import Partition, PartitionStatus, done_numbers, mark_done, recorded, split_customers
from legato.cycle.plan import AgentPlan, Fence, Planned, allocate_budget, plan_agent, planned_agents, propose_partition, resume_plan
from legato.cycle.report import AgentReport, CycleReport, Resumed
from legato.deliver.channels import Transport
from legato.deliver.dispatch import DispatchReport, dispatch_due
from legato.errors import NothingToDoError
from legato.learn.scoring import refresh_if_due
from legato.monitor.alert_delivery import deliver_alerts
from legato.monitor.fairness import audit_daily
from legato.playbook.models import Agent, Playbook
from legato.store import playbook_versions
from legato.store import traits as trait_store
from legato.store.audit import record
from legato.store.db import is_empty
from legato.store.schema import agents, cycle_agents, cycle_partitions, cycles
from legato.store.status import AgentStatus, CycleStatus
from legato.trust.pending_optouts import settle as settle_opt_outs
from legato.trust.review import expire_overdue

# Customers per partition.
PAGE = 50_000

Progress = Callable[[str, int], None]
Stop = Callable[[], bool]


class Interrupted(Exception):
    """The cycle was asked to stop (``stop()`` said so between two partitions): what was written
    stays, the cycle stays running, and the next run resumes it (as after a kill)."""


@dataclass(frozen=True)
class Unfinished:
    """A cycle that started and did not finish: the newest cycle, still running (its process
    died) or failed, whose agents' plans were recorded with their partitions."""

    id: int
    at: datetime
    status: str
    started_at: datetime
    playbook_version_id: int | None


def unfinished_cycle(engine: Engine) -> Unfinished | None:
    """The cycle a run must finish before it starts another, if any.

    Only the newest cycle can be resumed: an older unfinished one was followed by a later
    cycle, and continuing it would decide as if that cycle had not happened. A cycle from
    before plans were recorded (partitions without their agent's plan) cannot be resumed.
    """
    with engine.connect() as connection:
        row = connection.execute(sa.select(cycles).order_by(cycles.c.id.desc()).limit(1)).first()
        if row is None or row.status not in (CycleStatus.RUNNING, CycleStatus.FAILED):
            return None
        unplanned = connection.execute(
            sa.select(sa.func.count())
            .select_from(cycle_partitions)
            .where(
                cycle_partitions.c.cycle_id == row.id,
                ~sa.exists().where(cycle_agents.c.cycle_id == row.id, cycle_agents.c.agent_id == cycle_partitions.c.agent_id),
            )
        ).scalar_one()
    if unplanned:
        return None
    return Unfinished(row.id, row.at, row.status, row.started_at, row.playbook_version_id)


@contextmanager
def _held(engine: Engine, lease: Lease | None, wait: float) -> Iterator[Lease]:
    if lease is not None:
        yield lease
        return
    with hold(engine, wait=wait) as taken:
        yield taken


def run_cycle(
    engine: Engine,
    playbook: Playbook,
    clock: Clock,
    transports: dict[str, Transport],
    *,
    progress: Progress | None = None,
    lease: Lease | None = None,
    wait: float = 0.0,
    slots: Mapping[str, datetime] | None = None,
    stop: Stop | None = None,
    dispatch: bool = True,
    alerts: bool = True,
) -> CycleReport:
    """Run every active agent once at ``clock.now()``, then dispatch what is due.

    The cycle's lease is taken first (waiting up to ``wait`` seconds; ``lease`` when the
    caller holds it already). If the newest cycle did not finish, that cycle is resumed
    instead, at its own time and with its own playbook, and its report returned
    (``report.resumed``): no new cycle is started by the same run.

    ``slots`` (`legato worker`: agent id → the schedule slot that is due) runs only those
    agents and records their slots with the new cycle (:mod:`legato.cycle.slots`: a slot
    recorded already raises ``IntegrityError`` and nothing is written). ``stop`` is asked
    between partitions and before each dispatch batch: when it answers true the cycle stops
    (:class:`Interrupted`; it is resumed by the next run) or the dispatch stops claiming.
    ``dispatch=False`` leaves the sending to the caller (`legato worker`'s own dispatch loop);
    the daily fairness audit still runs. ``alerts=False`` leaves the monitors' alerts undelivered
    (a simulation: its incidents are not real, and must not reach the marketer's Slack).
    """
    if is_empty(engine):
        raise NothingToDoError(
            "the database has no customers, so there is nobody to decide for",
            hint="import customers first: legato import customers FILE (or try `legato demo`)",
        )
    with _held(engine, lease, wait) as held:
        unfinished = unfinished_cycle(engine)
        if unfinished is not None:
            return _resume(engine, playbook, clock, transports, unfinished, held, progress, stop, dispatch, alerts)
        steps = _CYCLE if dispatch else _UNSENT
        if not alerts:
            steps = replace(steps, alerts=False)
        return _new_cycle(engine, playbook, clock, transports, held, progress, steps, slots=slots, stop=stop)


@dataclass(frozen=True)
class _Steps:
    """What differs between a cycle and its preview; the order of the steps does not."""

    settle: Callable[[Engine], None] = settle_opt_outs  # pending opt-outs written before marketing
    dispatch: bool = True  # send what is due
    until: str | None = None  # the last agent to run (a preview of one agent runs those before it too)
    audit: bool = True  # the daily fairness audit, after the dispatch
    alerts: bool = True  # deliver the alerts the monitors raised (legato worker's dispatch loop does it itself)


_CYCLE = _Steps()
_UNSENT = _Steps(dispatch=False, alerts=False)  # `legato worker`: its dispatch loop sends, alerts too


class _Unleased:
    """A preview's stand-in for the cycle's lease: it writes nothing, so it takes none."""

    def fence(self, connection: sa.Connection) -> None:
        return None

    def note_cycle(self, cycle_id: int) -> None:
        return None


def preview_cycle(engine: Engine, playbook: Playbook, now: datetime, *, until: str | None = None, inspect: Callable[[Engine, CycleReport], object] | None = None) -> tuple[CycleReport, object]:
    """The new cycle a run at ``now`` would start, written into one transaction that is
    always rolled back (:func:`legato.cycle.preview.rolled_back`).

    These are the cycle's own steps in its own order, with three differences: nothing is
    dispatched (nor the fairness audit run), the lease is not taken, and pending opt-outs are
    applied inside the transaction without touching their file. ``until`` stops after that
    agent (those before it run, since their messages count toward its caps). ``inspect`` is
    called with the transaction's engine and the report before the rollback, to read what
    the cycle would have written. Raises what :func:`run_cycle` raises for an empty store.
    """
    from legato.cycle.preview import apply_pending_in_place, rolled_back

    if is_empty(engine):
        raise NothingToDoError(
            "the database has no customers, so there is nobody to decide for",
            hint="import customers first: legato import customers FILE (or try `legato demo`)",
        )
    steps = _Steps(settle=apply_pending_in_place, dispatch=False, until=until, audit=False, alerts=False)
    with rolled_back(engine) as joined:
        report = _new_cycle(joined, playbook, FixedClock(now), {}, _Unleased(), None, steps)
        seen = inspect(joined, report) if inspect is not None else None
    return report, seen


def _new_cycle(
    engine: Engine,
    playbook: Playbook,
    clock: Clock,
    transports: dict[str, Transport],
    lease: Lease | _Unleased,
    progress: Progress | None,
    steps: _Steps = _CYCLE,
    *,
    slots: Mapping[str, datetime] | None = None,
    stop: Stop | None = None,
) -> CycleReport:
    now = clock.now()
    steps.settle(engine)  # an opt-out the store could not take yet is written first, or nothing runs
    expire_overdue(engine, now, sla_hours=playbook.review.sla_hours)
    with engine.begin() as connection:
        trait_store.roll_windows(connection, now)
        version_id = playbook_versions.record(connection, playbook, now)
        cycle_id = connection.execute(
            sa.insert(cycles).values(at=now, started_at=now, status=CycleStatus.RUNNING, playbook_version_id=version_id).returning(cycles.c.id)
        ).scalar_one()
        slot_store.record(connection, cycle_id, slots or {})
        stages = sync_agents(connection, playbook, now)
        # The same customer-id ranges for every agent of the cycle.
        partitions = split_customers(connection, PAGE)
        lease.fence(connection)
    lease.note_cycle(cycle_id)
    only = frozenset(slots) if slots else None
    return _agents_then_dispatch(engine, playbook, playbook, clock, transports, lease, cycle_id, now, stages, partitions, {}, progress, None, steps, only, stop)


def _resume(
    engine: Engine,
    given: Playbook,
    clock: Clock,
    transports: dict[str, Transport],
    cycle: Unfinished,
    lease: Lease,
    progress: Progress | None,
    stop: Stop | None = None,
    dispatch: bool = True,
    alerts: bool = True,
) -> CycleReport:
    """Finish an unfinished cycle: its done partitions kept, the rest run, then dispatch.

    It runs at the cycle's own time (the same random streams, the same budget cut) with the
    playbook the cycle started with; agents whose plan step ran are not planned again. A
    cycle a worker started for some agents' slots runs those agents only.
    """
    lease.note_cycle(cycle.id)
    settle_opt_outs(engine)  # as a new cycle does: an opt-out waiting in the pending file is written first
    with engine.connect() as connection:
        playbook = given if cycle.playbook_version_id is None else playbook_versions.Versions().get(connection, cycle.playbook_version_id)
        stages = {row.id: (row.trust_stage, row.status) for row in connection.execute(sa.select(agents.c.id, agents.c.trust_stage, agents.c.status))}
        planned = planned_agents(connection, cycle.id)
        only = slot_store.agents_of(connection, cycle.id)
        partitions = recorded(connection, cycle.id) or split_customers(connection, PAGE)
        kept = connection.execute(
            sa.select(sa.func.count()).select_from(cycle_partitions).where(cycle_partitions.c.cycle_id == cycle.id, cycle_partitions.c.status == PartitionStatus.DONE.value)
        ).scalar_one()
    resumed = Resumed(status=cycle.status, started_at=cycle.started_at, partitions_kept=int(kept), playbook_changed=playbook is not given and _text(playbook) != _text(given))
    with engine.begin() as connection:
        connection.execute(sa.update(cycles).where(cycles.c.id == cycle.id).values(status=CycleStatus.RUNNING, finished_at=None))
        record(connection, clock.now(), "engine", "cycle_resumed", "cycle", str(cycle.id), {"at": cycle.at.isoformat(), "was": cycle.status, "partitions_kept": int(kept)})
        lease.fence(connection)
    return _agents_then_dispatch(engine, playbook, given, clock, transports, lease, cycle.id, cycle.at, stages, partitions, planned, progress, resumed, replace(_CYCLE if dispatch else _UNSENT, alerts=alerts and dispatch), only, stop)


def _text(playbook: Playbook) -> str:
    from legato.playbook.loader import playbook_text

    return playbook_text(playbook)


def _agents_then_dispatch(
    engine: Engine,
    playbook: Playbook,
    given: Playbook,
    clock: Clock,
    transports: dict[str, Transport],
    lease: Lease | _Unleased,
    cycle_id: int,
    now: datetime,
    stages: dict[str, tuple[int, str]],
    partitions: list[Partition],
    planned: dict[str, Planned],
    progress: Progress | None,
    resumed: Resumed | None,
    steps: _Steps = _CYCLE,
    only: frozenset[str] | None = None,
    stop: Stop | None = None,
) -> CycleReport:
    """The agents of cycle ``cycle_id`` at ``now`` (its decisions from ``playbook``; ``only``
    those agents when given), then the dispatcher at the clock's time (with ``given``: the
    send-time rules in force)."""
    reports: dict[str, AgentReport] = {}
    try:
        scores = refresh_if_due(engine, playbook, now)
        for agent in playbook.agents:
            stage, status = stages.get(agent.id, (agent.trust_stage, AgentStatus.ACTIVE))
            if agent.active and status == AgentStatus.ACTIVE and (only is None or agent.id in only):
                reports[agent.id] = _run_agent(engine, playbook, agent, stage, cycle_id, now, partitions, planned.get(agent.id), lease.fence, progress, steps.settle, stop)
            if agent.id == steps.until:
                break
        dispatched = dispatch_due(engine, given, clock, transports, stop=stop) if steps.dispatch else DispatchReport()
    except LeaseLost:
        raise  # the process that took the lease over finishes the cycle
    except Interrupted:
        raise  # left running: the next run resumes it
    except Exception as error:
        # Pages already written stay (each was one transaction); the cycle says it did not
        # finish, and why, in one transaction, and the next run resumes it.
        with engine.begin() as connection:
            connection.execute(sa.update(cycles).where(cycles.c.id == cycle_id).values(finished_at=clock.now(), status=CycleStatus.FAILED))
            record(connection, clock.now(), "engine", history.FAILED, "cycle", str(cycle_id), {"reason": history.failure_reason(error)})
            lease.fence(connection)
        raise
    try:
        if steps.audit:
            audit_daily(engine, playbook, now)
    except Exception as exc:  # noqa: BLE001 - the audit must not undo a cycle whose messages went out
        with engine.begin() as connection:
            record(connection, now, "engine", "fairness_audit_failed", "cycle", str(cycle_id), {"reason": f"{type(exc).__name__}: {exc}"})
    if steps.alerts:
        try:
            deliver_alerts(engine, given, clock.now())
        except Exception as exc:  # noqa: BLE001 - each delivery keeps its own record; the next run tries what is due again
            with engine.begin() as connection:
                record(connection, now, "engine", "alert_delivery_failed", "cycle", str(cycle_id), {"reason": f"{type(exc).__name__}: {exc}"})
    for agent_id, count in dispatched.sent.items():
        if agent_id in reports:
            reports[agent_id].sent = count
    for agent_id, count in dispatched.failed.items():
        if agent_id in reports:
            reports[agent_id].failed = count
    with engine.begin() as connection:
        connection.execute(sa.update(cycles).where(cycles.c.id == cycle_id).values(finished_at=clock.now(), status=CycleStatus.FINISHED))
        lease.fence(connection)
    return CycleReport(cycle_id=cycle_id, at=now, agents=reports, dispatch=dispatched, scores=scores, resumed=resumed)


def _run_agent(
    engine: Engine,
    playbook: Playbook,
    agent: Agent,
    stage: int,
    cycle_id: int,
    now: datetime,
    partitions: list[Partition],
    planned: Planned | None,
    fence: Fence,
    progress: Progress | None,
    settle: Callable[[Engine], None] = settle_opt_outs,
    stop: Stop | None = None,
) -> AgentReport:
    """The agent's plan, its budget across the whole audience, then each partition not yet done."""
    report = AgentReport(agent_id=agent.id, stage=stage)
    if planned is None:
        plan = plan_agent(engine, playbook, agent, stage, cycle_id, now, partitions, report, fence)
    else:
        plan = resume_plan(engine, playbook, agent, cycle_id, now, partitions, planned, report)
    if plan.paused:
        return report  # its stop-loss paused it: nothing more to decide this cycle
    if planned is None or planned.budget_cut is None:
        # Before any partition of the agent is written: a stored cut means the reservation is in.
        allocate_budget(engine, playbook, plan, cycle_id, now, fence)
    done: set[int] = set()
    if planned is not None:
        with engine.connect() as connection:
            done = done_numbers(connection, cycle_id, agent.id)
    for partition in partitions:
        if partition.number in done:
            continue
        if stop is not None and stop():
            raise Interrupted(f"cycle {cycle_id} was asked to stop before partition {partition.number} of agent {agent.id}")
        decided = _run_partition(engine, playbook, plan, cycle_id, now, partition, report, fence, settle)
        if progress and decided:
            progress(agent.id, decided)
    return report


def _run_partition(
    engine: Engine,
    playbook: Playbook,
    plan: AgentPlan,
    cycle_id: int,
    now: datetime,
    partition: Partition,
    report: AgentReport,
    fence: Fence,
    settle: Callable[[Engine], None] = settle_opt_outs,
) -> int:
    """One partition in one transaction: propose, apply the budget's cut, route, write, mark done."""
    settle(engine)  # one that arrived in the pending file meanwhile counts for this partition
    with engine.begin() as connection:
        proposal = propose_partition(connection, playbook, plan, partition, now)
        decided = 0
        if proposal is not None:
            decided = complete(connection, playbook, plan.agent, plan.trust, cycle_id, now, plan.table, partition, proposal, plan.cut, report)
        mark_done(connection, cycle_id, plan.agent.id, partition, decided, now)
        fence(connection)
    return decided
