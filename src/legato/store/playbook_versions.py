"""The playbooks cycles ran, kept in the store once per distinct text.

A cycle records the playbook it runs (:func:`record`) and stamps the version on its decisions;
review and dispatch read a decision's message from that version (:class:`Versions`), so
editing or replacing the playbook file afterwards cannot change what a reviewer checked and
approved, or what is sent. A version is identified by the SHA-256 of its text.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy.dialects import postgresql, sqlite

from legato.errors import LegatoError
from legato.playbook.loader import playbook_from_text, playbook_text
from legato.playbook.models import Playbook
from legato.store.schema import playbook_versions


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
