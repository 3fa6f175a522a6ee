"""Loading customers and events from files into the store."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from sqlalchemy import Engine

from legato.errors import Invalid
from legato.playbook.models import Playbook
from legato.store.ingest import ATTRIBUTE_TYPES, FORMATS, ImportReport, import_customers, import_events

Progress = Callable[[int, int], None]


def attribute_types(playbook: Playbook | None, given: Mapping[str, str]) -> dict[str, str]:
    """The playbook's declared attribute types, overridden by those given one by one; each checked."""
    types = {name: kind.value for name, kind in playbook.attributes.items()} if playbook is not None else {}
    types.update(given)
    for name, kind in types.items():
        if kind not in ATTRIBUTE_TYPES:
            raise Invalid(f"{name}={kind}: the type must be one of {', '.join(ATTRIBUTE_TYPES)}", hint="fix --attribute-type or the playbook's attributes")
    return types


def check_format(format: str | None) -> None:
    if format is not None and format.lower() not in FORMATS:
        raise Invalid(f"'{format}' is not one of {', '.join(FORMATS)}", hint="name the format with --format, or leave it to the file extension")


def customers(
    engine: Engine,
    file: Path,
    *,
    format: str | None = None,
    mapping: Mapping[str, str] | None = None,
    playbook: Playbook | None = None,
    types: Mapping[str, str] | None = None,
    progress: Progress | None = None,
    delimiter: str | None = None,
) -> ImportReport:
    """New ids added, changed ones updated, identical ones left alone; rejected rows reported."""
    check_format(format)
    declared = attribute_types(playbook, types or {})
    return import_customers(
        engine, file, format=format, mapping=dict(mapping or {}), attribute_types=declared, progress=progress, delimiter=delimiter
    )


def events(
    engine: Engine,
    file: Path,
    *,
    format: str | None = None,
    mapping: Mapping[str, str] | None = None,
    progress: Progress | None = None,
    delimiter: str | None = None,
    event_type: str | None = None,
    ids_from_content: bool = False,
) -> ImportReport:
    """Events added (duplicates by id counted, not stored twice) and every customer's traits kept current."""
    check_format(format)
    return import_events(
        engine,
        file,
        format=format,
        mapping=dict(mapping or {}),
        progress=progress,
        delimiter=delimiter,
        event_type=event_type,
        ids_from_content=ids_from_content,
    )
