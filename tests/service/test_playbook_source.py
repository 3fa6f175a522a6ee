"""Where a worker's playbook comes from (`service.playbook_source`): a watched file answers each
save once, an invalid one with its problems at their lines; the store answers each upload once."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

import pytest
from sqlalchemy import Engine

from legato.errors import LegatoError
from legato.service import playbooks
from legato.service.playbook_source import FileSource, StoreSource
from tests.world import PLAYBOOK

TEXT = PLAYBOOK.replace("STAGE", "3").replace("HOLDOUT", "0").replace("BUDGET", "{}")


def save(path: Path, text: str, tick: int) -> None:
    """Write and give the file a modification time of its own (two saves within a clock tick
    would otherwise look like one)."""
    path.write_text(text, encoding="utf-8")
    os.utime(path, ns=(tick * 1_000_000_000, tick * 1_000_000_000))


def test_a_watched_file_answers_each_save_once_and_an_invalid_one_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "playbook.yaml"
    save(path, TEXT, 1)
    source = FileSource(path)
    first = source.first()
    assert first.folder == tmp_path and first.fields["source"] == "file" and first.name.startswith(f"{path} (sha256 ")
    assert source.changed() is None  # nothing saved since

    save(path, TEXT, 2)  # saved again unchanged (or touched): offered, under the same name (the worker ignores it)
    again = source.changed()
    assert again is not None and again.name == first.name
    assert source.changed() is None

    broken = TEXT.replace("holdout: 0", "holdout: lots", 1)
    line = next(n for n, text in enumerate(broken.splitlines(), 1) if "holdout: lots" in text)
    save(path, broken, 3)
    with pytest.raises(LegatoError) as invalid:
        source.changed()
    assert f"{path}:{line}:" in invalid.value.message and "holdout" in invalid.value.message
    assert source.changed() is None  # reported once, not at every look

    edited = TEXT.replace("Hi", "Hello there", 1)
    save(path, edited, 4)
    taken = source.changed()
    assert taken is not None and taken.name != first.name and any(c.subject.startswith("Hello there") for c in taken.playbook.creatives)

    path.unlink()
    with pytest.raises(LegatoError, match="cannot be read"):
        source.changed()
    assert source.changed() is None  # a file gone is said once


def test_a_missing_file_is_named_at_start(tmp_path: Path) -> None:
    with pytest.raises(LegatoError, match="no such playbook file"):
        FileSource(tmp_path / "nowhere.yaml").first()


def test_the_store_answers_each_upload_once_with_its_version_and_who_uploaded_it(engine: Engine, tmp_path: Path) -> None:
    source = StoreSource(engine, tmp_path)
    with pytest.raises(LegatoError, match="none was uploaded to this store"):
        source.first()
    now = datetime.now(timezone.utc)
    one = playbooks.upload(engine, TEXT, by="ana", now=now).version.id
    first = source.first()
    assert (first.name, first.fields["version"], first.fields["uploaded_by"], first.folder) == (f"version {one}", one, "ana", tmp_path)
    assert source.changed() is None
    two = playbooks.upload(engine, TEXT.replace("Hi", "Hello there", 1), by="ben", now=now).version.id
    taken = source.changed()
    assert taken is not None and (taken.name, taken.fields["uploaded_by"]) == (f"version {two}", "ben")
    assert source.changed() is None
    playbooks.upload(engine, TEXT.replace("Hi", "Hello there", 1), by="cy", now=now)  # the same text again: the same version
    same = source.changed()
    assert same is not None and same.name == f"version {two}"
