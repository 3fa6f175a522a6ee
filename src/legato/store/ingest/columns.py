"""Vectorized checks of one column: blanks, text, instants and numbers, each with a mask of bad rows.

Every check runs as ``pyarrow.compute`` kernels over the whole column; Python visits only
the bad rows, and only to word their messages.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from legato.clock import as_utc
from legato.store.ingest.report import ImportFileError

DATE_HINT = "use ISO-8601, e.g. 2024-03-01T09:00:00Z"
# ISO 8601's basic format (no separators): 19970101, 19970101T0930, 19970101T093000Z,
# rewritten to the extended form the parser reads.
_BASIC_FORMS = (
    (r"^(\d{4})(\d{2})(\d{2})$", r"\1-\2-\3"),
    (r"^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2}(?:\.\d{1,9})?)(Z|[+-]\d{2}(?::?\d{2})?)?$", r"\1-\2-\3T\4:\5:\6\7"),
    (r"^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(Z|[+-]\d{2}(?::?\d{2})?)?$", r"\1-\2-\3T\4:\5\6"),
)
_ISO_DATE = r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?)?"
_ISO_ZONE = r"(?:Z|[+-]\d{2}(?::?\d{2})?)"
# Lenient number syntax for validation; strict JSON syntax for keeping undeclared CSV
# columns as numbers (it excludes leading zeros, so zip codes like 02139 stay text).
_NUMBER = r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$"
JSON_NUMBER = r"^-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?$"


# One encoder for every value: json.dumps with options builds a new one per call, which an HTTP
# batch's hundred properties objects felt (a third of turning its records into a table).
_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str).encode


def dumps(value: Any) -> str:
    if isinstance(value, dict):
        value = {k: v for k, v in value.items() if v is not None}
    return _ENCODE(value)



def contiguous(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    if isinstance(column, pa.ChunkedArray):
        return column.combine_chunks()
    return column



def mask(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A boolean pyarrow result as a numpy mask, null counting as False."""
    # fill_null only where there is a null: a kernel call costs tens of microseconds, and an
    # import of 100 rows asks for two dozen masks.
    filled = pc.fill_null(values, False) if values.null_count else values
    return np.asarray(filled.to_numpy(zero_copy_only=False), dtype=bool)


def blank_to_null(values: pa.Array, *, trim: bool = True) -> pa.Array:
    """Empty or all-blank cells as null; other text trimmed unless ``trim`` is False."""
    if not pa.types.is_string(values.type):
        return values
    trimmed = pc.utf8_trim_whitespace(values)
    return pc.if_else(pc.equal(trimmed, ""), pa.scalar(None, pa.string()), trimmed if trim else values)


def cell_text(values: pa.Array, column: str) -> pa.Array:
    """A column as trimmed text, an empty cell being null ("no value")."""
    if pa.types.is_nested(values.type):
        raise ImportFileError(
            f"column {column} holds nested values", hint=f"{column} must hold plain values"
        )
    if pa.types.is_timestamp(values.type) or pa.types.is_date(values.type):
        return iso_text(instant_values(values))
    if not pa.types.is_string(values.type):
        values = pc.cast(values, pa.string())
    return blank_to_null(values)


def too_long(values: pa.Array, limit: int) -> np.ndarray:
    return mask(pc.greater(pc.utf8_length(values), limit))


def instant_values(values: pa.Array) -> pa.Array:
    """Typed timestamps/dates as timestamp[us, UTC]; naive ones are taken to be UTC."""
    kind = values.type
    if pa.types.is_date(kind):
        values = pc.cast(values, pa.timestamp("us"))
        kind = values.type
    if kind.tz is None:
        return pc.cast(pc.cast(values, pa.timestamp("us"), safe=False), pa.timestamp("us", "UTC"))
    return pc.cast(values, pa.timestamp("us", "UTC"), safe=False)


