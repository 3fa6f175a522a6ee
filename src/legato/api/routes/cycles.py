"""Cycles: start one (it runs in the background: 202 with its status URL), its status, the history.

A cycle takes seconds to minutes, so it is not run inside the request: the request takes the
cycle's lease (409 naming the holder while another cycle runs, from this server or any other
process on the store) and answers as soon as the cycle is recorded. It runs with the playbook
in force, at the server's clock, and sends what is due through the playbook's transports with
file paths in the server's folder, as ``legato run`` does in the playbook's folder.
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends, Path, Query, Response
from pydantic import BaseModel, Field

from legato.api.context import ApiContext, context
from legato.api.errors import documented
from legato.api.security import Ability, Caller, allow
from legato.cycle.history import Cycle
from legato.service import cycles
from legato.store.status import CycleStatus

router = APIRouter(prefix="/v1/cycles", tags=["cycles"])


class AgentProgress(BaseModel):
    agent: str
    partitions: int = Field(description="customer-id ranges the agent decides in")
    done: int = Field(description="partitions written")
    decisions: int = Field(description="decisions the written partitions hold")


class CycleSummary(BaseModel):
    id: int
    at: datetime = Field(description="the cycle's time: what it decided as of")
    started_at: datetime
    finished_at: datetime | None
    status: CycleStatus
    playbook_version_id: int | None = Field(description="the playbook version it ran (GET /v1/playbooks/{id})")

    @classmethod
    def of(cls, found: Cycle) -> CycleSummary:
        return cls(id=found.id, at=found.at, started_at=found.started_at, finished_at=found.finished_at, status=CycleStatus(found.status),
                   playbook_version_id=found.playbook_version_id)


class CycleState(CycleSummary):
    agents: list[AgentProgress]
    error: str | None = Field(description="why it failed, when a cycle started over HTTP failed")


class CycleHistory(BaseModel):
    cycles: list[CycleSummary] = Field(description="newest first")
    next_before: int | None = Field(description="pass as before= for the next page; None on the last")


class CycleStarted(BaseModel):
    cycle_id: int | None = Field(description="None if the cycle had not recorded itself yet: see GET /v1/cycles")
    status_url: str
    resumed: bool = Field(description="an unfinished cycle is being finished instead (start again afterwards for a new one)")


@router.post("", response_model=CycleStarted, status_code=202, responses=documented(409),
             summary="Start a cycle of every active agent with the playbook in force; it runs in the background")
def start_cycle(response: Response, caller: Caller = Depends(allow(Ability.STEER)), ctx: ApiContext = Depends(context)) -> CycleStarted:
    playbook = ctx.playbook()
    started = cycles.start(ctx.engine, playbook, ctx.settings.clock, cycles.transports_for(playbook, ctx.folder()))
    url = f"/v1/cycles/{started.cycle_id}" if started.cycle_id is not None else "/v1/cycles"
    response.headers["Location"] = url
    return CycleStarted(cycle_id=started.cycle_id, status_url=url, resumed=started.resumed)


@router.get("", response_model=CycleHistory, summary="Cycles, newest first")
def cycle_history(
    caller: Caller = Depends(allow(Ability.READ)),
    limit: int = Query(20, ge=1, le=500),
    before: int | None = Query(None, ge=1, le=2**31 - 1, description="Only cycles older than this id (the previous page's next_before)"),
    ctx: ApiContext = Depends(context),
) -> CycleHistory:
    found = cycles.history(ctx.engine, limit=limit, before=before)
    return CycleHistory(cycles=[CycleSummary.of(c) for c in found], next_before=found[-1].id if len(found) == limit else None)


@router.get("/{cycle_id}", response_model=CycleState, responses=documented(404),
            summary="A cycle's status: running with each agent's progress, finished, or failed and why")
def cycle_status(
    caller: Caller = Depends(allow(Ability.READ)),
    cycle_id: int = Path(..., ge=1, le=2**31 - 1),
    ctx: ApiContext = Depends(context),
) -> CycleState:
    found = cycles.status(ctx.engine, cycle_id)
    agents = [AgentProgress(agent=a.agent_id, partitions=a.partitions, done=a.done, decisions=a.decisions) for a in found.agents]
    return CycleState(**CycleSummary.of(found).model_dump(), agents=agents, error=found.error)
