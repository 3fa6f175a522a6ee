"""Agent controls: track records, promotion and demotion on the trust ladder, pause and resume,
and the versions of what each agent's policy learned."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine

from legato.decide import versions
from legato.decide.versions import PolicyVersion
from legato.trust import track_record
from legato.trust.track_record import AgentState, PromotionCriteria, StageChange, TrackRecord


@dataclass(frozen=True)
class AgentReport:
    """An agent's record over a window and whether it qualifies for the next stage."""

    record: TrackRecord
    qualifies: bool
    unmet: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {**self.record.to_dict(), "promotion": {"qualifies": self.qualifies, "unmet": self.unmet}}


def list_agents(engine: Engine) -> list[AgentState]:
    return track_record.list_agents(engine)


def show(engine: Engine, agent_id: str, *, now: datetime, criteria: PromotionCriteria = PromotionCriteria()) -> AgentReport:
    record = track_record.track_record(engine, agent_id, now=now, window_days=criteria.window_days)
    qualifies, unmet = track_record.promotion_check(record, criteria)
    return AgentReport(record, qualifies, unmet)


def promote(
    engine: Engine, agent_id: str, to_stage: int, by: str, *, now: datetime, override_reason: str | None = None,
    criteria: PromotionCriteria = PromotionCriteria(),
) -> StageChange:
    return track_record.promote(engine, agent_id, to_stage, by, override_reason=override_reason, criteria=criteria, now=now)


def demote(engine: Engine, agent_id: str, to_stage: int, by: str, reason: str, *, now: datetime) -> StageChange:
    return track_record.demote(engine, agent_id, to_stage, by, reason, now)


def pause(engine: Engine, agent_id: str, by: str, reason: str, *, now: datetime) -> AgentState:
    return track_record.pause(engine, agent_id, by, reason, now)


def resume(engine: Engine, agent_id: str, by: str, *, now: datetime, reason: str | None = None) -> AgentState:
    return track_record.resume(engine, agent_id, by, now, reason)


def policy_versions(engine: Engine, agent_id: str) -> list[PolicyVersion]:
    return versions.list_versions(engine, agent_id)


def roll_back(engine: Engine, agent_id: str, to_version: int, by: str, reason: str, *, now: datetime) -> PolicyVersion:
    return versions.roll_back(engine, agent_id, to_version, by, reason, now)
