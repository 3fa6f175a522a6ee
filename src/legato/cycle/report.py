"""What one cycle did, per agent and in total: the CLI prints it, the simulation reads it."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from legato.deliver.dispatch import DispatchReport
from legato.learn.scoring import ScoreReport


@dataclass
class AgentReport:
    agent_id: str
    stage: int
    audience: int = 0
    holdout: int = 0
    nothing: int = 0
    scheduled: int = 0
    queued: int = 0
    delayed: int = 0
    delayed_by: Counter[str] = field(default_factory=Counter)  # rule (frequency_cap:<name>, quiet_hours:<name>) -> sends it moved
    suppressed: Counter[str] = field(default_factory=Counter)
    routes: Counter[str] = field(default_factory=Counter)  # route (store.status.Route) -> decisions written with it
    queued_by: Counter[str] = field(default_factory=Counter)  # review reason -> decisions queued for it
    sent: int = 0
    failed: int = 0
    settled: int = 0
    late_credited: int = 0  # decisions settled before whose outcome late-imported events corrected
    stop_loss: list[Any] = field(default_factory=list)
    paused: bool = False  # its stop-loss paused it in this cycle
    anomalies: list[Any] = field(default_factory=list)  # new anomalies of its KPI series (legato.monitor.anomaly)
    learned_from: int = 0
    policy_version: int = 0
    learning_error: str | None = None
    global_control: int = 0
    uplift_gate: dict[str, Any] | None = None
    own_send_time: int = 0  # sends timed by the customer's own engagement hours

    @property
    def suppressed_total(self) -> int:
        return sum(self.suppressed.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "agent": self.agent_id,
            "trust_stage": self.stage,
            "audience": self.audience,
            "holdout": self.holdout,
            "do_nothing": self.nothing,
            "scheduled": self.scheduled,
            "queued_for_review": self.queued,
            "delayed": self.delayed,
            "delayed_by": dict(self.delayed_by),
            "suppressed": dict(self.suppressed),
            "routes": dict(self.routes),
            "queued_by": dict(self.queued_by),
            "sent": self.sent,
            "failed": self.failed,
            "settled": self.settled,
            "late_credited": self.late_credited,
            "learned_from": self.learned_from,
            "policy_version": self.policy_version,
            "learning_error": self.learning_error,
            "stop_loss_breaches": [b.to_dict() for b in self.stop_loss],
            "paused_by_stop_loss": self.paused,
            "anomalies": [a.to_dict() for a in self.anomalies],
            "global_control": self.global_control,
            "uplift_gate": self.uplift_gate,
            "sends_timed_by_own_history": self.own_send_time,
        }


@dataclass(frozen=True)
class Resumed:
    """A cycle that had not finished, continued by this run (its counts are this run's part)."""

    status: str  # what it was left as: running (its process died) or failed
    started_at: datetime
    partitions_kept: int  # (agent, partition) pairs already written, kept as they were
    playbook_changed: bool  # the playbook given differs from the one the cycle started with (which it used)

    def to_dict(self) -> dict[str, Any]:
        return {
            "was": self.status,
            "started_at": self.started_at.isoformat(),
            "partitions_kept": self.partitions_kept,
            "playbook_changed": self.playbook_changed,
        }


@dataclass
class CycleReport:
    cycle_id: int
    at: datetime
    agents: dict[str, AgentReport]
    dispatch: DispatchReport
    scores: list[ScoreReport] = field(default_factory=list)
    resumed: Resumed | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "cycle": self.cycle_id,
            "at": self.at.isoformat(),
            "resumed": None if self.resumed is None else self.resumed.to_dict(),
            "scores": [s.to_dict() for s in self.scores],
            "agents": [a.to_dict() for a in self.agents.values()],
            "dispatch": self.dispatch.to_dict(),  # sent, retry, dead (in total and per agent) and why
            "dispatch_errors": self.dispatch.errors,
        }
