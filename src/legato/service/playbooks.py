"""Playbooks sent as text: validated as ``legato validate`` does, and uploaded as a new version.

An upload that validates is stored as a playbook version (its text once per distinct text,
as the versions cycles ran: :mod:`legato.store.playbook_versions`) with who uploaded it and
when, and audited. One that does not is refused with every problem at its line and column
(:class:`PlaybookInvalid`), and nothing is stored. The newest upload is the playbook in
force of a server started without ``--playbook`` (:func:`newest`).

An uploaded playbook's file channels write where the server runs, so their paths must stay
inside the server's folder: relative, without ``..`` (a playbook file on the operator's disk
may point anywhere; one sent over HTTP by a marketer's key may not).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePosixPath, PureWindowsPath
from typing import Any

from sqlalchemy import Engine

from legato.errors import Invalid
from legato.playbook.channels import FileChannel
from legato.playbook.loader import place_problems
from legato.playbook.models import Playbook
from legato.playbook.problems import Placed, Problem
from legato.store import playbook_versions
from legato.store.audit import record
from legato.store.playbook_versions import Uploaded, Version
from legato.validation import Validation, validate_text

FILE = "playbook"  # how problems name the text sent (there is no file)


class PlaybookInvalid(Invalid):
    """A playbook that does not validate: every problem at its place; nothing was stored."""

    def __init__(self, placed: list[Placed]) -> None:
        self.placed = placed
        count = len(placed)
        first = f" (the first at line {placed[0].line}: {placed[0].field}: {placed[0].message})" if placed else ""
        super().__init__(
            f"the playbook has {count} problem{'s' if count != 1 else ''}{first}; nothing was stored",
            hint="fix each problem at its line and send the playbook again (POST /v1/playbooks/validate checks without storing)",
        )


@dataclass(frozen=True)
class Upload:
    upload: Uploaded
    version: Version
    new_version: bool  # false: the same text was stored before (uploaded, or run by a cycle)
    playbook: Playbook


def validate(text: str, *, engine: Engine | None = None, at: datetime | None = None) -> Validation:
    """Every problem of the playbook at its line, and the notes (content that escalates or warns;
    with ``engine``, audiences empty on the data at ``at``)."""
    return validate_text(text, FILE, engine=engine, at=at)


def upload(engine: Engine, text: str, *, by: str, now: datetime) -> Upload:
    """Store a playbook that validates as a version uploaded by ``by``; :class:`PlaybookInvalid` otherwise."""
    checked = validate(text)
    placed = list(checked.placed)
    if checked.playbook is not None:
        placed += place_problems(text, _outside_the_folder(checked.playbook))
    if placed or checked.playbook is None:
        raise PlaybookInvalid(sorted(placed, key=lambda p: (p.line, p.column)))
    playbook = checked.playbook
    with engine.begin() as connection:
        done, new = playbook_versions.upload(connection, playbook, by, now)
        version = playbook_versions.version(connection, done.version_id)
        record(connection, now, by, "playbook_uploaded", "playbook_version", str(done.version_id),
               {"hash": version.hash, "new_version": new, "upload": done.id})
    return Upload(done, version, new, playbook)


def versions(engine: Engine, *, limit: int = 50, before: int | None = None) -> list[Version]:
    with engine.connect() as connection:
        return playbook_versions.versions(connection, limit=limit, before=before)


def version(engine: Engine, version_id: int) -> Version:
    with engine.connect() as connection:
        return playbook_versions.version(connection, version_id)


def newest(engine: Engine) -> tuple[int, Playbook] | None:
    """The newest uploaded version and its playbook, if anything was ever uploaded."""
    with engine.connect() as connection:
        return playbook_versions.newest_upload(connection)


def version_of(engine: Engine, playbook: Playbook) -> int | None:
    """The id of the stored version with exactly this playbook's text, if one is stored."""
    with engine.connect() as connection:
        return playbook_versions.find(connection, playbook)


def _outside_the_folder(playbook: Playbook) -> list[Problem]:
    problems: list[Problem] = []
    for channel, spec in playbook.channels.items():
        if not isinstance(spec, FileChannel):
            continue
        path: Any = spec.path
        posix, windows = PurePosixPath(path), PureWindowsPath(path)
        if posix.is_absolute() or windows.is_absolute() or windows.drive or ".." in posix.parts or ".." in windows.parts:
            problems.append(Problem(("channels", channel.value, "path"), f"'{path}' leaves the server's folder",
                                    "an uploaded playbook's file channel writes inside the server's folder: give a relative path without '..'"))
    return problems
