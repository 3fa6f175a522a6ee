"""What a request works with: the store, the clock, and the playbook in force."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from fastapi import Request
from sqlalchemy import Engine

from legato.api.settings import ApiSettings
from legato.errors import Conflict
from legato.playbook.models import Playbook


@dataclass
class ApiContext:
    engine: Engine
    settings: ApiSettings
    _playbook: Playbook | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _upload: int | None = None  # the newest upload in the store when this process last looked
    _watching: bool = False

    def __post_init__(self) -> None:
        # Several server processes on one store (legato serve --workers) each keep the playbook in
        # force: an upload to one is found by the others from the store, at their next request
        # that reads the playbook.
        if self.settings.workers > 1:
            from legato.store.playbook_versions import newest_upload_id

            with self.engine.connect() as connection:
                self._upload = newest_upload_id(connection)
            self._watching = True

    def now(self) -> datetime:
        return self.settings.clock.now()

    def playbook_or_none(self) -> Playbook | None:
        """The playbook in force: the last one uploaded to this server; before any, the file
        ``legato serve --playbook`` named, read once; without that option, the newest version
        ever uploaded to the store (so a restarted server carries on with what was uploaded).

        With ``--workers``, an upload to any worker is the last one uploaded to this server: each
        worker asks the store for its newest upload (one indexed lookup) before it answers with
        the playbook. A single server process does not ask: an upload to another server process
        on the same store is not seen by it until it restarts without ``--playbook``.
        """
        with self._lock:
            if self._watching:
                from legato.store.playbook_versions import newest_upload_id

                with self.engine.connect() as connection:
                    newest = newest_upload_id(connection)
                if newest != self._upload:
                    self._upload = newest
                    from legato.service import playbooks

                    found = playbooks.newest(self.engine)
                    if found is not None:
                        self._playbook = found[1]
            if self._playbook is None:
                if self.settings.playbook is not None:
                    from legato.validation import load_playbook

                    self._playbook = load_playbook(self.settings.playbook)
                else:
                    from legato.service import playbooks

                    found = playbooks.newest(self.engine)
                    self._playbook = found[1] if found is not None else None
            return self._playbook

    def playbook(self) -> Playbook:
        found = self.playbook_or_none()
        if found is None:
            raise Conflict("this server has no playbook",
                           hint="start legato serve with --playbook FILE, or upload one: POST /v1/playbooks with its YAML")
        return found

    def use_playbook(self, playbook: Playbook) -> None:
        with self._lock:
            self._playbook = playbook

    def folder(self) -> Path:
        """Where an uploaded playbook's relative file paths lead (its file channels' outboxes):
        the folder of the ``--playbook`` file, else the folder the server was started in, the
        same rule as ``legato run`` (paths relative to the playbook's folder)."""
        return self.settings.playbook.parent if self.settings.playbook is not None else Path.cwd()


def context(request: Request) -> ApiContext:
    return request.app.state.context
