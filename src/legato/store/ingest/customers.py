"""Customer imports: new customers inserted, changed ones updated, with their consents."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from typing import Any

from sqlalchemy import Connection, Engine, Integer, String, and_, column, select, table, text, update

from legato.channels import CONTACT_FIELDS, ContactError, normalize_emails, normalize_phone
from legato.clock import Clock, SystemClock, as_utc
from legato.errors import LegatoError
from legato.store import traits
from legato.store.ingest.columns import DATE_HINT, cell_text, mask, parse_instants, quoted, too_long
from legato.guard.consent import PURPOSES, Change, ConsentStatus, refusal_reason, sql_change, write_statements
from legato.store.ingest.consent import CHANNELS
from legato.store.ingest.consent import STAGE_COLUMNS as CONSENT_STAGE_COLUMNS
from legato.store.ingest.consent import consent_stage_rows, date_columns, find_consent_columns, parse_consent_values
from legato.store.schema import consents
from legato.store.types import UTCDateTime
from legato.store.ingest.json_columns import ATTRIBUTE_TYPES, json_objects, object_fragments
from legato.store.ingest.known import customer_column_warnings, suggested_column
from legato.store.ingest.read import Frame, read_source, require_columns
from legato.store.ingest.report import ImportReport, RowError, source_text
from legato.store.ingest.rows import Problems, check_ids, check_unique_ids
from legato.store.ingest.stage import Progress, Steps, drop_stage, load_stage, timed, transaction

# Column lengths from the schema: checking them here turns what would be a PostgreSQL
# error aborting the whole import (SQLite does not enforce them) into a row error. The
# contact columns (email, phone), their lengths and their one form are the channel registry's.
_CUSTOMER_FIELDS = {**CONTACT_FIELDS, "time_zone": 64, "country": 2, "region": 16}

_CONSENT_DATE_NAMES = [f"consent_{c}_{p}_at" for c in CHANNELS for p in PURPOSES]

_CUSTOMER_STAGE = "legato_stage_customers"
_CONSENT_STAGE = "legato_stage_consents"


def import_customers(
    engine: Engine | Connection,
    source: Path | str | pa.Table,
    *,
    format: str | None = None,
    mapping: Mapping[str, str] | None = None,
    attribute_types: Mapping[str, str] | None = None,
    clock: Clock | None = None,
    progress: Progress | None = None,
    delimiter: str | None = None,
    consent_source: str | None = None,
) -> ImportReport:
    """Insert new customers and update changed ones, with their consents.

    A customer is written only if something differs from the store, so re-importing a
    file changes nothing (not even ``updated_at``). An empty cell means "no value": it
    never erases what the store holds. Attributes are merged key by key.

    ``engine`` may be a connection in a transaction the caller owns (see
    :func:`.stage.transaction`). ``consent_source`` names where the consent statements came
    from (default ``import:<file name>``; the HTTP API names the key that sent them).
    """
    now = as_utc((clock or SystemClock()).now())
    declared = dict(attribute_types or {})
    for name, kind in declared.items():
        if kind not in ATTRIBUTE_TYPES:
            raise LegatoError(
                f"attribute {name} has type '{kind}'", hint="use one of: " + ", ".join(ATTRIBUTE_TYPES)
            )
    frame = read_source(source, format, mapping, _instant_columns(declared), delimiter=delimiter)
    require_columns(frame, ["id"], suggest=lambda field, names: suggested_column(field, names, events=False))
    consent_columns = find_consent_columns(frame)
    rows = frame.table.num_rows
    steps = Steps(progress, rows)
    steps.at(0)
    report = ImportReport("customers", source_text(source), rows_read=rows)
    problems = Problems(frame)

    ids = check_ids(frame, problems, "id", "id (every customer needs one)")
    check_unique_ids(frame, problems, ids)
    fields: dict[str, pa.Array] = {}
    for name in sorted(_CUSTOMER_FIELDS, key=lambda n: n == "phone"):  # a phone is read in the row's country
        fields[name] = _customer_field(frame, problems, name, fields.get("country"))

    dates: dict[str, pa.Array] = {}
    for name in date_columns(consent_columns):
        dates[name], bad, shown = parse_instants(frame.column(name), name)
        problems.add(bad, name, shown, lambda v: f"{quoted(v)} is not a date ({DATE_HINT})")
        # A statement dated after the import would outrank every later one (a STOP included).
        future = mask(pc.greater(dates[name], pa.scalar(now, pa.timestamp("us", "UTC"))))
        problems.add(future, name, shown, lambda v: f"{quoted(v)} is in the future; a consent is dated when the customer gave or revoked it")
    consents = [(column, *parse_consent_values(frame, problems, column.name)) for column in consent_columns]

    reserved = {"id", "consent_at", *_CUSTOMER_FIELDS, *(c.name for c in consent_columns), *dates}
    others = [name for name in frame.names if name not in reserved]
    report.column_warnings = customer_column_warnings(frame.names, others, declared)
    report.warnings = [w.describe(frame.name) for w in report.column_warnings]
    fragments = object_fragments(frame, others, "attributes", declared, problems)
    attributes = json_objects(fragments, rows)

    good = pa.array(~problems.bad)
    order = pa.array(np.arange(rows, dtype=np.int64))
    staged = pa.table(
        [order, ids, *(fields[n] for n in _CUSTOMER_FIELDS), attributes],
        names=["row_no", "id", *_CUSTOMER_FIELDS, "attributes"],
    ).filter(good)
    source_name = (consent_source or f"import:{frame.name}")[:128]
    consent_rows = consent_stage_rows(ids, consents, dates, source_name, good)

    with transaction(engine) as connection:
        customers_stage = load_stage(
            connection,
            _CUSTOMER_STAGE,
            [("row_no", "int"), ("id", "text"), *((n, "text") for n in _CUSTOMER_FIELDS), ("attributes", "jsonb")],
            staged,
            steps.loaded,
        )
        consent_stage = load_stage(connection, _CONSENT_STAGE, CONSENT_STAGE_COLUMNS, consent_rows)
        refused = _refused_grants(connection, consent_stage)
        counts = _upsert_customers(connection, customers_stage, consent_stage, now)
        drop_stage(connection, customers_stage)
        drop_stage(connection, consent_stage)
    steps.finish()
    report.inserted = counts.get("new", 0)
    report.updated = counts.get("changed", 0)
    report.unchanged = counts.get("same", 0)
    report.rejected = problems.rejected
    report.errors = problems.errors()
    numbers = frame.row_numbers([r[0] for r in refused]) if refused else []
    report.not_regranted = [
        RowError(row=number, column=column, value=cell, reason=reason)
        for number, (_, column, cell, reason) in zip(numbers, refused)
    ]
    return report


def _instant_columns(declared: Mapping[str, str]) -> list[str]:
    """Columns read as instants (a JSONL reader that recognised them as timestamps keeps them
    so): the consent dates and the declared timestamp attributes."""
    return ["consent_at", *_CONSENT_DATE_NAMES, *(n for n, t in declared.items() if t == "timestamp")]


def _refused_grants(connection: Connection, stage: str) -> list[tuple[int, str, str, str]]:
    """(row index, column, cell, reason) of every grant the consent history refuses (the
    customer revoked since, or it cannot be shown to be newer): nothing of it is written."""
    staged = _consent_stage_table(stage)
    stored = consents.alias("stored")
    keys = and_(stored.c.customer_id == staged.c.customer_id, stored.c.channel == staged.c.channel, stored.c.purpose == staged.c.purpose)
    verdict = sql_change(stored, staged).label("verdict")
    query = (
        select(staged.c.row_no, staged.c.consent_column, staged.c.cell, staged.c.stated_at, stored.c.stated_at, stored.c.recorded_at, stored.c.source, verdict)
        .select_from(staged.join(stored, keys))
        .where(stored.c.status == ConsentStatus.REVOKED.value, staged.c.status == ConsentStatus.GRANTED.value)
        .order_by(staged.c.row_no, staged.c.consent_column)
    )
    found = []
    for row, column, cell, stated, revoked_stated, revoked_recorded, source, code in connection.execute(query):
        outcome = Change(int(code))
        if outcome.refused:
            found.append((int(row), column, cell, refusal_reason(outcome, cell, stated, revoked_stated or revoked_recorded, source)))
    return found


def _consent_stage_table(stage: str) -> Any:
    types = {"int": Integer(), "text": String(), "time": UTCDateTime()}
    schema, _, name = stage.rpartition(".")
    return table(name, *(column(n, types[k]) for n, k in CONSENT_STAGE_COLUMNS), schema=schema or None)


def _customer_field(frame: Frame, problems: Problems, name: str, countries: pa.Array | None = None) -> pa.Array:
    """email, phone, time_zone, country or region, checked; null where absent or empty.
    E-mail addresses and phone numbers are put in their one form (:mod:`legato.channels`)."""
    if name not in frame.names:
        return pa.nulls(frame.table.num_rows, pa.string())
    values = cell_text(frame.column(name), name)
    if name == "country":
        values = pc.utf8_upper(values)
        bad = mask(pc.is_valid(values)) & ~mask(pc.match_substring_regex(values, r"^[A-Z]{2}$"))
        problems.add(bad, name, values, lambda v: f"{quoted(v)} is not a 2-letter country code (ISO 3166-1, e.g. US)")
        return values
    if name == "time_zone":
        known = [zone for zone in pc.unique(values).to_pylist() if zone and _is_zone(zone)]
        bad = mask(pc.is_valid(values)) & ~mask(pc.is_in(values, pa.array(known, pa.string())))
        problems.add(
            bad, name, values, lambda v: f"{quoted(v)} is not a time zone (use an IANA name, e.g. Europe/Paris)"
        )
        return values
    limit = _CUSTOMER_FIELDS[name]
    if name == "email":
        values, bad = normalize_emails(values)
        problems.add(bad, name, values, lambda v: f"{quoted(v)} is not an email address")
    elif name == "phone":
        return _phones(problems, values, countries, limit)
    problems.add(too_long(values, limit), name, values, lambda v: f"{quoted(v)} is longer than {limit} characters")
    return values


def _phones(problems: Problems, values: pa.Array, countries: pa.Array | None, limit: int) -> pa.Array:
    """Phone numbers in E.164, each read in its row's country when it has no country code."""
    shown = values.to_pylist()
    places = countries.to_pylist() if countries is not None else [None] * len(shown)
    result: list[str | None] = []
    failed: list[tuple[int, str, str]] = []
    for index, (value, country) in enumerate(zip(shown, places)):
        if value is None:
            result.append(None)
            continue
        if len(value) > 2 * limit:  # room for spaces, dashes and brackets around the digits
            failed.append((index, value, f"{quoted(value)} is longer than {2 * limit} characters"))
            result.append(None)
            continue
        try:
            result.append(normalize_phone(value, country if country and len(country) == 2 else None))
        except ContactError as error:
            failed.append((index, value, f"{error.message}; {error.hint}"))
            result.append(None)
    problems.add_rows(failed, "phone")
    return pa.array(result, pa.string())


