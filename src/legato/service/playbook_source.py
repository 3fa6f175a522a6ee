"""Where a long-running worker's playbook comes from, and whether a newer one is there.

A worker started with ``--playbook FILE`` runs that file (:class:`FileSource`); one started
without runs the newest playbook uploaded to the store (POST /v1/playbooks; :class:`StoreSource`).
Between two cycles the worker asks its source :meth:`changed`: ``None`` when nothing changed,
a :class:`Loaded` playbook when there is a newer one, or a :class:`~legato.errors.LegatoError`
when the newer one cannot be used (an edit of the file that does not validate: every problem
at ``FILE:LINE:COL``). The worker decides what to do with each answer (``service.worker``).

Each change is answered once (an upload, a save of the file), whether or not the worker could
use it, so a playbook that fails is reported once, not at every look; saving the file again, or
uploading again, offers it again (a secret file may have appeared since). The worker ignores an
offer of the playbook it runs already (the same text uploaded again; a ``touch``), by its name.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Engine

from legato.errors import LegatoError
from legato.playbook.models import Playbook


@dataclass(frozen=True)
class Loaded:
    """A playbook and what names it in the worker's log lines."""

    playbook: Playbook
    folder: Path  # where its file channels' relative paths lead
    name: str  # "version 7" or "playbook.yaml (sha256 1a2b3c4d5e6f)"
    fields: dict[str, Any] = field(default_factory=dict)  # the same, as log fields


class PlaybookSource(Protocol):
    def first(self) -> Loaded:
        """The playbook to start with; :class:`LegatoError` when there is none."""
        ...

    def changed(self) -> Loaded | None:
        """A newer playbook than the last one offered, None if there is none; :class:`LegatoError`
        when the newer one cannot be read or does not validate (asked again, the same edit or upload
        answers None)."""
        ...


class StoreSource:
    """The newest playbook uploaded to the store; a newer upload is seen by one indexed lookup."""

    def __init__(self, engine: Engine, folder: Path) -> None:
        self.engine = engine
        self.folder = folder
        self._upload: int | None = None  # the newest upload last looked at

    def first(self) -> Loaded:
        loaded = self._read()
        if loaded is None:
            raise LegatoError("no playbook: --playbook was not given and none was uploaded to this store",
                              hint="give --playbook FILE, or upload one (POST /v1/playbooks on legato serve)")
        return loaded

    def changed(self) -> Loaded | None:
        from legato.store.playbook_versions import newest_upload_id

        with self.engine.connect() as connection:
            newest = newest_upload_id(connection)
        if newest == self._upload:
            return None
        return self._read()

    def _read(self) -> Loaded | None:
        from legato.store.playbook_versions import newest_upload_id
        from legato.service import playbooks

        # The upload's id first: an upload landing between the two reads is then seen again at
        # the next look (and found to be the version already read), never missed.
        with self.engine.connect() as connection:
            self._upload = newest_upload_id(connection)
        found = playbooks.newest(self.engine)
        if found is None:
            return None
        version_id, playbook = found
        uploads = playbooks.version(self.engine, version_id).uploads
        fields: dict[str, Any] = {"source": "store", "version": version_id}
        if uploads:
            fields |= {"uploaded_by": uploads[0].uploaded_by, "uploaded_at": uploads[0].uploaded_at.isoformat()}
        return Loaded(playbook, self.folder, f"version {version_id}", fields)


class FileSource:
    """A playbook file, watched: a save that validates is a newer playbook (see the module's text).

    A look costs one ``stat``; the file is read and validated only when its size or modification
    time moved. A half-written file (an editor saving in place) fails to validate and is
    reported; the completed save moves the time again and is offered at the next look.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stat: tuple[int, int] | None = None

    def first(self) -> Loaded:
        from legato.playbook.loader import read_text

        self._stat = self._signature()
        return self._load(read_text(self.path))  # a missing file is named as `legato run` names it

    def changed(self) -> Loaded | None:
        signature = self._signature()
        if signature == self._stat:
            return None  # a file gone stays gone: reported once
        self._stat = signature
        try:
            text = self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise LegatoError(f"{self.path}: cannot be read ({error})",
                              hint="restore the file; the worker keeps running the playbook it had") from None
        return self._load(text)

    def _load(self, text: str) -> Loaded:
        from legato.validation import parse_playbook

        playbook = parse_playbook(text, str(self.path))  # every problem at FILE:LINE:COL
        short = hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]
        return Loaded(playbook, self.path.parent, f"{self.path} (sha256 {short})", {"source": "file", "file": str(self.path), "sha256": short})

    def _signature(self) -> tuple[int, int] | None:
        try:
            found = os.stat(self.path)
        except OSError:
            return None
        return found.st_mtime_ns, found.st_size
