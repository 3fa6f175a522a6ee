"""Playbooks: validate one, upload one as a new version (it becomes the playbook in force), list and read versions.

The body of validate and upload is the playbook's YAML itself (``Content-Type:
application/yaml``; JSON is YAML too). Validate answers every problem with its line and column
whether or not there are any; an upload that does not validate is 422 with the same problems,
and nothing is stored. Who uploaded a version is the key's name.
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, Field

from legato.api.context import ApiContext, context
from legato.api.errors import documented
from legato.api.security import Ability, Caller, allow
from legato.errors import Invalid
from legato.playbook.models import Playbook
from legato.playbook.problems import Placed
from legato.service import playbooks
from legato.store.playbook_versions import Version

router = APIRouter(prefix="/v1/playbooks", tags=["playbooks"])

_YAML_SCHEMA = {"type": "object", "description": "A playbook: `legato schema` prints its JSON Schema"}
YAML_BODY = {
    "requestBody": {
        "required": True,
        "description": "The playbook's YAML (or JSON), as `legato validate` reads a file",
        "content": {"application/yaml": {"schema": _YAML_SCHEMA}, "application/json": {"schema": _YAML_SCHEMA}},
    }
}


async def playbook_text(request: Request) -> str:
    """The body as text: a playbook is UTF-8 YAML."""
    raw = await request.body()
    if not raw.strip():
        raise Invalid("the body is empty", hint="send the playbook's YAML as the body (Content-Type: application/yaml)")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Invalid(f"the body is not UTF-8 text (byte {exc.start})", hint="send the playbook file as it is saved, in UTF-8") from None


class PlaybookProblem(BaseModel):
    line: int
    column: int
    field: str = Field(description="the place in the playbook, e.g. agents[0].policy.name")
    message: str
    hint: str | None

    @classmethod
    def of(cls, placed: Placed) -> PlaybookProblem:
        return cls(line=placed.line, column=placed.column, field=placed.field, message=placed.message, hint=placed.hint)


class Summary(BaseModel):
    objectives: int
    segments: int
    creatives: int
    agents: int

    @classmethod
    def of(cls, playbook: Playbook) -> Summary:
        return cls(objectives=len(playbook.objectives), segments=len(playbook.segments), creatives=len(playbook.creatives), agents=len(playbook.agents))


class ValidationReport(BaseModel):
    valid: bool
    problems: list[PlaybookProblem] = Field(description="what makes the playbook unusable, in file order")
    notes: list[PlaybookProblem] = Field(description="what a marketer may act on: content that escalates or warns, empty audiences")
    summary: Summary | None = Field(description="what a valid playbook holds")


class Upload(BaseModel):
    uploaded_by: str
    uploaded_at: datetime


class VersionSummary(BaseModel):
    id: int
    hash: str = Field(description="SHA-256 of the text")
    recorded_at: datetime = Field(description="when the text was first stored (by an upload or a cycle)")
    cycles: int = Field(description="cycles that ran this version")
    uploads: list[Upload] = Field(description="newest first; none for a version only a cycle recorded")
    in_force: bool = Field(description="the playbook in force on this server")


class VersionDetail(VersionSummary):
    text: str


class VersionList(BaseModel):
    versions: list[VersionSummary]
    next_before: int | None = Field(description="pass as before= for the next page; None on the last")


class Uploaded(BaseModel):
    version: VersionSummary
    new_version: bool = Field(description="false when the same text was stored before")
    summary: Summary


def _summary(version: Version, in_force: int | None) -> VersionSummary:
    return VersionSummary(id=version.id, hash=version.hash, recorded_at=version.recorded_at, cycles=version.cycles,
                          uploads=[Upload(uploaded_by=u.uploaded_by, uploaded_at=u.uploaded_at) for u in version.uploads],
                          in_force=version.id == in_force)


def _in_force(ctx: ApiContext) -> int | None:
    playbook = ctx.playbook_or_none()
    return playbooks.version_of(ctx.engine, playbook) if playbook is not None else None


@router.post("/validate", response_model=ValidationReport, openapi_extra=YAML_BODY,
             summary="Every problem of a playbook with its line, as legato validate; nothing is stored")
def validate(
    caller: Caller = Depends(allow(Ability.READ)),
    text: str = Depends(playbook_text),
    audiences: bool = Query(False, description="Also count each agent's audience on the data and note the empty ones"),
    ctx: ApiContext = Depends(context),
) -> ValidationReport:
    result = playbooks.validate(text, engine=ctx.engine if audiences else None, at=ctx.now())
    return ValidationReport(valid=result.valid, problems=[PlaybookProblem.of(p) for p in result.placed],
                            notes=[PlaybookProblem.of(p) for p in result.placed_notes],
                            summary=Summary.of(result.playbook) if result.playbook is not None else None)


@router.post("", response_model=Uploaded, status_code=201, openapi_extra=YAML_BODY,
             summary="Upload a playbook: stored as a new version under the key's name, and in force on this server from now on")
def upload(
    response: Response,
    caller: Caller = Depends(allow(Ability.STEER)),
    text: str = Depends(playbook_text),
    ctx: ApiContext = Depends(context),
) -> Uploaded:
    done = playbooks.upload(ctx.engine, text, by=caller.name, now=ctx.now())
    ctx.use_playbook(done.playbook)
    response.headers["Location"] = f"/v1/playbooks/{done.version.id}"
    return Uploaded(version=_summary(done.version, done.version.id), new_version=done.new_version, summary=Summary.of(done.playbook))


@router.get("", response_model=VersionList, summary="Stored playbook versions, newest first, with who uploaded each")
def list_versions(
    caller: Caller = Depends(allow(Ability.READ)),
    limit: int = Query(50, ge=1, le=500),
    before: int | None = Query(None, ge=1, le=2**31 - 1, description="Only versions older than this id (the previous page's next_before)"),
    ctx: ApiContext = Depends(context),
) -> VersionList:
    found = playbooks.versions(ctx.engine, limit=limit, before=before)
    in_force = _in_force(ctx)
    return VersionList(versions=[_summary(v, in_force) for v in found], next_before=found[-1].id if len(found) == limit else None)


@router.get("/{version_id}", response_model=VersionDetail, responses=documented(404), summary="One playbook version with its text")
def show_version(
    caller: Caller = Depends(allow(Ability.READ)),
    version_id: int = Path(..., ge=1, le=2**31 - 1),
    ctx: ApiContext = Depends(context),
) -> VersionDetail:
    version = playbooks.version(ctx.engine, version_id)
    assert version.text is not None
    return VersionDetail(**_summary(version, _in_force(ctx)).model_dump(), text=version.text)
