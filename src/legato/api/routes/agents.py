"""Agents: list, show with the track record, pause, resume, promote, demote.

Who did it is the key's name (the audit log's actor), never a field of the request.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, ConfigDict, Field

from legato.api.context import ApiContext, context
from legato.api.errors import documented
from legato.api.security import Ability, Caller, allow
from legato.service import agents

router = APIRouter(prefix="/v1/agents", tags=["agents"])

AgentId = Path(..., min_length=1, max_length=128, description="The agent's id in the playbook")


class Agent(BaseModel):
    agent: str
    trust_stage: int
    stage_name: str
    status: str
    updated_at: datetime
    open_review_items: int


class AgentList(BaseModel):
    agents: list[Agent]


class Promotion(BaseModel):
    qualifies: bool
    unmet: list[str]


class TrackRecord(BaseModel):
    """The agent's record over the promotion window (``legato agents show``), and whether it qualifies."""

    model_config = ConfigDict(extra="allow")  # the record's counts and rates, as `legato agents show --json` prints them

    agent: str
    trust_stage: int
    status: str
    since: datetime
    until: datetime
    reviewed: int
    approval_rate: float | None
    lift: list[dict[str, Any]]
    promotion: Promotion


class StageChange(BaseModel):
    agent: str
    from_stage: int
    to_stage: int
    unmet: list[str]
    override_reason: str | None


class Pause(BaseModel):
    reason: str = Field(..., min_length=1, max_length=500, description="Why; it goes to the audit log")


class Resume(BaseModel):
    reason: str | None = Field(None, min_length=1, max_length=500,
                               description="Why; it goes to the audit log. Needed when the agent's stop-loss paused it")


class Promote(BaseModel):
    to_stage: int = Field(..., ge=1, le=3, description="The next stage: one stage at a time")
    override_reason: str | None = Field(None, min_length=1, max_length=500,
                                        description="Promote although the record's criteria are unmet, for this audited reason")


class Demote(BaseModel):
    to_stage: int = Field(..., ge=0, le=2)
    reason: str = Field(..., min_length=1, max_length=500)


@router.get("", response_model=AgentList, summary="Every agent with its stage, status and open review items")
def list_agents(caller: Caller = Depends(allow(Ability.READ)), ctx: ApiContext = Depends(context)) -> AgentList:
    return AgentList(agents=[Agent(**state.to_dict()) for state in agents.list_agents(ctx.engine)])


@router.get("/{agent_id}", response_model=TrackRecord, responses=documented(404), summary="An agent's track record and promotion check")
def show_agent(agent_id: str = AgentId, caller: Caller = Depends(allow(Ability.READ)), ctx: ApiContext = Depends(context)) -> TrackRecord:
    return TrackRecord(**agents.show(ctx.engine, agent_id, now=ctx.now()).to_dict())


@router.post("/{agent_id}/pause", response_model=Agent, responses=documented(404, 409), summary="Pause: no decisions until resumed")
def pause_agent(body: Pause, agent_id: str = AgentId, caller: Caller = Depends(allow(Ability.STEER)),
                ctx: ApiContext = Depends(context)) -> Agent:
    return Agent(**agents.pause(ctx.engine, agent_id, caller.name, body.reason, now=ctx.now()).to_dict())


@router.post("/{agent_id}/resume", response_model=Agent, responses=documented(404, 409), summary="Resume a paused agent at its stage")
def resume_agent(body: Resume | None = None, agent_id: str = AgentId, caller: Caller = Depends(allow(Ability.STEER)),
                 ctx: ApiContext = Depends(context)) -> Agent:
    return Agent(**agents.resume(ctx.engine, agent_id, caller.name, now=ctx.now(), reason=body.reason if body else None).to_dict())


@router.post("/{agent_id}/promote", response_model=StageChange, responses=documented(404, 409),
             summary="Promote one stage when the track record qualifies (admin keys)")
def promote_agent(body: Promote, agent_id: str = AgentId, caller: Caller = Depends(allow(Ability.GOVERN)),
                  ctx: ApiContext = Depends(context)) -> StageChange:
    change = agents.promote(ctx.engine, agent_id, body.to_stage, caller.name, override_reason=body.override_reason, now=ctx.now())
    return StageChange(**change.to_dict())


@router.post("/{agent_id}/demote", response_model=StageChange, responses=documented(404, 409), summary="Demote to a lower stage")
def demote_agent(body: Demote, agent_id: str = AgentId, caller: Caller = Depends(allow(Ability.STEER)),
                 ctx: ApiContext = Depends(context)) -> StageChange:
    return StageChange(**agents.demote(ctx.engine, agent_id, body.to_stage, caller.name, body.reason, now=ctx.now()).to_dict())
