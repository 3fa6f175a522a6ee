"""The playbooks cycles ran, kept in the store once per distinct text.

A cycle records the playbook it runs (:func:`record`) and stamps the version on its decisions;
review and dispatch read a decision's message from that version (:class:`Versions`), so
editing or replacing the playbook file afterwards cannot change what a reviewer checked and
approved, or what is sent. A version is identified by the SHA-256 of its text.

A playbook a person uploads over the HTTP API is recorded the same way (:func:`upload`), with
an upload row naming who and when; the newest upload is the playbook in force of a server
started without ``--playbook`` (:func:`newest_upload`). This module is the one writer of
``playbook_versions`` and ``playbook_uploads``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy.dialects import postgresql, sqlite

from legato.errors import LegatoError, NotFound
from legato.playbook.loader import playbook_from_text, playbook_text
from legato.playbook.models import Playbook
from legato.store.schema import cycles, playbook_uploads, playbook_versions


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def record(connection: Connection, playbook: Playbook, now: datetime) -> int:
    """The id of this playbook's version, stored now if no cycle ran the same text before."""
    text = playbook_text(playbook)
    digest = text_hash(text)
    dialect = sqlite if connection.dialect.name == "sqlite" else postgresql
    # Two cycles recording the same new text at once: one inserts, the other finds it.
    connection.execute(
        dialect.insert(playbook_versions).values(hash=digest, text=text, recorded_at=now).on_conflict_do_nothing(index_elements=["hash"])
    )
    return int(connection.execute(sa.select(playbook_versions.c.id).where(playbook_versions.c.hash == digest)).scalar_one())


def find(connection: Connection, playbook: Playbook) -> int | None:
    """The id of the version with exactly this playbook's text, if one is stored."""
    found = connection.execute(sa.select(playbook_versions.c.id).where(playbook_versions.c.hash == text_hash(playbook_text(playbook)))).scalar_one_or_none()
    return int(found) if found is not None else None


class Versions:
    """Stored playbook versions read back, each parsed once (a dispatcher meets a few at most)."""

    def __init__(self) -> None:
        self._loaded: dict[int, Playbook] = {}

    def get(self, connection: Connection, version_id: int) -> Playbook:
        playbook = self._loaded.get(version_id)
        if playbook is None:
            text = connection.execute(sa.select(playbook_versions.c.text).where(playbook_versions.c.id == version_id)).scalar_one_or_none()
            if text is None:
                raise LegatoError(f"playbook version {version_id} is not in the store", hint="the database is damaged; restore it from a backup")
            playbook = self._loaded[version_id] = playbook_from_text(text, f"playbook version {version_id}")
        return playbook

    def for_decision(self, connection: Connection, version_id: int | None, given: Playbook | None) -> Playbook | None:
        """The playbook a decision's message is rendered from: its own version; for a decision
        made before versions were stored (``None``), the playbook given, if any."""
        return self.get(connection, version_id) if version_id is not None else given


# --- uploads over the HTTP API ---------------------------------------------------------


@dataclass(frozen=True)
class Uploaded:
    """Who uploaded a version and when."""

    id: int
    version_id: int
    uploaded_by: str
    uploaded_at: datetime


@dataclass(frozen=True)
class Version:
    """A stored playbook version: its hash, when it was first recorded, its uploads (newest
    first; none for a version only a cycle recorded, from a file) and how many cycles ran it."""

    id: int
    hash: str
    recorded_at: datetime
    cycles: int
    uploads: list[Uploaded] = field(default_factory=list)
    text: str | None = None  # read by :func:`version` only


def upload(connection: Connection, playbook: Playbook, by: str, now: datetime) -> tuple[Uploaded, bool]:
    """Record an upload of ``playbook`` by ``by``; the upload, and whether its text is a new version."""
    known = find(connection, playbook)
    version_id = record(connection, playbook, now)
    upload_id = connection.execute(
        sa.insert(playbook_uploads).values(version_id=version_id, uploaded_by=by, uploaded_at=now).returning(playbook_uploads.c.id)
    ).scalar_one()
    return Uploaded(int(upload_id), version_id, by, now), known is None


def newest_upload_id(connection: Connection) -> int | None:
    """The id of the newest upload (None when nothing was ever uploaded): what several server
    processes compare to know that another took an upload."""
    found = connection.execute(sa.select(sa.func.max(playbook_uploads.c.id))).scalar_one_or_none()
    return None if found is None else int(found)


def newest_upload(connection: Connection) -> tuple[int, Playbook] | None:
    """The version of the newest upload, read back (None when nothing was ever uploaded)."""
    version_id = connection.execute(
        sa.select(playbook_uploads.c.version_id).order_by(playbook_uploads.c.id.desc()).limit(1)
    ).scalar_one_or_none()
    if version_id is None:
        return None
    return int(version_id), Versions().get(connection, int(version_id))


def versions(connection: Connection, *, limit: int = 50, before: int | None = None) -> list[Version]:
    """Versions newest first (by id; ``before``: only older than that id), with their uploads."""
    query = sa.select(playbook_versions.c.id, playbook_versions.c.hash, playbook_versions.c.recorded_at).order_by(playbook_versions.c.id.desc()).limit(limit)
    if before is not None:
        query = query.where(playbook_versions.c.id < before)
    rows = connection.execute(query).all()
    ids = [int(r.id) for r in rows]
    uploads = _uploads(connection, ids)
    ran = _cycles(connection, ids)
    return [Version(int(r.id), r.hash, r.recorded_at, ran.get(int(r.id), 0), uploads.get(int(r.id), [])) for r in rows]


def version(connection: Connection, version_id: int) -> Version:
    """One version with its text, or :class:`NotFound`."""
    row = connection.execute(sa.select(playbook_versions).where(playbook_versions.c.id == version_id)).first()
    if row is None:
        raise NotFound(f"there is no playbook version {version_id}", hint="list the versions with GET /v1/playbooks")
    return Version(int(row.id), row.hash, row.recorded_at, _cycles(connection, [version_id]).get(version_id, 0),
                   _uploads(connection, [version_id]).get(version_id, []), row.text)


def _uploads(connection: Connection, ids: list[int]) -> dict[int, list[Uploaded]]:
    found: dict[int, list[Uploaded]] = {}
    if not ids:
        return found
    u = playbook_uploads
    for r in connection.execute(sa.select(u).where(u.c.version_id.in_(ids)).order_by(u.c.id.desc())):
        found.setdefault(int(r.version_id), []).append(Uploaded(int(r.id), int(r.version_id), r.uploaded_by, r.uploaded_at))
    return found


def _cycles(connection: Connection, ids: list[int]) -> dict[int, int]:
    if not ids:
        return {}
    query = sa.select(cycles.c.playbook_version_id, sa.func.count()).where(cycles.c.playbook_version_id.in_(ids)).group_by(cycles.c.playbook_version_id)
    return {int(v): int(n) for v, n in connection.execute(query)}
