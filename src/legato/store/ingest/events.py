"""Event imports: events not stored yet are inserted and folded into traits.

Events that carry a customer's no take effect in the same transaction, through the owners a
STOP reply uses (docs/events.md lists every type Legato reads):

- ``unsubscribe`` and ``complaint`` (a spam report) revoke marketing consent on the event's
  channel (its ``channel`` column; else the channel of the message its ``decision_id`` names;
  else every channel: a no that names no channel is a no to all), dated by ``occurred_at``
  (:func:`legato.guard.consent.revoke`: an express consent dated after the event outlives it);
- a ``complaint`` about one channel also puts the customer's address or number on that
  channel on the do-not-contact list (:func:`legato.guard.contact.suppress`, kind ``email`` or
  ``phone``): someone who reported a message as spam gets no marketing there again, whatever
  a later import says of their consent (a person may take the entry off);
- a hard ``bounce`` (``bounce_type`` hard or empty; soft bounces change nothing) lists the
  customer's address on that channel as undeliverable (:func:`legato.guard.contact.suppress`),
  so no message of any purpose goes to it again. A bounce must name its channel or message.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
from sqlalchemy import Connection, Engine, text

from legato.channels import NAMES as CHANNELS
from legato.channels import REGISTRY, contact_or_none
from legato.clock import Clock, SystemClock, as_utc
from legato.guard import consent as consent_history
from legato.guard.consent import Change
from legato.guard.contact import UNDELIVERABLE, suppress
from legato.store.schema import customers, decisions
from legato.store import traits
from legato.store.traits import REFUND
from legato.store.ingest.columns import DATE_HINT, cell_text, mask, parse_instants, parse_numbers, quoted, too_large, too_long
from legato.store.ingest.json_columns import json_objects, object_fragments
from legato.store.ingest.known import event_column_warnings, suggested_column
from legato.store.ingest.read import Frame, read_source, require_columns
from legato.store.ingest.report import ImportFileError, ImportReport, source_text
from legato.store.ingest.rows import Problems, check_ids, check_unique_ids
from legato.store.ingest.customers import add_bare_customers
from legato.store.ingest.stage import Progress, Steps, clear_stage, load_stage, probing, transaction
from legato.store.types import UTCDateTime

_TYPE_LENGTH = 32
_MAX_REVENUE = 1e9  # no single event brings in a billion

_EVENT_TYPE = r"^[a-z][a-z0-9_]*$"

_EVENT_STAGE = "legato_stage_events"

_EVENT_FIELDS = ("id", "customer_id", "type", "occurred_at", "revenue")

REVOKING = ("unsubscribe", "complaint")  # revoke marketing consent on their channel
COMPLAINT = "complaint"  # also puts the address on that channel on the do-not-contact list
BOUNCE = "bounce"
_HARD = {"hard": True, "permanent": True, "soft": False, "temporary": False, "transient": False}


def import_events(
    engine: Engine | Connection,
    source: Path | str | pa.Table,
    *,
    format: str | None = None,
    mapping: Mapping[str, str] | None = None,
    clock: Clock | None = None,
    progress: Progress | None = None,
    delimiter: str | None = None,
    event_type: str | None = None,
    ids_from_content: bool = False,
    create_customers: bool = False,
) -> ImportReport:
    """Insert events that are not in the store yet and fold them into traits.

    An event whose id is already stored counts as ``unchanged`` (a duplicate delivery),
    so a file can be imported again safely. Events carry their own time; ``clock`` only
    dates the customers ``create_customers`` creates.

    A file that has no ``type`` column can give every row one (``event_type``), and one with
    no ``id`` column can take ids from each row's content (``ids_from_content``): a hash of
    its cells, numbered where identical rows repeat, so importing it again changes nothing.

    An event for a customer the store does not know is a row error, unless
    ``create_customers`` (``legato serve --unknown-customers create``: Segment's tracking code
    sends track calls before identify): then the customer is created with only an id, for the
    events that passed every other check. ``engine`` may be a connection in a transaction the
    caller owns (see :func:`.stage.transaction`).
    """
    frame = read_source(source, format, mapping, ["occurred_at"], delimiter=delimiter)
    if event_type is not None:
        _add_type(frame, event_type)
    if ids_from_content:
        _add_content_ids(frame)
    require_columns(
        frame, ["id", "customer_id", "type", "occurred_at"], suggest=lambda field, names: suggested_column(field, names, events=True)
    )
    rows = frame.table.num_rows
    steps = Steps(progress, rows)
    steps.at(0)
    report = ImportReport("events", source_text(source), rows_read=rows)
    problems = Problems(frame)

    ids = check_ids(frame, problems, "id", "event id")
    customer_ids = check_ids(frame, problems, "customer_id", "customer_id")
    types = _event_types(frame, problems)
    occurred, bad, shown = parse_instants(frame.column("occurred_at"), "occurred_at")
    problems.add(mask(pc.is_null(shown)), "occurred_at", None, lambda _: "missing occurred_at")
    problems.add(bad, "occurred_at", shown, lambda v: f"{quoted(v)} is not a date ({DATE_HINT})")
    revenue = _revenue(frame, problems, types)
    effects = _consent_event_facts(frame, problems, types)
    check_unique_ids(frame, problems, ids)
    others = [name for name in frame.names if name not in _EVENT_FIELDS]
    report.column_warnings = event_column_warnings(frame.names, others)
    report.warnings = [w.describe(frame.name) for w in report.column_warnings]
    if others:
        properties = json_objects(object_fragments(frame, others, "properties", {}, problems), rows)
    else:
        properties = pa.nulls(rows, pa.string())

    order = pa.array(np.arange(rows, dtype=np.int64))
    staged = pa.table(
        [order, ids, customer_ids, types, occurred, revenue, properties],
        names=["row_no", "id", "customer_id", "type", "occurred_at", "revenue", "properties"],
    ).filter(pa.array(~problems.bad))

    with transaction(engine, rows=staged.num_rows) as connection, probing(connection, staged.num_rows, restore=isinstance(engine, Connection)):
        stage = load_stage(
            connection,
            _EVENT_STAGE,
            [
                ("row_no", "int"),
                ("id", "text"),
                ("customer_id", "text"),
                ("type", "text"),
                ("occurred_at", "time"),
                ("revenue", "real"),
                ("properties", "json"),
            ],
            staged,
            steps.loaded,
            kept=True,
        )
        already = connection.execute(
            text(f"DELETE FROM {stage} AS s WHERE EXISTS (SELECT 1 FROM events AS e WHERE e.id = s.id)")
        ).rowcount
        unknown = [] if create_customers else connection.execute(
            text(
                f"DELETE FROM {stage} AS s WHERE NOT EXISTS "
                "(SELECT 1 FROM customers AS c WHERE c.id = s.customer_id) "
                "RETURNING row_no, customer_id"
            )
        ).all()
        problems.add_rows(
            (
                (int(row), customer, f"unknown customer {quoted(customer)}; import customers first")
                for row, customer in unknown
            ),
            "customer_id",
        )
        # An outcome that names the decision it answers (a tracked click carries the message's
        # decision_id) must name one Legato made for that customer, or it would credit nothing.
        def reference(table: str) -> str:
            if connection.dialect.name == "sqlite":
                return f"json_extract({table}properties, '$.decision_id')"
            return f"({table}properties::jsonb ->> 'decision_id')"

        # Most batches name no decision (an HTTP batch of visits): the statement is left out when
        # no staged properties can hold the key.
        orphaned = [] if not _may_name(staged.column("properties"), "decision_id") else connection.execute(
            text(
                f"DELETE FROM {stage} AS s WHERE {reference('s.')} IS NOT NULL AND NOT EXISTS "
                f"(SELECT 1 FROM decisions AS d WHERE CAST(d.id AS TEXT) = CAST({reference('s.')} AS TEXT) "
                "AND d.customer_id = s.customer_id) "
                # SQLite's RETURNING does not see the table's alias.
                f"RETURNING row_no, CAST({reference('')} AS TEXT), customer_id"
            )
        ).all()
        problems.add_rows(
            (
                (
                    int(row),
                    decision,
                    f"decision_id {quoted(decision)} is not a decision Legato made for customer {quoted(customer)}; "
                    "send the decision_id the message carried, or leave it out to attribute by time window",
                )
                for row, decision, customer in orphaned
            ),
            "decision_id",
        )
        if create_customers:
            now = as_utc((clock or SystemClock()).now())
            report.customers_created = len(add_bare_customers(connection, f"SELECT s.customer_id FROM {stage} AS s", now))
        inserted = connection.execute(
            text(
                "INSERT INTO events (id, customer_id, type, occurred_at, revenue, properties, batch) "
                f"SELECT s.id, s.customer_id, s.type, s.occurred_at, s.revenue, s.properties, :batch FROM {stage} AS s"
            ),
            {"batch": next_batch(connection)},
        ).rowcount
        steps.at(rows + rows // 2)
        # Only unsubscribes, complaints and bounces take effect: a batch with none of them (most)
        # skips the query that looks for them.
        carrying = pc.any(pc.is_in(staged.column("type"), pa.array([*REVOKING, BOUNCE]))).as_py()
        revoked, undeliverable, suppressed = _take_effect(connection, stage, effects) if carrying else (0, 0, 0)
        traits.merge_events(connection, stage)
        if connection.dialect.name == "sqlite":
            # The kept stage would hold a big file's rows in memory until the next import;
            # PostgreSQL's is emptied at commit (ON COMMIT DELETE ROWS).
            clear_stage(connection, stage)
    steps.finish()
    report.inserted = inserted
    report.unchanged = already
    report.consents_revoked = revoked
    report.undeliverable = undeliverable
    report.suppressed = suppressed
    report.rejected = problems.rejected
    report.errors = problems.errors()
    return report


def _may_name(properties: pa.ChunkedArray, key: str) -> bool:
    """Whether any properties object (JSON text) may have ``key``: its text holds the key's
    name, or an escape (``\\u``) that could spell it."""
    if properties.null_count == len(properties):
        return False
    found = pc.or_(pc.match_substring(properties, f'"{key}"'), pc.match_substring(properties, "\\u"))
    return bool(pc.any(found).as_py())


def _add_type(frame: Frame, event_type: str) -> None:
    """Every row of a file without a ``type`` column gets ``event_type``."""
    if "type" in frame.names:
        raise ImportFileError(
            f"{frame.name} has a type column; --type gives a type to files that have none",
            hint="leave out --type, or --map the file's type column to another name",
        )
    chosen = event_type.strip().lower()
    if not re.match(_EVENT_TYPE, chosen) or len(chosen) > _TYPE_LENGTH:
        raise ImportFileError(
            f"--type '{event_type}' is not an event type", hint="use one lower-case word, e.g. purchase or refund"
        )
    frame.table = frame.table.append_column("type", pa.array(np.full(frame.table.num_rows, chosen, dtype=object), pa.string()))


def _add_content_ids(frame: Frame) -> None:
    """Ids for a file without an ``id`` column: the SHA-256 of each row's cells (columns in
    name order), with the row's number among identical rows, so the same file gives the same
    ids every time and identical rows (two equal purchases on one day) stay two events."""
    if "id" in frame.names:
        raise ImportFileError(
            f"{frame.name} has an id column; --ids-from-content is for files that have none",
            hint="leave out --ids-from-content, or --map the id column to another name",
        )
    rows = frame.table.num_rows
    names = sorted(frame.names)
    cells = [pc.fill_null(cell_text(frame.column(name), name), "\x00") for name in names]
    keys = pc.binary_join_element_wise(*cells, "\x1f") if cells else pa.array([""] * rows)
    codes = np.asarray(pc.dictionary_encode(keys).indices.to_numpy(zero_copy_only=False), dtype=np.int64)
    order = np.argsort(codes, kind="stable")
    ranked = codes[order]
    starts = np.r_[0, np.flatnonzero(np.diff(ranked)) + 1] if rows else np.zeros(0, dtype=np.int64)
    first = np.zeros(rows, dtype=np.int64)
    if rows:
        first[starts] = starts
        first = np.maximum.accumulate(first)
    repeat = np.empty(rows, dtype=np.int64)
    repeat[order] = np.arange(rows) - first
    ids = [
        hashlib.sha256(f"{key}\x1e{n}".encode("utf-8")).hexdigest()[:32]
        for key, n in zip(keys.to_pylist(), repeat.tolist())
    ]
    frame.table = frame.table.append_column("id", pa.array(ids, pa.string()))


def next_batch(connection: Connection) -> int:
    """The next import's batch number, from the ``event_batch`` counter in ``settings``.

    The counter's row stays locked until the import commits (PostgreSQL), so batches
    become visible in the order of their numbers: what the learning step has seen is
    every batch up to the highest it read (legato.learn.attribution.credit_late).
    """
    return int(
        connection.execute(
            text(
                "INSERT INTO settings (key, value) VALUES ('event_batch', '1') ON CONFLICT (key) DO UPDATE "
                "SET value = CAST(CAST(settings.value AS INTEGER) + 1 AS TEXT) RETURNING value"
            )
        ).scalar_one()
    )


def _event_types(frame: Frame, problems: Problems) -> pa.Array:
    """Event types, lower-cased; one word of letters, digits and underscores."""
    shown = cell_text(frame.column("type"), "type")
    problems.add(mask(pc.is_null(shown)), "type", None, lambda _: "missing type")
    types = pc.utf8_lower(shown)
    bad = mask(pc.is_valid(types)) & ~mask(pc.match_substring_regex(types, _EVENT_TYPE))
    problems.add(
        bad, "type", shown, lambda v: f"{quoted(v)} is not an event type (use one lower-case word, e.g. purchase or add_to_cart)"
    )
    problems.add(
        too_long(types, _TYPE_LENGTH), "type", shown, lambda v: f"{quoted(v)} is longer than {_TYPE_LENGTH} characters"
    )
    return types


def _revenue(frame: Frame, problems: Problems, types: pa.Array) -> pa.Array:
    """Revenue of each event; on a refund the amount returned, stored as a negative number.

    A refund's amount may be written either way (12.50 or -12.50): it is money going back,
    so it is stored as -12.50 and counts against the customer's spend and the revenue
    credited to a decision. Negative revenue on any other type is a row error.
    """
    if "revenue" not in frame.names:
        return pa.nulls(frame.table.num_rows, pa.float64())
    revenue, bad, shown = parse_numbers(frame.column("revenue"), "revenue")
    problems.add(bad, "revenue", shown, lambda v: f"{quoted(v)} is not a number")
    refund = mask(pc.equal(types, REFUND))
    negative = mask(pc.less(revenue, 0)) & ~refund
    problems.add(
        negative,
        "revenue",
        shown,
        lambda v: f"{quoted(v)} is negative (revenue must be 0 or more; money returned is an event of type {REFUND})",
    )
    huge = too_large(revenue, _MAX_REVENUE)
    problems.add(huge, "revenue", shown, lambda v: f"{quoted(v)} is more than {_MAX_REVENUE:,.0f} for one event; check the unit and the decimal separator")
    if refund.any():
        revenue = pc.if_else(pa.array(refund), pc.negate(pc.abs(revenue)), revenue)
    return revenue


def _consent_event_facts(frame: Frame, problems: Problems, types: pa.Array) -> dict[str, list[str | None]]:
    """The ``channel``, ``bounce_type`` and ``decision_id`` cells events that carry consent
    need, checked: a channel is the registry's, a bounce names its channel or message."""
    rows = frame.table.num_rows
    carries = mask(pc.is_in(types, pa.array([*REVOKING, BOUNCE])))
    if not carries.any():
        # Every check below is about these events alone, and only they read the facts: a batch
        # of visits and purchases (most) skips a dozen kernel calls.
        return {"channel": [None] * rows, "bounce_type": [None] * rows, "decision_id": [None] * rows}

    def cells(name: str) -> pa.Array:
        return cell_text(frame.column(name), name) if name in frame.names else pa.nulls(rows, pa.string())

    channels = pc.utf8_lower(cells("channel"))
    bounce_types = pc.utf8_lower(cells("bounce_type"))
    decision_ids = cells("decision_id")
    unknown = carries & mask(pc.is_valid(channels)) & ~mask(pc.is_in(channels, pa.array(list(CHANNELS))))
    problems.add(unknown, "channel", channels, lambda v: f"{quoted(v)} is not a channel (use one of {', '.join(CHANNELS)})")
    bounce = mask(pc.equal(types, BOUNCE))
    odd = bounce & mask(pc.is_valid(bounce_types)) & ~mask(pc.is_in(bounce_types, pa.array(list(_HARD))))
    problems.add(odd, "bounce_type", bounce_types, lambda v: f"{quoted(v)} is not a bounce type (use hard or soft)")
    unnamed = bounce & ~mask(pc.is_valid(channels)) & ~mask(pc.is_valid(decision_ids))
    problems.add(
        unnamed, "channel", None,
        lambda _: "a bounce names its channel (a channel column) or the decision_id of the message that bounced",
    )
    return {"channel": channels.to_pylist(), "bounce_type": bounce_types.to_pylist(), "decision_id": decision_ids.to_pylist()}