def _is_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ValueError, KeyError, OSError):  # ZoneInfoNotFoundError is a KeyError
        return False
    return True


def _upsert_customers(connection: Connection, stage: str, consent_stage: str, now: datetime) -> dict[str, int]:
    """Classify staged customers as new/changed/same, then write only what differs; consents
    through their one writer (:func:`legato.guard.consent.write_statements`)."""
    postgres = connection.dialect.name == "postgresql"
    if postgres:
        merged = "(customers.attributes::jsonb || s.attributes)::json"
        attributes_differ = "(c.attributes::jsonb || s.attributes) <> c.attributes::jsonb"
        new_attributes = "s.attributes::json"
    else:
        # json_patch merges key by key; json() puts the stored text in the same minified
        # form so that equal documents compare equal as text.
        merged = "json_patch(customers.attributes, s.attributes)"
        attributes_differ = "json_patch(c.attributes, s.attributes) <> json(c.attributes)"
        new_attributes = "s.attributes"
    field_differs = " OR ".join(
        f"(s.{n} IS NOT NULL AND (c.{n} IS NULL OR s.{n} <> c.{n}))" for n in _CUSTOMER_FIELDS
    )
    staged = _consent_stage_table(consent_stage)
    stored = consents.alias("stored")
    keys = and_(stored.c.customer_id == staged.c.customer_id, stored.c.channel == staged.c.channel, stored.c.purpose == staged.c.purpose)
    consent_changes = (
        select(staged.c.customer_id)
        .select_from(staged.outerjoin(stored, keys))
        .where(sql_change(stored, staged) == Change.WRITE.value)
    )
    connection.execute(text(f"ALTER TABLE {stage} ADD COLUMN state TEXT DEFAULT 'same'"))
    statements = [
        f"UPDATE {stage} AS s SET state = 'new' "
        "WHERE NOT EXISTS (SELECT 1 FROM customers AS c WHERE c.id = s.id)",
        f"UPDATE {stage} AS s SET state = 'changed' WHERE s.state = 'same' AND EXISTS ("
        f"SELECT 1 FROM customers AS c WHERE c.id = s.id AND ({field_differs} OR {attributes_differ}))",
    ]
    for statement in statements:
        connection.execute(text(statement))
    # One set-based UPDATE: an UPDATE per changed id scanned the unindexed stage each time
    # (64,000 customers with a consent took minutes: quadratic).
    schema, _, name = stage.rpartition(".")
    stage_rows = table(name, column("id"), column("state"), schema=schema or None)
    connection.execute(
        update(stage_rows).where(stage_rows.c.state == "same", stage_rows.c.id.in_(consent_changes)).values(state="changed")
    )
    columns = ", ".join(_CUSTOMER_FIELDS)
    connection.execute(
        timed(
            f"INSERT INTO customers (id, {columns}, attributes, created_at, updated_at) "
            f"SELECT s.id, {', '.join('s.' + n for n in _CUSTOMER_FIELDS)}, {new_attributes}, :now, :now "
            f"FROM {stage} AS s WHERE s.state = 'new'",
            "now",
        ),
        {"now": now},
    )
    assignments = ", ".join(f"{n} = COALESCE(s.{n}, customers.{n})" for n in _CUSTOMER_FIELDS)
    connection.execute(
        timed(
            f"UPDATE customers SET {assignments}, attributes = {merged}, updated_at = :now "
            f"FROM {stage} AS s WHERE s.id = customers.id AND s.state = 'changed'",
            "now",
        ),
        {"now": now},
    )
    write_statements(connection, staged, now)
    traits.add_empty_rows(
        connection, f"SELECT s.id AS customer_id FROM {stage} AS s WHERE s.state = 'new'"
    )
    counted = connection.execute(text(f"SELECT state, COUNT(*) FROM {stage} GROUP BY state"))
    return {state: int(count) for state, count in counted}


def add_bare_customers(connection: Connection, customer_ids: str, now: datetime) -> list[str]:
    """Create the customers ``customer_ids`` names that the store does not have, with only an id.

    ``customer_ids`` is a SELECT whose single column is named ``customer_id``. An event for a
    customer Segment's tracking code has not identified yet (a track before identify) creates
    one this way when ``legato serve --unknown-customers create``; an identify later fills in
    the fields. Returns the ids created.
    """
    created = connection.execute(
        timed(
            "INSERT INTO customers (id, attributes, created_at, updated_at) "
            # DISTINCT one level down: beside it PostgreSQL would type the '{}' as text, not json.
            f"SELECT ids.customer_id, '{{}}', :now, :now FROM (SELECT DISTINCT customer_id FROM ({customer_ids}) AS named) AS ids "
            "WHERE NOT EXISTS (SELECT 1 FROM customers AS c WHERE c.id = ids.customer_id) "
            "RETURNING id",
            "now",
        ),
        {"now": now},
    ).scalars().all()
    if created:
        traits.add_empty_rows(connection, f"SELECT ids.customer_id FROM ({customer_ids}) AS ids")
    return list(created)
