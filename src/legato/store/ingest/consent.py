"""Consent columns of a customer import: ``consent_<channel>_<purpose>`` cells become consent rows.

Channels are the channel registry's (:data:`legato.channels.NAMES`), purposes and how long
an implied consent lasts are the consent rule's (:mod:`legato.guard.consent`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from legato.channels import NAMES as CHANNELS
from legato.guard.consent import PURPOSES
from legato.store.ingest.columns import cell_text, mask, quoted
from legato.store.ingest.read import Frame
from legato.store.ingest.report import ImportFileError
from legato.store.ingest.rows import Problems

# consent cell -> (status, kind); an empty cell means "no statement", so no row
_CONSENT_VALUES = {
    "express": ("granted", "express"),
    "implied": ("granted", "implied"),
    "yes": ("granted", "express"),
    "true": ("granted", "express"),
    "revoked": ("revoked", "express"),
    "no": ("revoked", "express"),
    "false": ("revoked", "express"),
}

_CONSENT_COLUMN = re.compile(r"^consent_([a-z]+)_([a-z]+)(_at)?$")


NOT_A_CONSENT = "looks like a consent column but is not consent_<channel>_<purpose> or consent_<channel>_<purpose>_at"
CONSENT_NAMES_HINT = (
    f"channel is one of {', '.join(CHANNELS)}; purpose is one of {', '.join(PURPOSES)}, "
    "e.g. consent_email_marketing and its date consent_email_marketing_at"
)


def is_consent_name(name: str) -> bool:
    """Whether ``name`` is a consent column the importer reads (``consent_at`` included);
    any other name starting with ``consent_`` is refused by :func:`find_consent_columns`."""
    if name == "consent_at":
        return True
    match = _CONSENT_COLUMN.match(name)
    return bool(match) and match.group(1) in CHANNELS and match.group(2) in PURPOSES


@dataclass(frozen=True)
class ConsentColumn:
    name: str  # consent_sms_marketing
    channel: str
    purpose: str
    dated_by: str | None  # the column giving its date: consent_sms_marketing_at, else consent_at, else none


def find_consent_columns(frame: Frame) -> list[ConsentColumn]:
    """Every ``consent_<channel>_<purpose>`` column with the column that dates it: its own
    ``consent_<channel>_<purpose>_at``, else ``consent_at`` (one date for all), else none."""
    found: dict[str, tuple[str, str]] = {}
    dated: set[str] = set()
    for name in frame.names:
        if not name.startswith("consent_") or name == "consent_at":
            continue
        match = _CONSENT_COLUMN.match(name)
        if not match or match.group(1) not in CHANNELS or match.group(2) not in PURPOSES:
            raise ImportFileError(f"{frame.name}: column {name} {NOT_A_CONSENT}", hint=CONSENT_NAMES_HINT)
        if match.group(3):
            dated.add(name[: -len("_at")])
        else:
            found[name] = (match.group(1), match.group(2))
    orphans = sorted(dated - set(found))
    if orphans:
        raise ImportFileError(
            f"{frame.name}: column {orphans[0]}_at dates a consent but there is no column {orphans[0]}",
            hint=f"add {orphans[0]} (express, implied, revoked, yes or no) or remove its date column",
        )
    shared = "consent_at" if "consent_at" in frame.names else None
    return [
        ConsentColumn(name, channel, purpose, f"{name}_at" if name in dated else shared)
        for name, (channel, purpose) in found.items()
    ]


def date_columns(columns: list[ConsentColumn]) -> list[str]:
    return sorted({c.dated_by for c in columns if c.dated_by})


def parse_consent_values(frame: Frame, problems: Problems, column: str) -> tuple[pa.Array, pa.Array, pa.Array]:
    """A consent column as (status, kind, cell text) arrays; null where the cell is empty."""
    shown = cell_text(frame.column(column), column)
    choices = list(_CONSENT_VALUES)
    position = pc.index_in(pc.utf8_lower(shown), value_set=pa.array(choices))
    bad = mask(pc.is_valid(shown)) & mask(pc.is_null(position))
    problems.add(
        bad,
        column,
        shown,
        lambda v: f"{quoted(v)} is not a consent value (use express, implied, revoked, yes or no, "
        "or leave it empty)",
    )
    statuses = pa.array([_CONSENT_VALUES[c][0] for c in choices])
    kinds = pa.array([_CONSENT_VALUES[c][1] for c in choices])
    return pc.take(statuses, position), pc.take(kinds, position), shown


STAGE_COLUMNS = [
    ("row_no", "int"),
    ("consent_column", "text"),
    ("cell", "text"),
    ("customer_id", "text"),
    ("channel", "text"),
    ("purpose", "text"),
    ("status", "text"),
    ("kind", "text"),
    ("stated_at", "time"),
    ("source", "text"),
]


def consent_stage_rows(
    ids: pa.Array,
    consents: list[tuple[ConsentColumn, pa.Array, pa.Array, pa.Array]],
    dates: dict[str, pa.Array],
    source: str,
    good: pa.Array,
) -> pa.Table:
    """One row per non-empty consent cell of a good row, ready for the consent stage
    (:data:`STAGE_COLUMNS`): the statement with the time the file gives it (null: undated)."""
    rows = len(ids)
    order = pa.array(np.arange(rows, dtype=np.int64))
    parts = []
    for column, statuses, kinds, cells in consents:
        stated = dates[column.dated_by] if column.dated_by else pa.nulls(rows, pa.timestamp("us", "UTC"))
        part = pa.table(
            {
                "row_no": order,
                "consent_column": pa.array([column.name] * rows, pa.string()),
                "cell": cells,
                "customer_id": ids,
                "channel": pa.array([column.channel] * rows, pa.string()),
                "purpose": pa.array([column.purpose] * rows, pa.string()),
                "status": statuses,
                "kind": kinds,
                "stated_at": stated,
                "source": pa.array([source] * rows, pa.string()),
            }
        )
        parts.append(part.filter(pc.and_(good, pc.is_valid(statuses))))
    if not parts:
        kinds_of = {"int": pa.int64(), "text": pa.string(), "time": pa.timestamp("us", "UTC")}
        return pa.schema([(name, kinds_of[kind]) for name, kind in STAGE_COLUMNS]).empty_table()
    return pa.concat_tables(parts)
