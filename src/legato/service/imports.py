"""Loading customers and events into the store: from files (``legato import``) and from
records (the HTTP API's ``/v1/customers`` and ``/v1/events``, and Segment's calls).

Records go through the same importer as a file: they are made into one table
(:func:`legato.store.ingest.table_from_records`, typed as a JSON Lines file is read) and
imported in one transaction, so they get the same fields, the same row errors and the same
"a bad record is left out whole, the others are written" as ``legato import``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine

from legato.clock import Clock
from legato.errors import Invalid
from legato.playbook.models import Playbook
from legato.store.ingest import ATTRIBUTE_TYPES, FORMATS, ImportReport, import_customers, import_events, table_from_records

# A customer record's own fields (beside consent_* and attributes) and an event record's:
# every other column of a file is an attribute or a property, which a record sends nested.
CUSTOMER_FIELDS = ("id", "email", "phone", "time_zone", "country", "region")
EVENT_FIELDS = ("id", "customer_id", "type", "occurred_at", "revenue", "channel", "bounce_type", "decision_id")
Store = Engine | Connection

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


def customer_records(
    store: Store,
    records: Sequence[Mapping[str, Any]],
    *,
    playbook: Playbook | None = None,
    clock: Clock | None = None,
    consent_source: str | None = None,
) -> ImportReport:
    """Customers given as records: a file's columns, with its other columns under ``attributes``.

    Each record's attributes become columns of their own, so declared attributes are checked
    against their type as in a file; a record is one row, and a row error's ``row`` is the
    record's index from 0 (:func:`record_field` names the field it is about).
    """
    rows = []
    for record in records:
        row = {key: value for key, value in record.items() if key != "attributes"}
        row.update(record.get("attributes") or {})
        rows.append(row)
    declared = attribute_types(playbook, {})
    return import_customers(store, table_from_records(rows, first_row=0), attribute_types=declared, clock=clock, consent_source=consent_source)


def event_records(
    store: Store,
    records: Sequence[Mapping[str, Any]],
    *,
    create_customers: bool = False,
    clock: Clock | None = None,
) -> ImportReport:
    """Events given as records: a file's columns, with its other columns under ``properties``.

    ``create_customers`` creates a customer the store does not know (with only an id) for
    its events; without it such an event is a row error, as in ``legato import events``. A
    row error's ``row`` is the record's index from 0.
    """
    return import_events(store, table_from_records(records, first_row=0), create_customers=create_customers, clock=clock)


def record_field(kind: str, column: str | None) -> str | None:
    """Where in a record (``customers`` or ``events``) the importer's column is: a field of
    its own (``occurred_at``, ``consent_email_marketing``), or ``attributes.<name>`` /
    ``properties.<name>``; None for the record as a whole."""
    if column is None:
        return None
    if kind == "customers":
        own = column in CUSTOMER_FIELDS or column.startswith("consent_")
        return column if own else f"attributes.{column}"
    return column if column in EVENT_FIELDS else f"properties.{column}"
