"""Consent columns of a customer import: ``consent_<channel>_<purpose>`` cells become consent rows.

Channels are the channel registry's (:data:`legato.channels.NAMES`), purposes and how long
an implied consent lasts are the consent rule's (:mod:`legato.guard.consent`).
"""

from __future__ import annotations

import re
from datetime import datetime

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

_CONSENT_COLUMN = re.compile(r"^consent_([a-z]+)_([a-z]+)$")


def find_consent_columns(frame: Frame) -> list[tuple[str, str, str]]:
    """(column, channel, purpose) for every ``consent_<channel>_<purpose>`` column."""
    found = []
    for name in frame.names:
        if not name.startswith("consent_") or name == "consent_at":
            continue
        match = _CONSENT_COLUMN.match(name)
        if not match or match.group(1) not in CHANNELS or match.group(2) not in PURPOSES:
            raise ImportFileError(
                f"{frame.name}: column {name} looks like a consent column but is not "
                "consent_<channel>_<purpose>",
                hint=f"channel is one of {', '.join(CHANNELS)}; purpose is one of "
                f"{', '.join(PURPOSES)}, e.g. consent_email_marketing",
            )
        found.append((name, match.group(1), match.group(2)))
    return found



def parse_consent_values(frame: Frame, problems: Problems, column: str) -> tuple[pa.Array, pa.Array]:
    """A consent column as (status, kind) arrays; null where the cell is empty."""
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
    return pc.take(statuses, position), pc.take(kinds, position)


def consent_stage_rows(
    ids: pa.Array,
    consents: list[tuple[str, str, pa.Array, pa.Array]],
    consent_at: pa.Array | None,
    now: datetime,
    good: pa.Array,
) -> pa.Table:
    """One row per non-empty consent cell of a good row, ready for the consent stage."""
    rows = len(ids)
    now_scalar = pa.scalar(now, pa.timestamp("us", "UTC"))
    if consent_at is None:
        recorded = pa.array(np.full(rows, now_scalar.value, dtype=np.int64), pa.timestamp("us", "UTC"))
        explicit = pa.array(np.zeros(rows, dtype=np.int64))
    else:
        recorded = pc.fill_null(consent_at, now_scalar)
        explicit = pc.cast(pc.is_valid(consent_at), pa.int64())
    parts = []
    for channel, purpose, statuses, kinds in consents:
        # An implied consent's lifetime is the consent rule's to apply (it may be the playbook's).
        expires = pa.nulls(rows, recorded.type)
        part = pa.table(
            {
                "customer_id": ids,
                "channel": pa.array([channel] * rows, pa.string()),
                "purpose": pa.array([purpose] * rows, pa.string()),
                "status": statuses,
                "kind": kinds,
                "recorded_at": recorded,
                "expires_at": expires,
                "explicit": explicit,
            }
        )
        parts.append(part.filter(pc.and_(good, pc.is_valid(statuses))))
    if not parts:
        empty = {
            "customer_id": pa.string(), "channel": pa.string(), "purpose": pa.string(),
            "status": pa.string(), "kind": pa.string(), "recorded_at": pa.timestamp("us", "UTC"),
            "expires_at": pa.timestamp("us", "UTC"), "explicit": pa.int64(),
        }
        return pa.schema(empty).empty_table()
    return pa.concat_tables(parts)