def parse_instants(values: pa.Array, column: str) -> tuple[pa.Array, np.ndarray, pa.Array]:
    """Parse ISO-8601 instants; returns (timestamp[us, UTC], bad-row mask, shown text).

    Zoned values (``Z``, ``+02:00``) are converted to UTC and naive ones are taken to be
    UTC, both with Arrow's ISO parser; a group that Arrow refuses (an impossible date such
    as 2024-02-30 inside an otherwise valid shape) is retried value by value in Python so
    only the bad cells are rejected.
    """
    if pa.types.is_timestamp(values.type) or pa.types.is_date(values.type):
        parsed = instant_values(values)
        # Typed values cannot be malformed; text is only for messages about other columns.
        return parsed, np.zeros(len(values), dtype=bool), pc.cast(values, pa.string())
    shown = cell_text(values, column)
    extended = _extended(shown)
    result = pa.nulls(len(shown), pa.timestamp("us", "UTC"))
    zoned = mask(pc.match_substring_regex(extended, f"^{_ISO_DATE}{_ISO_ZONE}$"))
    naive = mask(pc.match_substring_regex(extended, f"^{_ISO_DATE}$"))
    for group, zone in ((zoned, "UTC"), (naive, None)):
        if not group.any():
            continue
        subset = extended.filter(pa.array(group))
        try:
            parsed = pc.cast(subset, pa.timestamp("ns", zone))
            parsed = pc.cast(parsed, pa.timestamp("us", zone), safe=False)
            if zone is None:
                parsed = pc.cast(parsed, pa.timestamp("us", "UTC"))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            parsed = pa.array(
                [_parse_instant(v) for v in subset.to_pylist()], pa.timestamp("us", "UTC")
            )
        result = pc.replace_with_mask(result, pa.array(group), parsed)
    bad = mask(pc.is_valid(shown)) & ~mask(pc.is_valid(result))
    return result, bad, shown


def _extended(texts: pa.Array) -> pa.Array:
    """Instants written in ISO 8601's basic format rewritten in the extended one; others as they are."""
    if not pc.any(pc.match_substring_regex(texts, r"^\d{8}")).as_py():
        return texts
    for pattern, replacement in _BASIC_FORMS:
        texts = pc.replace_substring_regex(texts, pattern, replacement)
    return texts


def _parse_instant(value: str) -> datetime | None:
    try:
        return as_utc(datetime.fromisoformat(value))
    except (ValueError, OverflowError):
        return None


def iso_text(stamps: pa.Array) -> pa.Array:
    """UTC instants as ISO-8601 text with ``Z``; sub-second digits only if any are set."""
    seconds = pc.cast(stamps, pa.timestamp("s", "UTC"), safe=False)
    whole = pc.all(pc.equal(pc.cast(seconds, stamps.type), stamps)).as_py() in (True, None)
    if not whole:
        seconds = pc.cast(stamps, pa.timestamp("us", "UTC"))
    # A naive timestamp cast to text reads 'YYYY-MM-DD HH:MM:SS[.ffffff]', much faster
    # than pc.strftime.
    texts = pc.cast(seconds.cast(pa.timestamp(seconds.type.unit)), pa.string())
    texts = pc.replace_substring(texts, " ", "T", max_replacements=1)
    return pc.binary_join_element_wise(texts, "Z", "")


def parse_numbers(values: pa.Array, column: str) -> tuple[pa.Array, np.ndarray, pa.Array]:
    """Parse numbers; returns (float64, bad-row mask, shown text). NaN and infinity are bad."""
    kind = values.type
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        parsed = pc.cast(values, pa.float64())
        shown = pc.cast(values, pa.string())
    else:
        shown = cell_text(values, column)
        syntax = pc.match_substring_regex(shown, _NUMBER)
        parsed = pc.cast(pc.if_else(syntax, shown, pa.scalar(None, pa.string())), pa.float64())
    finite = pc.is_finite(parsed)
    bad = mask(pc.is_valid(shown)) & ~mask(finite)
    parsed = pc.if_else(finite, parsed, pa.scalar(None, pa.float64()))
    return parsed, bad, shown


def too_large(parsed: pa.Array, limit: float) -> np.ndarray:
    """Numbers beyond ``limit`` in size: finite, but they overflow the models' arithmetic."""
    return mask(pc.greater(pc.abs(parsed), limit))


def first_seen(ids: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """For repeated ids: a mask of the later rows and, per row, the index of the first.

    Dictionary-encoding hashes every id once; when the dictionary is as long as the
    column has values there is nothing more to do, which is the usual case.
    """
    encoded = pc.dictionary_encode(ids)
    rows = len(ids)
    if len(encoded.dictionary) == rows - ids.null_count:
        return np.zeros(rows, dtype=bool), np.full(rows, -1, dtype=np.int64)
    codes = np.asarray(pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False))
    present = codes >= 0
    first_of_code = np.full(len(encoded.dictionary), rows, dtype=np.int64)
    np.minimum.at(first_of_code, codes[present], np.flatnonzero(present))
    first_index = np.where(present, first_of_code[np.maximum(codes, 0)], -1)
    later = present & (first_index != np.arange(rows))
    return later, first_index


def quoted(value: object) -> str:
    """A cell value quoted for a message, shortened so one cell cannot flood a report."""
    shown = str(value)
    return "'" + (shown if len(shown) <= 60 else shown[:57] + "...") + "'"
