"""The console's playbook pages: the playbook in force rendered readably, its versions and who
uploaded each, a diff between two versions, and uploading a new one.

The playbook in force is the API's (``ApiContext.playbook_or_none``), shown objectives first:
each objective's KPIs (the primary first) and guardrail KPIs, then the agents pursuing it,
then the guardrails every agent obeys. Versions, uploads and their validation are
:mod:`legato.service.playbooks`' (what ``/v1/playbooks`` calls): an upload that does not
validate is shown again with every problem at its line, next to the numbered text, and
nothing is stored; one that validates is stored under the signed-in key's name and is in
force from then on, as an upload over the API is. Only roles with the ability the API's
upload needs (``steer``) see the form; a POST from any other is refused (403).

Texts and diffs are shown as text: Jinja escapes every line, so a playbook's HTML creative
cannot run in the console.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.datastructures import UploadFile

from legato.api.security import Ability
from legato.console.auth import Session, signed_in
from legato.console.csrf import checked
from legato.console.render import page
from legato.errors import Invalid, NotFound
from legato.playbook.models import Playbook
from legato.playbook.problems import Placed
from legato.service import playbooks
from legato.service.playbooks import PlaybookInvalid
from legato.trust.ladder import Stage

router = APIRouter()

Reader = Annotated[Session, Depends(signed_in(Ability.READ))]
Uploader = Annotated[Session, Depends(checked(Ability.STEER))]  # signed in with the ability, and the form's CSRF token
UPLOAD = Ability.STEER  # what POST /v1/playbooks demands (legato.api.routes.playbooks.upload)
VERSIONS = 20  # versions on one page
VersionId = Path(ge=1, le=2**31 - 1)


@dataclass(frozen=True)
class Line:
    number: int
    text: str
    problems: list[Placed]
    notes: list[Placed]


def numbered(text: str, problems: list[Placed], notes: list[Placed] = []) -> tuple[list[Line], list[Placed]]:  # noqa: B006 (never mutated)
    """The text's lines, each with the problems (and notes) placed on it, and those placed past its end."""
    lines = text.splitlines() or [""]
    at: dict[int, list[Placed]] = {}
    noted: dict[int, list[Placed]] = {}
    for found, into in ((problems, at), (notes, noted)):
        for each in found:
            into.setdefault(each.line, []).append(each)
    elsewhere = [p for n, found in (*at.items(), *noted.items()) if not 1 <= n <= len(lines) for p in found]
    return [Line(n, line, at.get(n, []), noted.get(n, [])) for n, line in enumerate(lines, start=1)], elsewhere


@dataclass(frozen=True)
class DiffLine:
    kind: str  # "file", "hunk", "add", "del" or "same"
    text: str


def diff(old: str, new: str, old_name: str, new_name: str) -> list[DiffLine]:
    """A unified diff of two texts, line by line, each line with its kind for the page to colour."""
    found: list[DiffLine] = []
    for line in difflib.unified_diff(old.splitlines(), new.splitlines(), old_name, new_name, lineterm="", n=3):
        if line.startswith(("---", "+++")):
            kind = "file"
        elif line.startswith("@@"):
            kind = "hunk"
        elif line.startswith("+"):
            kind = "add"
        elif line.startswith("-"):
            kind = "del"
        else:
            kind = "same"
        found.append(DiffLine(kind, line))
    return found


def _ctx(request: Request) -> Any:
    return request.app.state.context


def _in_force(request: Request) -> tuple[Playbook | None, int | None]:
    ctx = _ctx(request)
    playbook = ctx.playbook_or_none()
    return playbook, (playbooks.version_of(ctx.engine, playbook) if playbook is not None else None)


def _overview(request: Request, session: Session, *, status_code: int = 200, **context: Any) -> HTMLResponse:
    playbook, in_force = _in_force(request)
    before = request.query_params.get("before", "")
    older = int(before) if before.isdigit() and 1 <= int(before) < 2**31 else None
    listed = playbooks.versions(_ctx(request).engine, limit=VERSIONS + 1, before=older)
    versions, more = listed[:VERSIONS], len(listed) > VERSIONS
    uploaded = request.query_params.get("uploaded", "")
    just = next((v for v in versions if str(v.id) == uploaded), None)  # the version an upload just stored, named by the redirect
    shown: dict[str, Any] = dict(sent=None, error=None, checked=None, refused=None, problems=[], notes=[], lines=[], elsewhere=[])
    return page(
        request, "playbook.html", session=session, playbook=playbook, in_force=in_force, versions=versions,
        next_before=versions[-1].id if more and versions else None, paged=older is not None,
        may_upload=session.may(UPLOAD), stages={stage.value: stage.name.title() for stage in Stage}, uploaded=just,
        new_version=request.query_params.get("new") != "0", status_code=status_code, **(shown | context),
    )