def _take_effect(connection: Connection, stage: str, facts: dict[str, list[str | None]]) -> tuple[int, int, int]:
    """Unsubscribes, complaints and hard bounces among the events just inserted, acted on:
    (consents revoked, addresses listed undeliverable, addresses complaints put on the
    do-not-contact list)."""
    found = connection.execute(
        sa.text(f"SELECT row_no, id, customer_id, type, occurred_at FROM {stage} WHERE type IN :types ORDER BY occurred_at, row_no").bindparams(
            sa.bindparam("types", expanding=True)
        ).columns(occurred_at=UTCDateTime()),
        {"types": [*REVOKING, BOUNCE]},
    ).all()
    if not found:
        return 0, 0, 0
    named = sorted({d for d in (facts["decision_id"][int(r.row_no)] for r in found) if d is not None})
    by_decision = {}
    if named:
        by_decision = {
            str(i): c for i, c in connection.execute(sa.select(decisions.c.id, decisions.c.channel).where(sa.cast(decisions.c.id, sa.String).in_(named)))
        }
    revoked = listed = suppressed = 0
    for row in found:
        index = int(row.row_no)
        channel = facts["channel"][index] or by_decision.get(str(facts["decision_id"][index]))
        source = f"event:{row.type}:{row.id}"[:128]
        if row.type in REVOKING:
            for each in [channel] if channel else list(CHANNELS):
                revoked += consent_history.revoke(connection, row.customer_id, each, row.occurred_at, source=source) is Change.WRITE
            if row.type == COMPLAINT and channel is not None:
                field, value = _address(connection, row.customer_id, channel)
                if value is not None:
                    suppressed += suppress(connection, field, value, f"spam complaint on {channel} (event {row.id})", row.occurred_at, by="import:events")
            continue
        if not _HARD.get(facts["bounce_type"][index] or "hard", True) or channel is None:
            continue
        _, value = _address(connection, row.customer_id, channel)
        if value is not None:
            listed += suppress(connection, UNDELIVERABLE, value, f"hard bounce on {channel} (event {row.id})", row.occurred_at, by="import:events")
    return revoked, listed, suppressed


def _address(connection: Connection, customer_id: str, channel: str) -> tuple[str | None, str | None]:
    """The customer's contact field on ``channel`` and its value in its one form (None for push and
    webhook, which reach an app or a system, not an address of ours, or when the customer has none)."""
    field = REGISTRY[channel].contact_field
    if field is None:
        return None, None
    address = connection.execute(sa.select(customers.c[field], customers.c.country).where(customers.c.id == customer_id)).first()
    return field, contact_or_none(field, address[0], address[1]) if address is not None and address[0] else None