@router.get("/playbook", response_class=HTMLResponse, summary="The playbook in force, its versions, and the upload form")
def playbook_page(request: Request, session: Reader) -> HTMLResponse:
    return _overview(request, session)


@router.get("/playbook/versions/{version_id}", response_class=HTMLResponse, summary="One playbook version's text, numbered")
def version_page(request: Request, session: Reader, version_id: Annotated[int, VersionId]) -> HTMLResponse:
    engine = _ctx(request).engine
    try:
        version = playbooks.version(engine, version_id)
    except NotFound as exc:
        return page(request, "playbook_version.html", session=session, version=None, error=exc, version_id=version_id, status_code=404)
    previous = playbooks.versions(engine, limit=1, before=version_id)
    lines, _ = numbered(version.text or "", [])
    return page(request, "playbook_version.html", session=session, version=version, error=None, version_id=version_id,
                lines=lines, previous=previous[0].id if previous else None, in_force=_in_force(request)[1])


@router.get("/playbook/diff", response_class=HTMLResponse, summary="What changed between two playbook versions")
def diff_page(request: Request, session: Reader) -> HTMLResponse:
    """``new`` against ``old``; without ``old``, against the version stored just before ``new``."""
    engine = _ctx(request).engine
    given = {name: request.query_params.get(name, "").strip() for name in ("old", "new")}
    error: Exception | None = None
    lines: list[DiffLine] = []
    old = new = None
    try:
        newer = _version_id(given["new"])
        if newer is None:
            raise Invalid("choose the version to see the changes of", hint="pick two versions from the list of versions")
        older = _version_id(given["old"])
        if older is None:
            before = playbooks.versions(engine, limit=1, before=newer)
            if not before:
                raise NotFound(f"version {newer} is the first stored; there is nothing before it to compare", hint="pick two versions from the list of versions")
            older = before[0].id
        old, new = playbooks.version(engine, older), playbooks.version(engine, newer)
        lines = diff(old.text or "", new.text or "", f"version {old.id}", f"version {new.id}")
    except (Invalid, NotFound) as exc:
        error = exc
    status = 200 if error is None else 404 if isinstance(error, NotFound) else 422
    return page(request, "playbook_diff.html", session=session, error=error, old=old, new=new, lines=lines,
                versions=playbooks.versions(engine, limit=100), status_code=status)


def _version_id(text: str) -> int | None:
    if not text:
        return None
    if not text.isdigit() or not 1 <= int(text) < 2**31:
        raise Invalid(f"'{text[:20]}' is not a version number", hint="pick two versions from the list of versions")
    return int(text)


async def _sent_text(request: Request) -> tuple[str, str]:
    """The playbook the form sent (the file when one was chosen, else the text box) and what the person asked for."""
    form = await request.form(max_files=1, max_fields=16)  # parsed once, by the CSRF check (legato.console.csrf), within its size limit
    intent = str(form.get("intent") or "upload")
    chosen = form.get("file")
    if isinstance(chosen, UploadFile) and chosen.filename:
        raw = await chosen.read()
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise Invalid(f"the file {chosen.filename} is not UTF-8 text (byte {exc.start})", hint="choose the playbook's YAML file as it is saved, in UTF-8") from None
    else:
        text = str(form.get("text") or "")
    if not text.strip():
        raise Invalid("the playbook is empty", hint="paste the playbook's YAML into the box, or choose its file")
    return text.replace("\r\n", "\n"), intent


@router.post("/playbook", response_class=HTMLResponse, summary="Check or upload a new playbook version")
async def upload_page(request: Request, session: Uploader) -> Response:
    ctx = _ctx(request)
    try:
        text, intent = await _sent_text(request)
    except Invalid as exc:
        return _overview(request, session, status_code=422, sent="", error=exc)
    if intent == "check":
        checked = playbooks.validate(text, engine=ctx.engine, at=ctx.now())
        lines, elsewhere = numbered(text, checked.placed, checked.placed_notes)
        return _overview(request, session, status_code=200 if checked.valid else 422, sent=text, checked=checked,
                         problems=checked.placed, notes=checked.placed_notes, lines=lines, elsewhere=elsewhere)
    try:
        done = playbooks.upload(ctx.engine, text, by=session.name, now=ctx.now())
    except PlaybookInvalid as exc:
        lines, elsewhere = numbered(text, exc.placed)
        return _overview(request, session, status_code=422, sent=text, refused=exc, problems=exc.placed, notes=[],
                         lines=lines, elsewhere=elsewhere)
    except Invalid as exc:
        return _overview(request, session, status_code=422, sent=text, error=exc)
    ctx.use_playbook(done.playbook)  # in force from now on, as an upload over the API is
    return RedirectResponse(f"/playbook?uploaded={done.version.id}&new={int(done.new_version)}#v{done.version.id}", status_code=303)
